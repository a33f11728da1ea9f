//! The layout check: reads the library's sources and fails on an import that points up
//! the layers, on an import cycle between modules, and on a file too long to see whole.
//!
//! An import is any `crate::…`, `super::…` or `self::…` path (in `use` items and in
//! code, tests included); relative paths into a module's own children (`use host::X` in
//! `hub/mod.rs`) are a parent using its parts and are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import from its own top-level module and from
/// lower layers only.
const LAYERS: [&str; 10] = ["util", "config", "guest", "instance", "session", "admission", "service", "listener", "control", "app"];

/// The longest a source file may be.
const MAX_LINES: usize = 400;

/// A module's path below the crate root, e.g. `["guest", "hub", "host"]`.
type ModPath = Vec<String>;

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading host/src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths a line of code refers to, from `crate::`, `super::` and `self::`, made
/// absolute; a group (`crate::a::{b::c, d}`) gives one path per member.
fn references(line: &str, here: &ModPath) -> Vec<ModPath> {
    let mut found = Vec::new();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for (start, _) in line.match_indices("::") {
        let before = &line[..start];
        let word_start = before.rfind(|c: char| !is_ident(c)).map_or(0, |i| i + 1);
        // Only the first word of a path starts one (`a::super::b` is not ours).
        if before[..word_start].ends_with("::") {
            continue;
        }
        let base: ModPath = match &before[word_start..] {
            "crate" => Vec::new(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            "self" => here.clone(),
            _ => continue,
        };
        tree(&line[start + 2..], base, &mut found);
    }
    found
}

/// Parses a use tree (`a::b`, `a::{b, c::d}`, `a::b as c`) after a path's `::`,
/// appending each path it names to `found`; returns the rest of the text.
fn tree<'t>(mut text: &'t str, mut path: ModPath, found: &mut Vec<ModPath>) -> &'t str {
    loop {
        text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            text = group;
            loop {
                text = tree(text, path.clone(), found).trim_start();
                match text.chars().next() {
                    Some(',') => text = &text[1..],
                    Some('}') => return &text[1..],
                    _ => return text,
                }
            }
        }
        let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
        let (ident, rest) = text.split_at(end);
        if !ident.is_empty() && ident != "self" {
            path.push(ident.to_string());
        }
        match rest.strip_prefix("::") {
            Some(more) => text = more,
            None => {
                found.push(path);
                return rest;
            }
        }
    }
}

/// The module file a path lands in: its longest prefix that is a module.
fn resolve<'a>(path: &ModPath, modules: &'a BTreeSet<ModPath>) -> Option<&'a ModPath> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n].to_vec()))
}

/// The complaint about `file` if its `text` is longer than [`MAX_LINES`].
fn too_long(file: &Path, text: &str) -> Option<String> {
    let lines = text.lines().count();
    (lines > MAX_LINES).then(|| format!("{}: {lines} lines (at most {MAX_LINES})", file.display()))
}

fn rank(module: &ModPath) -> Option<usize> {
    LAYERS.iter().position(|l| module.first().is_some_and(|m| m == l))
}

#[test]
fn modules_import_only_downwards_without_cycles_and_files_stay_short() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // The binary's own files (main.rs, cli.rs and cli/) are not part of the library's
    // layers, but stay short too.
    let mut problems = Vec::new();
    let (binary, files): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|f| matches!(module_of(&src, f).first().map(String::as_str), Some("main" | "cli")));
    assert!(binary.len() >= 3, "the binary's files were not found: {binary:?}");
    problems.extend(binary.iter().filter_map(|f| too_long(f, &std::fs::read_to_string(f).unwrap())));
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        problems.extend(too_long(file, &text));
        let here = module_of(&src, file);
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for reference in references(line, &here) {
                let Some(target) = resolve(&reference, &modules) else { continue };
                if *target == here || target.is_empty() {
                    continue;
                }
                let same_top = target.first() == here.first();
                if !same_top && !here.is_empty() {
                    match (rank(&here), rank(target)) {
                        (Some(from), Some(to)) if to < from => {}
                        (from, to) => problems.push(format!(
                            "{}: `{}` imports {} from a layer that is not below it ({:?} → {:?})",
                            file.display(),
                            line.trim(),
                            target.join("::"),
                            from.map(|r| LAYERS[r]),
                            to.map(|r| LAYERS[r]),
                        )),
                    }
                }
                edges.entry(here.clone()).or_default().insert(target.clone());
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        problems.push(format!("import cycle: {}", names.join(" → ")));
    }
    assert!(problems.is_empty(), "layout problems:\n  {}", problems.join("\n  "));
}

/// A cycle in the module graph, if there is one (a depth-first search).
fn find_cycle(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        node: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        done: &mut BTreeSet<ModPath>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}

#[test]
fn the_check_sees_imports_and_cycles() {
    let here: ModPath = vec!["guest".into(), "hub".into(), "host".into()];
    let krate = "crate";
    let refs = references(&format!("use {krate}::instance::{{lane::Lanes, store::State}};"), &here);
    assert_eq!(refs, [vec!["instance", "lane", "Lanes"], vec!["instance", "store", "State"]]);
    assert_eq!(references("use super::{Hub, Member};", &here), [vec!["guest", "hub", "Hub"], vec!["guest", "hub", "Member"]]);
    assert_eq!(references(&format!("let x = {krate}::util::clock::clock();"), &here), [vec!["util", "clock", "clock"]]);
    let m = |s: &str| -> ModPath { s.split('/').map(String::from).collect() };
    let mut edges = BTreeMap::new();
    edges.insert(m("a/x"), BTreeSet::from([m("a/y")]));
    edges.insert(m("a/y"), BTreeSet::from([m("a/x")]));
    assert!(find_cycle(&edges).is_some());
    edges.remove(&m("a/y"));
    assert!(find_cycle(&edges).is_none());
}
