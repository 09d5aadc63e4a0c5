//! The shape of the code, checked: no library source file over 700 lines, no `#[path]` include
//! anywhere, and no module that imports another that imports it back (directly or round a
//! loop), in any crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod source_tree;

use source_tree::{CRATES, root, sources};

/// `a/b.rs` and `a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` the crate root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("inside").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// Every `crate::…` and `super::…` path a file names (in `use` lines or inline), tests aside.
fn paths_named(text: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::").or_else(|| rest.find("super::")) {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            out.push(tail[..end].trim_end_matches(':').to_string());
            rest = &tail[end..];
        }
        // `use crate::{a, b::c}` names a and b too.
        if let Some(group) = code.trim_start().strip_prefix("use crate::{") {
            for item in group.split([',', '}']) {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(format!("crate::{item}"));
                }
            }
        }
    }
    out
}

#[test]
fn no_library_source_file_is_over_700_lines() {
    let mut files = Vec::new();
    for krate in CRATES {
        sources(&root().join(krate), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > 700 && !f.components().any(|c| c.as_os_str() == "tests"))
                .then(|| format!("{} ({lines})", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 700 lines: {long:?}");
}

/// Code is shared by modules and crates, never by `#[path]` includes (a file compiled into two
/// crates under two module paths): shared test code is the `corral-testkit` crate.
#[test]
fn no_source_file_includes_another_by_path() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    // Spelled in two pieces, so that this file does not match itself.
    let attribute = concat!("#", "[path");
    let mut files = Vec::new();
    walk(&root(), &mut files);
    assert!(files.len() > 100, "found only {} .rs files under {}", files.len(), root().display());
    let included: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .is_ok_and(|text| text.lines().any(|l| l.trim_start().replace(' ', "").starts_with(attribute)))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(included.is_empty(), "`#[path]` includes in: {included:?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in CRATES {
        let src = root().join(krate);
        let mut files = Vec::new();
        sources(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let reexported = root_reexports(&src);
        let resolve = |from: &[String], path: &str| -> Option<Vec<String>> {
            let mut parts: Vec<String> = path.split("::").map(String::from).collect();
            let mut base: Vec<String> = Vec::new();
            if parts[0] == "crate" {
                parts.remove(0);
            } else {
                base = from.to_vec();
                while parts.first().is_some_and(|p| p == "super") {
                    parts.remove(0);
                    base.pop();
                }
            }
            let full: Vec<String> = base.into_iter().chain(parts.iter().cloned()).collect();
            let found = (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| modules.contains(m));
            found.or_else(|| parts.first().and_then(|first| reexported.get(first).cloned()))
        };
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for file in &files {
            let from = module_of(&src, file);
            let text = std::fs::read_to_string(file).expect("source");
            for path in paths_named(&text) {
                if let Some(to) = resolve(&from, &path)
                    && !to.is_empty()
                    && to != from
                    && !from.starts_with(&to)
                {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        // A module counts with its files: a::b importing c makes a import c.
        let top = |m: &Vec<String>| m.first().cloned().unwrap_or_default();
        let mut top_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in &edges {
            for to in tos {
                if top(from) != top(to) && !from.is_empty() {
                    top_edges.entry(top(from)).or_default().insert(top(to));
                }
            }
        }
        let cycle = |graph: &BTreeMap<String, BTreeSet<String>>| -> Option<Vec<String>> {
            fn visit(
                n: &String,
                g: &BTreeMap<String, BTreeSet<String>>,
                state: &mut BTreeMap<String, u8>,
                stack: &mut Vec<String>,
            ) -> Option<Vec<String>> {
                state.insert(n.clone(), 1);
                stack.push(n.clone());
                for m in g.get(n).into_iter().flatten() {
                    match state.get(m) {
                        Some(1) => {
                            let at = stack.iter().position(|s| s == m).unwrap_or(0);
                            return Some(stack[at..].iter().cloned().chain([m.clone()]).collect());
                        }
                        Some(_) => {}
                        None => {
                            if let Some(c) = visit(m, g, state, stack) {
                                return Some(c);
                            }
                        }
                    }
                }
                stack.pop();
                state.insert(n.clone(), 2);
                None
            }
            let mut state = BTreeMap::new();
            graph
                .keys()
                .find_map(|n| if state.contains_key(n) { None } else { visit(n, graph, &mut state, &mut Vec::new()) })
        };
        let file_graph: BTreeMap<String, BTreeSet<String>> =
            edges.iter().map(|(k, v)| (k.join("::"), v.iter().map(|m| m.join("::")).collect())).collect();
        assert_eq!(cycle(&file_graph), None, "{krate}: a module imports one that imports it back");
        assert_eq!(cycle(&top_edges), None, "{krate}: top-level modules import each other round a loop");
    }
}

/// Names the crate root (`lib.rs` or `main.rs` in `src`) re-exports with `pub use`, by the
/// path they are re-exported from.
fn root_reexports(src: &Path) -> BTreeMap<String, Vec<String>> {
    let mut reexported = BTreeMap::new();
    let Some(root_file) = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|f| f.exists()) else {
        return reexported;
    };
    let text = std::fs::read_to_string(root_file).expect("root");
    // Each `pub use …;` that starts a line of the root (its statement may span lines).
    let starts = text.match_indices("pub use ").map(|(at, _)| at);
    let starts = starts.filter(|&at| text[..at].rsplit('\n').next().is_some_and(|l| l.trim().is_empty()));
    for stmt in starts.filter_map(|at| text[at + "pub use ".len()..].split(';').next()) {
        let stmt = stmt.replace(char::is_whitespace, "");
        let (prefix, items) = match stmt.split_once("::{") {
            Some((p, items)) => (p.to_string(), items.trim_end_matches('}').split(',').map(String::from).collect()),
            None => match stmt.rsplit_once("::") {
                Some((p, item)) => (p.to_string(), vec![item.to_string()]),
                None => continue,
            },
        };
        let module: Vec<String> = prefix.split("::").map(String::from).collect();
        // Every name the root re-exports, whether from a module of the crate or from another
        // crate (the facade's everyday names come from the runtime and workers crates).
        {
            for item in items {
                let name = item.rsplit("::").next().unwrap_or(&item).to_string();
                reexported.insert(name, module.clone());
            }
        }
    }
    reexported
}

/// The runtime's `src` holds at most 12 entries (files and folders): its root is a map of
/// the crate's ideas, one folder each, not a heap of loose files.
#[test]
fn the_runtime_root_is_a_map_of_at_most_12_entries() {
    let entries: Vec<String> = std::fs::read_dir(root().join("runtime/src"))
        .expect("runtime/src")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.len() <= 12, "runtime/src has {} entries: {entries:?}", entries.len());
}

/// Inside a crate, an import names the module that owns the item (`crate::config::cluster::
/// ClusterConfig`), never a name that resolves only through the crate root's re-exports
/// (`crate::ClusterConfig`): the path says which room the type lives in.
#[test]
fn internal_imports_name_the_module_that_owns_the_item() {
    let mut through_root = Vec::new();
    for krate in CRATES {
        let src = root().join(krate);
        let mut files = Vec::new();
        sources(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let reexported = root_reexports(&src);
        for file in &files {
            let text = std::fs::read_to_string(file).expect("source");
            for path in paths_named(&text) {
                let Some(first) = path.strip_prefix("crate::").map(|p| p.split("::").next().unwrap_or(p)) else {
                    continue;
                };
                if !modules.contains(&vec![first.to_string()]) && reexported.contains_key(first) {
                    through_root.push(format!("{}: {path}", file.strip_prefix(root()).unwrap_or(file).display()));
                }
            }
        }
    }
    through_root.sort();
    through_root.dedup();
    assert!(through_root.is_empty(), "imports through the crate root's re-exports: {through_root:#?}");
}
