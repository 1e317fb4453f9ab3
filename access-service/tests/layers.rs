//! access-service's modules depend on each other one way: no module reaches, through
//! any chain of `crate::` paths, back to itself. Configuration and the lock-gateway
//! client sit below the flows that use them.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module each `crate::<name>` in a file's code (not its comments) names.
fn uses(source: &str, own: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != own {
                found.insert(name);
            }
        }
    }
    found
}

fn read_tree(dir: &Path, into: &mut String) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            into.push('\n');
        }
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut source = String::new();
        if path.is_dir() {
            read_tree(&path, &mut source);
        } else {
            source = std::fs::read_to_string(&path).unwrap_or_default();
        }
        let deps = uses(&source, &name);
        graph.insert(name, deps);
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let graph = graph();
    assert!(graph.len() > 20, "the modules were not found: {graph:?}");
    if let Some(found) = cycle(&graph) {
        panic!(
            "modules import each other in a loop: {}",
            found.join(" -> ")
        );
    }
    // The bottom stays at the bottom.
    for bottom in ["config", "error", "decision", "policy", "passcode_names"] {
        assert_eq!(
            graph[bottom],
            BTreeSet::new(),
            "{bottom} must not depend on the rest of the service"
        );
    }
    assert!(!graph["gateway"].contains("access") && !graph["gateway"].contains("unlock"));
}

#[test]
fn a_loop_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(cycle(&graph), None);
    assert_eq!(
        uses(
            "use crate::audit::X;\n// crate::state in a comment\nlet _ = crate::db::f();",
            "me"
        ),
        BTreeSet::from(["audit".to_owned(), "db".to_owned()])
    );
}
