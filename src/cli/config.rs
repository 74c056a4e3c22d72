//! `yaku config path|init [--force]`.

use std::path::Path;

use anyhow::Context;

use crate::config;
use crate::sys::private::{create_private_dir, write_private};

pub fn init(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(path, config::EXAMPLE.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
