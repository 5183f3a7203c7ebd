//! The host's modules depend on each other one way: no import circle among `host/src`'s
//! top-level modules (tests excepted), and the transports (`server`, `openai`, `grpc`,
//! `control`) are reached only from `daemon` (and `openai` from `server`), never for shared
//! state, which lives in `node`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("readable source directory") {
            rust_files(&entry.expect("a directory entry").path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Code without comments and without its `#[cfg(test)]` part.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules each top-level module uses (`crate::X`, `use crate::{X, …}`).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(SRC)
        .expect("host/src")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let name = name.strip_suffix(".rs").unwrap_or(&name).to_string();
            (!matches!(name.as_str(), "lib" | "main" | "cmd")).then_some(name)
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = Path::new(SRC).join(module);
        rust_files(&dir, &mut files);
        rust_files(&dir.with_extension("rs"), &mut files);
        let mut uses = BTreeSet::new();
        for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
            let text = code(&std::fs::read_to_string(file).expect("readable source"));
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    // `crate::{a, b::{c, d}, e}`: the first segment of each top-level item.
                    let mut depth = 0;
                    let end = group
                        .char_indices()
                        .find(|&(_, c)| {
                            depth += match c {
                                '{' => 1,
                                '}' => -1,
                                _ => 0,
                            };
                            depth < 0
                        })
                        .map_or(group.len(), |(j, _)| j);
                    let mut items = Vec::new();
                    let (mut depth, mut start) = (0, 0);
                    for (j, c) in group[..end].char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                items.push(&group[start..j]);
                                start = j + 1;
                            }
                            _ => {}
                        }
                    }
                    items.push(&group[start..end]);
                    items
                } else {
                    vec![rest]
                };
                for name in names {
                    let first: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if modules.contains(&first) && &first != module {
                        uses.insert(first);
                    }
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

#[test]
fn host_modules_form_no_import_circle() {
    let graph = graph();
    assert!(graph.contains_key("node") && graph.contains_key("server"));
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!(
                "import circle: {}",
                [&path[i..], &[m]].concat().join(" -> ")
            );
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if !done.contains(module.as_str()) {
            visit(module, &graph, &mut Vec::new(), &mut BTreeSet::new());
            done.insert(module.as_str());
        }
    }
}

#[test]
fn transports_are_reached_only_from_the_daemon() {
    let graph = graph();
    for (module, uses) in &graph {
        for transport in ["server", "grpc", "control"] {
            if uses.contains(transport) {
                assert_eq!(module, "daemon", "{module} uses {transport}");
            }
        }
        if uses.contains("openai") {
            assert!(
                matches!(module.as_str(), "server" | "daemon"),
                "{module} uses openai"
            );
        }
    }
    // The core depends on no transport.
    for transport in ["server", "openai", "grpc", "control", "daemon"] {
        assert!(!graph["node"].contains(transport), "node uses {transport}");
    }
}
