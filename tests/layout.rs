//! The crate's module layout, checked: no import circle between modules, and no module importing
//! from the crate root's re-exports instead of from the module that defines the item.
//!
//! A module's dependencies are the modules its code names through `crate::`, `super::` and
//! `self::` paths (inside `use` lists too), each resolved to the deepest module that exists. A
//! module naming one of its own ancestors is not counted: a child may use its parent's items (that
//! is what Rust's privacy offers it), and the parent declares the child. Run with `--nocapture` to
//! print the graph (one line per module: what it depends on), as the closing note of issue 16
//! shows it.

// Static analysis of the source files: nothing for Miri to check, and it reads files.
#![cfg(not(miri))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/`, by path (`""` for the crate root), with its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                walk(&path, &[prefix, &[name]].concat(), out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let mut segments = prefix.to_vec();
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    segments.push(name);
                }
                out.insert(segments.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The code of `source` without its comments (so that documentation naming a path counts not).
fn code(source: &str) -> String {
    source.lines().map(|line| line.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The paths `code` names that start with `crate`, `super` or `self`, a `use` list expanded
/// (`crate::a::{b, c::D}` names `crate::a::b` and `crate::a::c::D`).
fn paths(code: &str) -> Vec<String> {
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|head| code_at(&bytes, i, head) && (i == 0 || !ident(bytes[i - 1])));
        let Some(_) = starts else {
            i += 1;
            continue;
        };
        let mut j = i;
        while j < bytes.len() && (ident(bytes[j]) || code_at(&bytes, j, "::")) {
            j += if code_at(&bytes, j, "::") { 2 } else { 1 };
        }
        let path: String = bytes[i..j].iter().collect::<String>().trim_end_matches("::").to_string();
        if j < bytes.len() && bytes[j] == '{' {
            let close = (j..bytes.len()).find(|&k| bytes[k] == '}').unwrap_or(bytes.len());
            let list: String = bytes[j + 1..close].iter().collect();
            for item in list.split(',') {
                let item = item.split(" as ").next().unwrap().trim();
                if !item.is_empty() && item != "self" {
                    out.push(format!("{path}::{item}"));
                }
            }
            out.push(path);
            i = close;
        } else {
            out.push(path);
            i = j;
        }
    }
    out
}

fn code_at(chars: &[char], at: usize, text: &str) -> bool {
    text.chars().enumerate().all(|(k, c)| chars.get(at + k) == Some(&c))
}

/// The deepest module `path` (named in module `from`) reaches, if it names one.
fn resolve(from: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = match *segments.first()? {
        "crate" => Vec::new(),
        "self" => from.split("::").filter(|s| !s.is_empty()).collect(),
        "super" => {
            let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            base.pop();
            base
        }
        _ => return None,
    };
    segments.remove(0);
    while segments.first() == Some(&"super") {
        base.pop();
        segments.remove(0);
    }
    let mut best = None;
    for n in 0..=segments.len() {
        let module = [base.as_slice(), &segments[..n]].concat().join("::");
        if known.contains(&module) {
            best = Some(module);
        }
    }
    best
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    ancestor.is_empty() || of.starts_with(&format!("{ancestor}::"))
}

/// The items each module re-exports from a child (`pub use child::{A, B};` in `stack` makes
/// `stack::A` the child's): `(module, item)` to the child that defines it.
fn reexports(modules: &BTreeMap<String, String>) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (module, source) in modules {
        for line in code(source).lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("pub use ").or_else(|| line.strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            let rest = rest.trim_end_matches(';');
            let (path, items) = match rest.split_once("::{") {
                Some((path, items)) => (path, items.trim_end_matches('}').to_string()),
                None => match rest.rsplit_once("::") {
                    Some((path, item)) => (path, item.to_string()),
                    None => continue,
                },
            };
            let child = [module.as_str(), path.split("::").next().unwrap()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("::");
            if !modules.contains_key(&child) || child == *module {
                continue;
            }
            for item in items.split(',').map(|item| item.split(" as ").last().unwrap().trim()) {
                if !item.is_empty() {
                    out.insert((module.clone(), item.to_string()), child.clone());
                }
            }
        }
    }
    out
}

/// What each module depends on, its ancestors left out. A path through a module's re-export
/// counts as a dependency on the child that defines the item.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let reexports = reexports(&modules);
    let mut graph = BTreeMap::new();
    for (module, source) in &modules {
        let deps: BTreeSet<String> = paths(&code(source))
            .iter()
            .filter_map(|path| {
                let dep = resolve(module, path, &known)?;
                // The segment after the module, if the path names an item it re-exports.
                let depth = if dep.is_empty() { 0 } else { dep.split("::").count() };
                let segments: Vec<&str> = path.split("::").collect();
                let skip = segments.iter().take_while(|s| matches!(**s, "crate" | "self" | "super")).count();
                let item = segments.get(skip + depth).copied().unwrap_or("");
                Some(reexports.get(&(dep.clone(), item.to_string())).cloned().unwrap_or(dep))
            })
            .filter(|dep| dep != module && !is_ancestor(dep, module))
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

/// The circles of `graph`: its strongly connected components of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two modules are in one circle when each reaches the other.
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(module) = todo.pop() {
            for dep in &graph[&module] {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for module in graph.keys() {
        if done.contains(module) {
            continue;
        }
        let circle: Vec<String> = graph
            .keys()
            .filter(|other| reaches[module].contains(*other) && reaches[*other].contains(module))
            .cloned()
            .collect();
        done.extend(circle.iter().cloned());
        if circle.len() > 1 {
            out.push(circle);
        }
    }
    out
}

#[test]
fn no_module_is_in_an_import_circle() {
    let graph = graph();
    for (module, deps) in &graph {
        let name = if module.is_empty() { "(crate root)" } else { module };
        println!("{name} -> {}", deps.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new(), "modules that import each other, directly or not");
}

#[test]
fn modules_import_from_the_defining_module() {
    let modules = modules();
    let mut offenders = Vec::new();
    for (module, source) in modules.iter().filter(|(module, _)| !module.is_empty()) {
        for path in paths(&code(source)) {
            // `crate::Name` with `Name` an item (capitalised) of the root: a re-export.
            let rest = path.strip_prefix("crate::").unwrap_or("");
            if !rest.is_empty() && !rest.contains("::") && rest.starts_with(char::is_uppercase) {
                offenders.push(format!("{module}: {path}"));
            }
        }
    }
    assert_eq!(offenders, Vec::<String>::new(), "imports through the crate root's re-exports");
}

#[test]
fn the_check_finds_a_circle() {
    // The checker itself can fail: a graph with a circle is reported.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
    let known = BTreeSet::from(["stack".to_string(), "stack::entry".to_string(), "unwind".to_string()]);
    assert_eq!(resolve("stack::entry", "super::Core", &known).as_deref(), Some("stack"));
    assert_eq!(resolve("stack", "crate::unwind::Unwind", &known).as_deref(), Some("unwind"));
    assert_eq!(paths("use crate::a::{b, c::D as E};"), ["crate::a::b", "crate::a::c::D", "crate::a"]);
}
