//! `yaku pick N`: the reader's choice among the last shown line's options.

pub fn run(_config: &crate::config::Config, _n: u8) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
