//! `yaku stats [--since 24h|7d|all] [--json]`.

use super::UsageError;
use crate::config::Config;
use crate::wire;

pub fn run(config: &Config, as_json: bool, since: &str, game: Option<&str>) -> anyhow::Result<()> {
    let since = match since {
        "all" => None,
        s => {
            let days = s.strip_suffix('d').and_then(|n| n.parse::<u64>().ok());
            let d = days
                .map(|n| std::time::Duration::from_secs(n * 86_400))
                .or_else(|| crate::adapters::provider::http::parse_duration(s))
                .ok_or_else(|| {
                    UsageError(format!(
                        "--since \"{s}\" is not a duration such as 24h, 7d or all"
                    ))
                })?;
            Some(std::time::SystemTime::now() - d)
        }
    };
    let store = wire::open_store_for_command(config)?;
    let stats = store.stats_of(since, game)?;
    if as_json {
        println!("{}", stats.to_json());
    } else {
        print!("{}", crate::adapters::store::render_table(&stats));
    }
    Ok(())
}
