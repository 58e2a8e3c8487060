//! The architecture, checked against the code: inside `dtask-core` and
//! `dtask-http` no file imports (through a chain of others) a file that
//! imports it back, and `dtask-core`'s modules stand in the layers
//! ARCHITECTURE.md draws, each importing only from its own layer or below.
//!
//! The import graph is read from the sources (`support/imports.rs`):
//! `crate::`, `super::` and `self::` paths, re-exports followed to the file
//! that defines the item.

#[path = "support/imports.rs"]
mod imports;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use imports::{Crate, cycles};

/// `dtask-core`'s layers, bottom first. A file belongs to the longest
/// module path listed that contains it; it may import files of its own
/// layer and of the layers below, never above.
const CORE_LAYERS: &[(&str, &[&str])] = &[
    ("foundation", &["id", "error", "format", "principal", "trace"]),
    ("the task model", &["task", "files", "infra::storage"]),
    (
        "events, progress and history records",
        &["event", "progress", "history"],
    ),
    ("serializers", &["codec"]),
    ("infrastructure traits", &["infra"]),
    ("in-memory and local backends", &["memory", "fs"]),
    ("kernel", &["kernel"]),
    ("reconciler", &["reconcile"]),
    ("host", &["host"]),
    ("test support", &["testing", "conformance"]),
];

fn crate_root(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

fn describe(cycles: &[Vec<&str>]) -> String {
    cycles
        .iter()
        .map(|files| format!("  {}", files.join(" <-> ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dtask_core_has_no_import_loop() {
    let krate = Crate::read(&crate_root("dtask-core"));
    let found = cycles(&krate.imports());
    assert!(found.is_empty(), "import loops in dtask-core:\n{}", describe(&found));
}

#[test]
fn dtask_http_has_no_import_loop() {
    let krate = Crate::read(&crate_root("dtask-http"));
    let found = cycles(&krate.imports());
    assert!(found.is_empty(), "import loops in dtask-http:\n{}", describe(&found));
}

/// The layer of the file at module path `module`.
fn layer_of(module: &[String]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (prefix length, layer)
    for (layer, (_, members)) in CORE_LAYERS.iter().enumerate() {
        for member in *members {
            let prefix: Vec<&str> = member.split("::").collect();
            let matches = module.len() >= prefix.len() && module.iter().zip(&prefix).all(|(a, b)| a == b);
            if matches && best.is_none_or(|(len, _)| prefix.len() > len) {
                best = Some((prefix.len(), layer));
            }
        }
    }
    best.map(|(_, layer)| layer)
}

#[test]
fn dtask_core_imports_point_down_its_layers() {
    let krate = Crate::read(&crate_root("dtask-core"));
    let layer_by_file: BTreeMap<&str, Option<usize>> = krate
        .files
        .iter()
        .map(|(module, file)| (file.path.as_str(), layer_of(module)))
        .collect();
    let unplaced: Vec<&str> = layer_by_file
        .iter()
        .filter(|(path, layer)| layer.is_none() && **path != "lib.rs")
        .map(|(path, _)| *path)
        .collect();
    assert!(unplaced.is_empty(), "files in no layer of CORE_LAYERS: {unplaced:?}");
    let mut upward = BTreeSet::new();
    for (from, targets) in krate.imports() {
        let Some(Some(from_layer)) = layer_by_file.get(from) else {
            continue; // lib.rs, the facade of the crate
        };
        for to in targets {
            if let Some(Some(to_layer)) = layer_by_file.get(to)
                && to_layer > from_layer
            {
                upward.insert(format!(
                    "  {from} ({}) imports {to} ({})",
                    CORE_LAYERS[*from_layer].0, CORE_LAYERS[*to_layer].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up dtask-core's layers:\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The reader itself, on a crate made for it: a loop through a re-export
/// is found, a test module's imports are not, a doc link is not.
#[test]
fn the_import_reader_follows_reexports_and_skips_tests_and_comments() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\npub use c::Thing;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod inner;\npub use inner::Inner;\n").unwrap();
    std::fs::write(src.join("a/inner.rs"), "use crate::Thing;\npub struct Inner;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "//! See [`crate::c::Thing`].\n#[cfg(test)]\nmod tests { use crate::c::Thing; }\n",
    )
    .unwrap();
    std::fs::write(src.join("c.rs"), "use crate::{a::Inner as I};\npub struct Thing;\n").unwrap();
    let krate = Crate::read(dir);
    let graph = krate.imports();
    assert_eq!(graph["a/inner.rs"], BTreeSet::from(["c.rs"]));
    assert_eq!(graph["c.rs"], BTreeSet::from(["a/inner.rs"]));
    assert!(graph["b.rs"].is_empty(), "{graph:?}");
    assert_eq!(cycles(&graph), vec![vec!["a/inner.rs", "c.rs"]]);
}
