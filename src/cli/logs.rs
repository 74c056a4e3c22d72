//! `yaku logs [--follow]`: the current log file's path, or its lines as they are written.

use crate::config::Config;
use crate::daemon::logging;

pub fn run(config: &Config, follow: bool) -> anyhow::Result<()> {
    let path = logging::current_log(config)?;
    if !follow {
        println!("{}", path.display());
        return Ok(());
    }
    logging::follow_file(&path, &mut std::io::stdout().lock(), || false)
}
