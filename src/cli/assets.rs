//! `yaku completions`, `yaku man` and the hidden `yaku assets DIR`: files generated from the
//! clap definitions for packages.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::args::Cli;

/// `yaku completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "yaku", &mut std::io::stdout());
    Ok(())
}

/// `yaku man`.
pub fn man() -> anyhow::Result<()> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .context("cannot write the man page")
}

/// The files a package installs beside the binary, all generated from this build.
pub fn write(dir: &Path, binary: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    let mut man = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut man)?;
    write("yaku.1", &man)?;
    for (shell, name) in [
        (Shell::Bash, "yaku.bash"),
        (Shell::Zsh, "_yaku"),
        (Shell::Fish, "yaku.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "yaku", &mut out);
        write(name, &out)?;
    }
    let unit = crate::service::render_systemd_unit(binary);
    // The packaged unit is enabled by each user, not written by `yaku service install`.
    let unit = match unit.split_once('\n') {
        Some((first, rest)) if first.starts_with('#') => format!(
            "# Installed by the yaku package. Enable it for your session with:\n#   systemctl --user enable --now yaku.service\n{rest}"
        ),
        _ => unit,
    };
    write("yaku.service", unit.as_bytes())
}
