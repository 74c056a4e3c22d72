//! `yaku setup`: the interactive first run (being written).

/// Runs the wizard.
pub fn run(_config_path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("yaku setup is not built yet")
}
