//! Tidy checks that run as ordinary tests: every Rust file says what it is in a
//! `//!` first line, and no source leaves a stub behind.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["proto", "node", "cli", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the walk found the sources");
    files
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let missing: Vec<_> = workspace_files()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn no_stub_is_left_in_the_sources() {
    let stub_markers = [
        concat!("tod", "o!("),
        concat!("unimpl", "emented!("),
        concat!("FIX", "ME"),
    ];
    for p in workspace_files() {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for m in stub_markers {
            assert!(!text.contains(m), "{} contains {m}", p.display());
        }
    }
}

/// The layer of each module of `maillon-node`, from the block of ARCHITECTURE.md.
fn layers() -> Vec<Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let block = doc
        .split("<!-- layers -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /layers -->").next())
        .expect("ARCHITECTURE.md has a layers block");
    block
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .map(|l| {
            // "a | b | c      comment": the names before the comment.
            let names = l.split("   ").next().unwrap_or_default();
            names.split('|').map(|n| n.trim().to_owned()).collect()
        })
        .collect()
}

/// The modules a source names through `crate::`, including groups such as
/// `crate::{a, b::{c, d}}` over several lines, as rustfmt wraps them.
fn crate_imports(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            out.push(ident(rest));
            continue;
        };
        // The first name of each item at the group's top level.
        let (mut depth, mut item_start) = (1usize, true);
        for (i, c) in group.char_indices() {
            if item_start && !c.is_whitespace() {
                out.push(ident(&group[i..]));
                item_start = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => item_start = true,
                _ => {}
            }
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

#[test]
fn the_import_scanner_reads_wrapped_and_nested_groups() {
    let text = "use crate::audit::X;\nuse crate::{\n    consent::{self, Y},\n    // crate::ignored\n    roster,\n};\nlet k = crate::storage::Tree::Meta;";
    assert_eq!(
        crate_imports(text),
        ["audit", "consent", "roster", "storage"]
    );
}

#[test]
fn node_modules_import_only_lower_layers() {
    let layers = layers();
    let layer_of = |m: &str| layers.iter().position(|l| l.iter().any(|n| n == m));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(mine) = layer_of(&module) else {
            wrong.push(format!("{module} is not in the layers of ARCHITECTURE.md"));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read");
        for dep in crate_imports(&text) {
            if dep == module {
                continue;
            }
            match layer_of(&dep) {
                Some(theirs) if theirs > mine => {}
                Some(_) => wrong.push(format!("{} imports {dep}, not below it", rel.display())),
                None => wrong.push(format!("{} imports {dep}, in no layer", rel.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    assert!(layers.len() >= 6, "the layers block was read: {layers:?}");
}

#[test]
fn each_outside_crate_is_named_by_its_one_owning_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("read");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let owners = [
            ("sled::", "storage.rs"),
            ("openmls::", "sharing.rs"),
            ("use openmls_", "sharing.rs"),
            ("tonic::", "transport/"),
        ];
        for (krate, owner) in owners {
            // The fuzz harness builds MLS inputs; it is test support, not node logic.
            if krate.contains("openmls") && rel == "fuzzing.rs" {
                continue;
            }
            assert!(
                !code.contains(krate) || rel.starts_with(owner),
                "{rel} names {krate}, which only {owner} may"
            );
        }
    }
    let auditor =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/audit.rs"))
            .expect("cli audit");
    assert!(
        !auditor.contains("maillon_node::daemon"),
        "the auditor verifies with the node's pure code, not its daemon"
    );
}
