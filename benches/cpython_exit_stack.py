"""CPython's AsyncExitStack with 100,000 entries, for BENCHMARKS.md: the per-entry cost of the
Python code this crate replaces. Run with `python3 benches/cpython_exit_stack.py`."""

import asyncio
import contextlib
import time

N = 100_000


class Resource:
    async def __aenter__(self):
        return 1

    async def __aexit__(self, exc_type, exc, tb):
        return False


@contextlib.asynccontextmanager
async def generator():
    yield 1


async def fill(make):
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(N):
            await stack.enter_async_context(make())


def per_entry(make):
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        asyncio.run(fill(make))
        best = min(best, time.perf_counter() - start)
    return best / N * 1e6


print(f"class-based: {per_entry(Resource):.2f} us per entry")
print(f"@asynccontextmanager: {per_entry(generator):.2f} us per entry")
