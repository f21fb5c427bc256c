//! Keeps the module graph of the README's Layout section true: each rule names a folder (or
//! file) and the paths its code must not name. A cheap grep over the sources, run by
//! `cargo test --lib`.

use std::path::{Path, PathBuf};

/// `(where, forbidden path roots, why)`.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "src/flow",
        &[
            "pingora::",
            "sled::",
            "lettre::",
            "reqwest::",
            "crate::proxy",
            "crate::portal",
            "cel::",
        ],
        "the engine and its stages see ports (traits), never a transport or a backend",
    ),
    (
        "src/policy",
        &[
            "crate::flow",
            "crate::config",
            "crate::store",
            "crate::session",
            "pingora::",
        ],
        "policies are a leaf: the engine fills their facts, config compiles them",
    ),
    (
        "src/config",
        &[
            "crate::notify",
            "crate::store",
            "crate::flow",
            "crate::session",
            "lettre::",
        ],
        "config owns the types it parses; the composition root hands them on",
    ),
    (
        "src/forward_auth",
        &["crate::portal", "crate::proxy", "pingora::"],
        "forward-auth answers with reply::Response over the access decision",
    ),
    (
        "src/portal",
        &["crate::proxy", "crate::forward_auth", "pingora::"],
        "the portal's endpoints are transport-neutral",
    ),
    (
        "src/access.rs",
        &[
            "crate::proxy",
            "crate::portal",
            "crate::forward_auth",
            "crate::flow",
            "pingora::",
        ],
        "the access decision is below every transport",
    ),
    (
        "src/reply.rs",
        &["crate::", "pingora::"],
        "the neutral response knows no module of the gateway",
    ),
    (
        "src/store",
        &[
            "crate::flow",
            "crate::notify",
            "crate::portal",
            "crate::proxy",
        ],
        "ports know nothing above them",
    ),
    (
        "src/notify",
        &[
            "crate::flow",
            "crate::store",
            "crate::portal",
            "crate::proxy",
        ],
        "ports know nothing above them",
    ),
];

/// Leaks other branches remove: `(file, forbidden root)`. Delete an entry once its leak is gone.
const PENDING: &[(&str, &str)] = &[];

fn sources(at: &Path) -> Vec<PathBuf> {
    if at.is_file() {
        return vec![at.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(at).unwrap_or_else(|e| panic!("{}: {e}", at.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}

/// Every `file:line: root` where code (not a comment) names a forbidden root.
fn violations() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (at, forbidden, why) in RULES {
        for file in sources(&root.join(at)) {
            let rel = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let text = std::fs::read_to_string(&file).expect("a readable source file");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for f in forbidden.iter().filter(|f| names(code, f)) {
                    if !PENDING.contains(&(rel.as_str(), f)) {
                        found.push(format!("{rel}:{}: `{f}` ({why})", n + 1));
                    }
                }
            }
        }
    }
    found
}

/// Whether `code` names `root` as a path (not as the tail of a longer identifier).
fn names(code: &str, root: &str) -> bool {
    code.match_indices(root).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_module_graph_of_the_readme_holds() {
    let found = violations();
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn the_layering_check_sees_a_path_and_not_a_longer_name() {
    assert!(names("use lettre::Address;", "lettre::"));
    assert!(names("x: crate::notify::SmtpSender", "crate::notify"));
    assert!(!names("my_lettre::x", "lettre::"));
    assert!(!names("SledStore::open", "sled::"));
}
