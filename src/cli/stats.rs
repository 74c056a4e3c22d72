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
    let mut stats = store.stats_of(since, game)?;
    with_every_provider(config, &mut stats);
    if as_json {
        println!("{}", stats.to_json());
    } else {
        print!("{}", crate::adapters::store::render_table(&stats));
    }
    Ok(())
}

/// Lists every configured provider, in the config's order, zeros included ("did groq ever step
/// in?" has an answer); providers no longer configured follow, as the history has them.
fn with_every_provider(config: &Config, stats: &mut crate::adapters::store::Stats) {
    let mut rest = std::mem::take(&mut stats.providers);
    for p in &config.providers {
        let entry = match rest.iter().position(|s| s.provider == p.name) {
            Some(i) => rest.remove(i),
            None => crate::adapters::store::ProviderStats {
                provider: p.name.clone(),
                ..Default::default()
            },
        };
        stats.providers.push(entry);
    }
    stats.providers.append(&mut rest);
}
