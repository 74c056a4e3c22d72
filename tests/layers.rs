//! The architecture's layering, held by tests (ARCHITECTURE.md, "Layers"):
//! - the policy core is its own crate, and nothing in its dependency graph is an HTTP,
//!   clipboard, desktop or SQLite crate (`cargo metadata`);
//! - in the shell, imports point down only: `cli` → `daemon` → `wire` → {`protocol`,
//!   `config`, `adapters`, `service`} → {`core`, `sys`}; modules of one layer do not import
//!   each other, and nothing imports `cli`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (`crate::X`); `core` is the yaku-core crate.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    const BOTTOM: &[&str] = &["core", "sys"];
    BTreeMap::from([
        (
            "cli",
            &[
                "daemon", "wire", "protocol", "config", "adapters", "service", "core", "sys",
            ][..],
        ),
        (
            "daemon",
            &[
                "wire", "protocol", "config", "adapters", "service", "core", "sys",
            ][..],
        ),
        ("wire", &["config", "adapters", "core", "sys"][..]),
        ("protocol", BOTTOM),
        ("config", BOTTOM),
        ("adapters", BOTTOM),
        ("service", BOTTOM),
        ("sys", &[][..]),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::X` modules a source file names, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `yaku_core::...` inside the core crate is not ours; `$crate` is a macro's.
            let before = &rest[..i];
            if !name.is_empty() && !before.ends_with('$') && !before.ends_with("yaku_") {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn shell_imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let rules = allowed();
    let mut broken = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        // The programs (main.rs, bin/) sit above every layer and name the library as `yaku::`.
        if module == "lib" || module == "main" || module == "bin" {
            continue;
        }
        seen_modules.insert(module.clone());
        let Some(may) = rules.get(module.as_str()) else {
            broken.push(format!(
                "src/{}: top-level module `{module}` has no place in the layers; add it to \
                 ARCHITECTURE.md and to this test",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for name in imports(&text) {
            if name != module && !may.contains(&name.as_str()) {
                broken.push(format!(
                    "src/{}: `{module}` imports `crate::{name}`, which is not below it",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        seen_modules.len() >= 8,
        "the walk found too few modules: {seen_modules:?}"
    );
    assert!(
        broken.is_empty(),
        "layer violations:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_paths_and_skips_comments() {
    let text = "use crate::wire::{self, Parts};\n\
                let x = crate::sys::dirs::Dirs::resolve(); // crate::cli::run\n\
                // crate::daemon::run\n\
                yaku_crate::fake::x; $crate::y\n";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, vec!["sys".to_string(), "wire".to_string()]);
}

const FORBIDDEN: [&str; 10] = [
    "reqwest",
    "hyper",
    "rusqlite",
    "libsqlite3-sys",
    "x11rb",
    "notify-rust",
    "zbus",
    "arboard",
    "clipboard-win",
    "mio",
];

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_core_crate_declares_no_http_clipboard_desktop_or_sqlite_crate() {
    let meta: serde_json::Value =
        serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"])).unwrap();
    let core = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "yaku-core")
        .expect("yaku-core is a workspace member");
    let declared: Vec<&str> = core["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(declared.contains(&"governor"), "{declared:?}");
    for name in FORBIDDEN {
        assert!(
            !declared.contains(&name),
            "yaku-core declares {name}; the core must stay free of OS and HTTP code"
        );
    }
}

#[test]
fn the_core_crate_builds_with_no_http_clipboard_desktop_or_sqlite_crate() {
    // `cargo tree -p` resolves features for the core alone, as a build of it would.
    let tree = cargo(&[
        "tree",
        "-p",
        "yaku-core",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--offline",
    ]);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("governor"), "{crates:?}");
    for name in FORBIDDEN {
        assert!(
            !crates.contains(name),
            "yaku-core builds with {name}; the core must stay free of OS and HTTP code"
        );
    }
    let features = cargo(&[
        "tree",
        "-p",
        "yaku-core",
        "-e",
        "normal,features",
        "-i",
        "tokio",
        "--offline",
    ]);
    assert!(features.contains("tokio feature \"time\""), "{features}");
    assert!(
        !features.contains("tokio feature \"net\""),
        "the core builds tokio with \"net\":\n{features}"
    );
}
