//! The house rules a newcomer relies on, checked on the source itself: no two modules import
//! each other (no cycle of any length through `use crate::…`, `super::…` or a child module),
//! and no file in `src/` has more than 600 lines outside its `#[cfg(test)] mod tests` block.
//!
//! A module's dependencies are every `crate::` and `super::` path in its non-test code,
//! resolved to the longest module path that exists, plus each child module it declares. A
//! path that resolves to the crate root (an item in `lib.rs`) counts as an edge to `lib.rs`,
//! which declares every module: so items used across modules must live in a module of their
//! own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
const ROOT: &str = "crate";

/// Module path ("crate", "auth", "auth::cache") → source file, for the library's modules.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut map = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = match parts.as_slice() {
            [only] if only == "lib" => ROOT.to_string(),
            [only] if only == "main" => continue, // the binary, not the library
            [dirs @ .., last] if last == "mod" => dirs.join("::"),
            all => all.join("::"),
        };
        map.insert(name, f);
    }
    map
}

/// The file's lines without its `#[cfg(test)] mod … { … }` blocks.
fn non_test_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if t == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            // Skip to the line that closes the block.
            let mut depth = 0i32;
            let mut j = i + 1;
            loop {
                depth += lines[j].matches('{').count() as i32;
                depth -= lines[j].matches('}').count() as i32;
                if depth <= 0 || j + 1 == lines.len() {
                    break;
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        out.push(lines[i].to_string());
        i += 1;
    }
    out
}

/// Every path that follows `prefix` (`crate::` or `super::`), use-trees expanded:
/// `crate::{a, b::{c, d}}` gives `a`, `b::c`, `b::d`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    fn tree(s: &str) -> (Vec<String>, usize) {
        // Parse one use-tree at the start of `s`; return its paths and the bytes consumed.
        let ident_end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(s.len());
        let head = s[..ident_end].trim_end_matches(':').to_string();
        let rest = &s[ident_end..];
        if (head.is_empty() || s[..ident_end].ends_with("::")) && rest.starts_with('{') {
            let mut paths = Vec::new();
            let mut i = 1;
            loop {
                let inner = &rest[i..];
                let skip = inner.len() - inner.trim_start().len();
                i += skip;
                if rest[i..].starts_with('}') {
                    i += 1;
                    break;
                }
                let (sub, used) = tree(&rest[i..]);
                for p in sub {
                    paths.push(match (head.is_empty(), p.is_empty() || p == "self") {
                        (_, true) => head.clone(),
                        (true, false) => p,
                        (false, false) => format!("{head}::{p}"),
                    });
                }
                i += used.max(1);
                let inner = &rest[i..];
                i += inner.len() - inner.trim_start().len();
                if rest[i..].starts_with(',') {
                    i += 1;
                }
                if i >= rest.len() {
                    break;
                }
            }
            (paths, ident_end + i)
        } else {
            (vec![head], ident_end)
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = code[at..].find(prefix) {
        let start = at + pos;
        // `crate::` must not be the tail of another identifier (`tokenreview_proxy::…`).
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            at = start + prefix.len();
            continue;
        }
        let (paths, used) = tree(&code[start + prefix.len()..]);
        out.extend(paths);
        at = start + prefix.len() + used.max(1);
    }
    out
}

/// The longest existing module that `path` (segments under `base`) names.
fn resolve(base: &str, path: &str, known: &BTreeMap<String, PathBuf>) -> String {
    let mut best = base.to_string();
    let mut current = if base == ROOT {
        String::new()
    } else {
        base.to_string()
    };
    for seg in path.split("::").filter(|s| !s.is_empty()) {
        current = if current.is_empty() {
            seg.to_string()
        } else {
            format!("{current}::{seg}")
        };
        if known.contains_key(&current) {
            best = current.clone();
        } else {
            break;
        }
    }
    best
}

fn parent(module: &str) -> String {
    match module.rsplit_once("::") {
        Some((p, _)) => p.to_string(),
        None if module == ROOT => ROOT.to_string(),
        None => ROOT.to_string(),
    }
}

fn dependency_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let code: Vec<String> = non_test_lines(&std::fs::read_to_string(file).unwrap())
            .into_iter()
            .filter(|l| !l.trim().starts_with("//"))
            .collect();
        let code = code.join("\n");
        let deps = graph.entry(module.clone()).or_default();
        for p in paths_after(&code, "crate::") {
            deps.insert(resolve(ROOT, &p, &known));
        }
        for p in paths_after(&code, "super::") {
            deps.insert(resolve(&parent(module), &p, &known));
        }
        // Child modules: declared, and used by relative paths.
        for other in known.keys() {
            if other != module && parent(other) == *module {
                deps.insert(other.clone());
            }
        }
        deps.remove(module);
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn dfs(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if dfs(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    dfs(graph, start, start, &mut path, &mut seen).then_some(path)
}

/// This crate's `src/`, or another tree's (`STRUCTURE_SRC=/path/to/src`, to check a branch).
fn src() -> PathBuf {
    std::env::var_os("STRUCTURE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_two_modules_import_each_other_and_no_cycle_runs_through_them() {
    let graph = dependency_graph(&src());
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        graph.len() > 15 && edges > 40,
        "the module graph was not read: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines_outside_its_tests() {
    let mut long = Vec::new();
    for file in modules(&src()).values() {
        let text = std::fs::read_to_string(file).unwrap();
        let kept = non_test_lines(&text).len();
        if kept > MAX_LINES {
            long.push(format!("{} ({kept} lines)", file.display()));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// The checks above must be able to fail: a cycle written in text is found, and a test block
/// is left out of the count.
#[test]
fn the_structure_checks_see_what_they_check() {
    let code = "use crate::{auth::{cache, memo}, upstream};\nuse super::x::Y;\nlet a = tokenreview_proxy::crate_like;";
    assert_eq!(
        paths_after(code, "crate::"),
        ["auth::cache", "auth::memo", "upstream"]
    );
    assert_eq!(paths_after(code, "super::"), ["x::Y"]);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert!(cycle_through(&g, "a").is_none());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle_through(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    let text = "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn g() {\n    }\n}\n";
    assert_eq!(non_test_lines(text), ["fn f() {}"]);
}
