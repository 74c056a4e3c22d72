//! Every `yaku …` command that README.md shows in a shell code block must be a real one: each is
//! run with `--help` appended, which clap answers with exit 0 only when every subcommand and
//! flag before it is known.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::Command;

/// The `yaku …` lines of the README's ```sh blocks, without comments.
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && matches!(lang, "sh" | "bash" | "shell" | "console");
            continue;
        }
        if !in_sh {
            continue;
        }
        let command = trimmed.trim_start_matches("$ ");
        let command = command.split(" #").next().unwrap_or("").trim();
        if command.starts_with("yaku ") || command == "yaku" {
            out.push(command.to_string());
        }
    }
    out
}

#[test]
fn the_readme_shows_commands_at_all() {
    let commands = readme_commands();
    assert!(commands.len() >= 15, "found only {commands:?}");
    assert!(
        commands.iter().any(|c| c.starts_with("yaku setup"))
            || include_str!("../README.md").contains("`yaku setup`")
    );
}

#[test]
fn every_yaku_command_in_the_readme_is_known() {
    let mut unknown = Vec::new();
    for command in readme_commands() {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_yaku"))
            .args(&args)
            .arg("--help")
            .env_clear()
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            unknown.push(format!(
                "{command}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    assert!(
        unknown.is_empty(),
        "README commands yaku does not know:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn completions_and_the_man_page_are_generated_and_not_empty() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(env!("CARGO_BIN_EXE_yaku"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.len() > 1000 && text.contains("translate") && text.contains("service"),
            "{shell}: {}",
            text.len()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_yaku"))
        .arg("assets")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let man = std::fs::read_to_string(dir.path().join("yaku.1")).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH yaku 1"),
        "{}",
        &man[..100.min(man.len())]
    );
    for sub in ["translate", "run", "setup", "service", "check"] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    let unit = std::fs::read_to_string(dir.path().join("yaku.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/yaku run")
            && unit.contains("RestartPreventExitStatus=78"),
        "{unit}"
    );
    for f in ["yaku.bash", "_yaku", "yaku.fish"] {
        assert!(
            std::fs::metadata(dir.path().join(f)).unwrap().len() > 1000,
            "{f}"
        );
    }
}
