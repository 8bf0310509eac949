#!/bin/bash -eu
# Builds every cargo-fuzz target into $OUT, each with its seed corpus
# ($OUT/<target>_seed_corpus.zip, from fuzz/corpus/<target>/), its libFuzzer options
# ($OUT/<target>.options) and its dictionary
# ($OUT/<target>.dict, from fuzz/<target>.dict, when there is one). ClusterFuzzLite runs it in
# .clusterfuzzlite/Dockerfile's image; an OSS-Fuzz project's build.sh can run it as it is; .ci/run
# runs it outside Docker (see the README, "Fuzzing").
#
# Environment, as the OSS-Fuzz base images set it: OUT (required), SRC (the source is then
# $SRC/async-with; unset, it is the checkout holding this script), CARGO_TARGET_DIR (optional),
# SANITIZER and RUSTFLAGS (set by the image's `compile`), RUSTUP_TOOLCHAIN (the image pins a
# nightly; unset, `nightly`).
set -euo pipefail

: "${OUT:?OUT must name the folder the fuzz targets go to}"
if [[ -n ${SRC:-} ]]; then
  root="$SRC/async-with"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
[[ -f $root/fuzz/Cargo.toml ]] || { echo "build.sh: no fuzz/Cargo.toml under $root" >&2; exit 1; }
# cargo-fuzz needs nightly. Plain `cargo`, not `cargo +nightly`: the image's `cargo` wrapper
# recognises `cargo fuzz build` by its first two words (for coverage builds), and `+nightly`
# would override the nightly the image pins.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-nightly}"

# The sanitizer the platform asks for. `compile` already puts -Zsanitizer=$SANITIZER in RUSTFLAGS
# for address and memory, which cargo-fuzz appends to its own flags; for undefined it puts none,
# and for coverage the image's wrapper replaces the build. So: cargo-fuzz's -s for the sanitizers
# it knows, `none` for the others. Unset (outside OSS-Fuzz, as in .ci/run), `none` too: the target
# is safe code over the crate, whose one unsafe module Miri checks, and AddressSanitizer would
# cut the rate tenfold.
case "${SANITIZER:-none}" in
  address | memory | thread | leak) sanitizer="$SANITIZER" ;;
  *) sanitizer=none ;;
esac

cd "$root/fuzz"
# -O: release mode; --debug-assertions keeps debug_assert! and overflow checks on while fuzzing.
# Together they are exactly the flags of a plain `cargo fuzz build`, as the README's commands use.
cargo fuzz build -O --debug-assertions -s "$sanitizer"

# Where cargo put the binaries: honours CARGO_TARGET_DIR and any cargo config.
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/x86_64-unknown-linux-gnu/release"

mkdir -p "$OUT"
targets="$(cargo fuzz list)"
[[ -n $targets ]] || { echo "build.sh: cargo fuzz list found no fuzz target" >&2; exit 1; }
for target in $targets; do
  cp "$bin/$target" "$OUT/"
  corpus="corpus/$target"
  if [[ -d $corpus ]] && compgen -G "$corpus/*" >/dev/null; then
    # zipfile stores each file under its base name: a flat archive, as OSS-Fuzz expects. python3
    # is in every OSS-Fuzz image; `zip` may not be on the machine .ci/run runs on.
    python3 -m zipfile -c "$OUT/${target}_seed_corpus.zip" "$corpus"/*
  fi
  # libFuzzer's options for the platform to run the target with (ClusterFuzz reads
  # $OUT/<target>.options). entropic = 0: its power schedule takes a log per feature each time
  # the corpus changes; over this crate's 69,000 counters that was half of all instructions, and
  # without it `scenario` ran faster and reached more (BENCHMARKS.md, "The exec rate").
  printf '[libfuzzer]\nentropic = 0\n' >"$OUT/$target.options"
  # No dictionary today: `arbitrary` decodes the input as lengths, choices and integers, so there
  # are no tokens for libFuzzer to splice in. A target that parses text would want one.
  if [[ -f $target.dict ]]; then
    cp "$target.dict" "$OUT/$target.dict"
  fi
  echo "build.sh: $OUT/$target"
done
