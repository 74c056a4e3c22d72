//! The one composition root: a `Config` becomes providers, a chain, a store and the daemon's
//! settings. Every command and the daemon build their parts here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::adapters::clipboard::{Events, SystemClipboard};
use crate::adapters::provider::{Settings, gemini::Gemini, openai::OpenAi};
use crate::adapters::store::SqliteStore;
use crate::config::credentials::Credentials;
use crate::config::{Config, ConfigError, KeyLookup, ProviderConfig, ProviderKind, Watch};
use crate::core::calendar::DailyReset;
use crate::core::chain::{Chain, ChainConfig, ChainEntry, SkipReason, Skipped};
use crate::core::clock::Clock;
use crate::core::daemon::DaemonSettings;
use crate::core::gates::Gates;
use crate::core::lookahead::{DailyShare, LookaheadSettings, Script};
use crate::core::notice::Notice;
use crate::core::prompt::TranslationRequest;
use crate::core::provider::Provider;
use crate::core::ratelimit::RateLimit;
use crate::core::store::{Opener, STORE_RETRY, Store, StoreHandle};
use crate::sys::dirs::Dirs;

/// Builds the chain the config describes. Providers without a key are listed as unusable.
/// The system clipboard, watched as `[clipboard] watch` says (not connected yet).
pub fn clipboard(config: &Config) -> SystemClipboard {
    let events = match config.clipboard.watch {
        Watch::Auto => Events::Auto,
        Watch::Events => Events::Required,
        Watch::Poll => Events::Off,
    };
    SystemClipboard::new(config.clipboard.gates.max_chars).with_events(events)
}

pub fn build_chain(
    config: &Config,
    credentials: &Credentials,
    clock: Arc<dyn Clock>,
) -> Result<Chain, ConfigError> {
    let env = |var: &str| std::env::var(var).ok();
    let mut entries = Vec::with_capacity(config.providers.len());
    for p in &config.providers {
        let limit = RateLimit::new(p.requests_per_minute, p.requests_per_day, clock.clone())
            .with_tokens_per_minute(p.tokens_per_minute);
        let (api_key, source) = match p.key(env, credentials, config.source.as_deref())? {
            KeyLookup::Found { key, source } => (Some(key), Some(source)),
            KeyLookup::NotNeeded => (None, None),
            KeyLookup::Missing { hint } => {
                tracing::debug!(provider = %p.name, "skipped: no API key ({hint})");
                let reason = Skipped {
                    provider: p.name.clone(),
                    reason: SkipReason::NoKey,
                    retry_after: None,
                    daily: false,
                    detail: "no API key".into(),
                    advice: hint,
                };
                entries.push(ChainEntry::unusable(&p.name, reason, limit));
                continue;
            }
        };
        let id = settings_id(p, api_key.as_deref(), config);
        let provider = build_provider(p, api_key).map_err(|e| http_setup_error(&p.name, &e))?;
        entries.push(
            ChainEntry::new(
                provider,
                config.breaker,
                limit,
                p.key_advice(source.as_ref()),
            )
            .with_settings_id(id)
            .with_hedge_after(p.hedge_after),
        );
    }
    let cfg = ChainConfig {
        deadline: config.translation.deadline,
        reply_checks: config.translation.reply_checks,
        ..ChainConfig::default()
    };
    Ok(Chain::new(entries, clock, cfg))
}

/// A hash of everything a provider's entry is built from, its key included (only as part of
/// the hash): equal ids mean a reload changed nothing about it.
fn settings_id(p: &ProviderConfig, api_key: Option<&str>, config: &Config) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.name.hash(&mut h);
    format!("{:?}", p.kind).hash(&mut h);
    p.model.hash(&mut h);
    p.base_url.hash(&mut h);
    api_key.hash(&mut h);
    p.requests_per_minute.hash(&mut h);
    p.requests_per_day.hash(&mut h);
    p.tokens_per_minute.hash(&mut h);
    p.timeout.hash(&mut h);
    p.json_mode.hash(&mut h);
    p.extra.to_string().hash(&mut h);
    format!("{:?}", config.breaker).hash(&mut h);
    h.finish()
}

/// Takes the requests each provider made since the start of its current budget day (the
/// history's attempts, as `yaku stats --since` counts them) from its daily budget, so a
/// restart, a reload or `yaku translate` never gives spent requests back. Without a readable
/// history nothing is taken.
pub fn seed_daily_budgets(config: &Config, chain: &crate::core::chain::Chain) {
    if config.providers.iter().all(|p| p.requests_per_day == 0) {
        return;
    }
    if !store_path(config).is_ok_and(|p| p.exists()) {
        return;
    }
    // Beside a running daemon (a reload, `translate`): its pending line is not ours to end.
    let store = match open_store_for_command(config) {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "daily budgets not read from the history: they start full");
            return;
        }
    };
    let now = std::time::SystemTime::now();
    let budgeted: Vec<(&ProviderConfig, std::time::SystemTime)> = config
        .providers
        .iter()
        .filter(|p| p.requests_per_day > 0)
        .map(|p| (p, daily_reset(p.kind).day_start(now)))
        .collect();
    // One count per distinct day start: the providers of one zone share it.
    let mut counted: Vec<(std::time::SystemTime, crate::adapters::store::Stats)> = Vec::new();
    for (_, since) in &budgeted {
        if counted.iter().any(|(at, _)| at == since) {
            continue;
        }
        match store.stats(Some(*since)) {
            Ok(stats) => counted.push((*since, stats)),
            Err(e) => {
                tracing::warn!(error = %e, "daily budgets not read from the history: they start full");
                return;
            }
        }
    }
    for (p, since) in budgeted {
        let (Some(entry), Some((_, stats))) = (
            chain.entry(&p.name),
            counted.iter().find(|(at, _)| *at == since),
        ) else {
            continue;
        };
        let made = stats
            .providers
            .iter()
            .find(|s| s.provider == p.name)
            .map_or(0, |s| s.requests);
        if made > 0 {
            entry.spend_day(u32::try_from(made).unwrap_or(u32::MAX));
            tracing::info!(provider = %p.name, requests = made, "daily budget: requests made since the budget day began are spent");
        }
    }
}

/// When a provider's daily budget resets: Gemini's at midnight Pacific time, every other's at
/// midnight UTC (the fallback the OpenAI-compatible adapter also waits for on a daily 429).
pub fn daily_reset(kind: ProviderKind) -> DailyReset {
    match kind {
        ProviderKind::Gemini => DailyReset::PacificMidnight,
        ProviderKind::Openai => DailyReset::UtcMidnight,
    }
}

/// The adapter for one configured provider, with its key.
pub fn build_provider(
    p: &ProviderConfig,
    api_key: Option<String>,
) -> Result<Arc<dyn Provider>, reqwest::Error> {
    let settings = Settings {
        name: p.name.clone(),
        model: p.model.clone(),
        base_url: p.base_url.clone(),
        api_key,
        timeout: p.timeout,
        extra: p.extra.clone(),
        json_mode: p.json_mode,
    };
    Ok(match p.kind {
        ProviderKind::Gemini => Arc::new(Gemini::new(settings)?),
        ProviderKind::Openai => Arc::new(OpenAi::new(settings)?),
    })
}

fn http_setup_error(name: &str, e: &reqwest::Error) -> ConfigError {
    ConfigError::File {
        path: "(providers)".into(),
        message: format!("provider \"{name}\": the HTTP client could not be set up: {e}"),
    }
}

/// The request for one line on its own (no context) under this config, with the glossary
/// entries it names.
pub fn request_for(config: &Config, text: &str) -> TranslationRequest {
    TranslationRequest {
        text: text.to_string(),
        source_language: config.translation.source_language.clone(),
        target_language: config.translation.target_language.clone(),
        options: config.translation.options,
        instructions: config.translation.instructions.clone(),
        glossary: config.context.glossary.applicable(text, &[]),
        ..Default::default()
    }
}

/// Opens the history store for a command that may run beside a live daemon: no integrity
/// scan (the daemon did it) and pending rows left alone (they may be the daemon's line).
pub fn open_store_for_command(
    config: &Config,
) -> anyhow::Result<crate::adapters::store::SqliteStore> {
    use crate::adapters::store::{Options, SqliteStore};
    let path = store_path(config)?;
    let opts = Options {
        quick_check: false,
        recover_pending: false,
        ..Options::default()
    };
    let (store, _) = SqliteStore::open_with(&path, &opts)
        .with_context(|| format!("cannot open the history store {}", path.display()))?;
    Ok(store)
}

/// The parts a config determines, built before anything changes so a broken config never
/// replaces a working one.
pub struct Parts {
    pub chain: Arc<crate::core::chain::Chain>,
    pub gates: Gates,
    pub settings: DaemonSettings,
}

pub fn build_parts(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Parts> {
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let chain = Arc::new(build_chain(config, &credentials, clock)?);
    seed_daily_budgets(config, &chain);
    for entry in chain.entries() {
        match &entry.unusable {
            Some(s) => {
                tracing::warn!(provider = %entry.name, "provider skipped: {} — {}", s.summary(), s.advice)
            }
            None => tracing::info!(provider = %entry.name, "provider ready"),
        }
    }
    let gates = Gates::new(config.clipboard.gates.clone())
        .context("the privacy gates could not be set up")?;
    let settings = DaemonSettings {
        collapse_repeats: config.clipboard.collapse_repeats,
        show_original: config.notify.show_original,
        include_text: config.log.include_text,
        request: request_for(config, ""),
        context_lines: config.context.lines,
        context_reset: config.context.reset,
        glossary: config.context.glossary.clone(),
        cache_enabled: config.store.cache_enabled,
        games: config.games.clone(),
        websocket_game: config.intake.game.clone(),
        lookahead: lookahead_settings(config),
    };
    Ok(Parts {
        chain,
        gates,
        settings,
    })
}

/// `[lookahead]` with its script read, cleaned as copied lines are, and each provider's
/// daily share seeded with the look-ahead requests of its budget day (as
/// [`seed_daily_budgets`] seeds the budgets). A script that cannot be read is a warning:
/// the daemon translates as before, without look-ahead.
pub fn lookahead_settings(config: &Config) -> Option<LookaheadSettings> {
    let path = config.lookahead.script.as_ref()?;
    if !config.store.cache_enabled {
        tracing::warn!("look-ahead is off: it needs the cache (`[cache] enabled = true`)");
        return None;
    }
    let lines = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| crate::core::prefetch::parse_script(&text).map_err(|e| e.to_string()));
    let lines = match lines {
        Ok(lines) => lines,
        Err(e) => {
            tracing::warn!(script = %path.display(), error = %e, "look-ahead is off: the [lookahead] script cannot be read");
            return None;
        }
    };
    let mut gates = match Gates::new(config.clipboard.gates.clone()) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "look-ahead is off: the privacy gates could not be set up");
            return None;
        }
    };
    let name = path.display().to_string();
    let script = Script::new(&name, &lines, &mut gates, config.clipboard.collapse_repeats);
    Some(LookaheadSettings {
        script: Arc::new(script),
        lines: config.lookahead.lines,
        daily_share: config.lookahead.daily_share,
        shares: daily_shares(config),
    })
}

/// Each daily-budgeted provider's look-ahead requests since its budget day began.
fn daily_shares(config: &Config) -> Vec<DailyShare> {
    let now = std::time::SystemTime::now();
    let store = store_path(config)
        .ok()
        .filter(|p| p.exists())
        .and_then(|_| open_store_for_command(config).ok());
    config
        .providers
        .iter()
        .filter(|p| p.requests_per_day > 0)
        .map(|p| {
            let reset = daily_reset(p.kind);
            let day = reset.day_start(now);
            let spent = store
                .as_ref()
                .and_then(|s| s.stats(Some(day)).ok())
                .and_then(|st| {
                    st.providers
                        .iter()
                        .find(|s| s.provider == p.name)
                        .map(|s| s.lookahead_requests)
                })
                .unwrap_or(0);
            DailyShare {
                provider: p.name.clone(),
                per_day: p.requests_per_day,
                reset,
                spent: u32::try_from(spent).unwrap_or(u32::MAX),
                day,
            }
        })
        .collect()
}

/// The history store's file: `[store] path`, else the platform data dir.
pub fn store_path(config: &Config) -> anyhow::Result<PathBuf> {
    Ok(config.store_path(&Dirs::resolve()?))
}

/// The daemon's store calls run on its pipeline task: a file locked by someone else (an
/// open `sqlite3` session) may hold a line up for at most a second, then the store is left
/// alone for ten minutes.
///
/// The open itself is quick whatever the size of the file (a schema read, not a full
/// `quick_check`): the check and the retention run in the background ([`maintain_store`]),
/// after the control socket answers.
fn daemon_store_options() -> crate::adapters::store::Options {
    crate::adapters::store::Options {
        busy_timeout: Duration::from_secs(1),
        quick_check: false,
        ..Default::default()
    }
}

/// The daemon's store maintenance, in the background: one integrity check of the file at
/// start (a damaged file is moved aside and replaced, and `commands` gets a notice saying
/// so), then the retention (in committed batches, see `SqliteStore::prune`) at once and
/// every hour. Runs until the task is dropped.
pub async fn maintain_store(
    store: Arc<StoreHandle>,
    opened: Option<Arc<SqliteStore>>,
    commands: tokio::sync::mpsc::Sender<crate::core::daemon::DaemonCommand>,
    max_rows: u64,
    max_days: u64,
) {
    if let Some(sqlite) = opened {
        let checked = tokio::task::spawn_blocking(move || {
            let path = sqlite.path().map(|p| p.display().to_string());
            (sqlite.replace_if_damaged(), path.unwrap_or_default())
        })
        .await;
        match checked {
            Ok((Ok(Some(moved)), path)) => {
                tracing::warn!(moved_to = %moved.to.display(), reason = %moved.reason, "the history store was damaged: moved aside, a fresh one was created");
                let notice = Notice {
                    summary: "yaku: history store replaced".into(),
                    body: crate::core::notice::escape(&format!(
                        "{path} was damaged and was moved to {}; a new one was created.",
                        moved.to.display()
                    )),
                };
                let _ = commands
                    .send(crate::core::daemon::DaemonCommand::Notify(notice))
                    .await;
            }
            Ok((Err(e), path)) => {
                tracing::warn!(%path, error = %e, "the history store could not be checked")
            }
            _ => {}
        }
    }
    loop {
        let handle = store.clone();
        let started = std::time::Instant::now();
        let removed = tokio::task::spawn_blocking(move || {
            handle.with("applied the retention", |s| {
                s.prune(max_rows, max_days, std::time::SystemTime::now())
            })
        })
        .await;
        if let Ok(Some(n)) = removed
            && n > 0
        {
            tracing::info!(
                removed = n,
                elapsed_ms = started.elapsed().as_millis() as u64,
                max_rows,
                max_days,
                "history retention removed old lines"
            );
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Opens the store for the daemon. A store that cannot be opened is retried later; a file
/// that was not a database is moved aside, and the returned notice says so once.
///
/// Also returns the store as opened, for [`maintain_store`]'s integrity check.
#[allow(clippy::type_complexity)]
pub fn open_daemon_store(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> (Arc<StoreHandle>, Option<Notice>, Option<Arc<SqliteStore>>) {
    let path = match store_path(config) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("no history store: {e:#}");
            PathBuf::from("yaku.db")
        }
    };
    let reopen_path = path.clone();
    let opener: Opener = Box::new(move || {
        let (store, _) = SqliteStore::open_with(&reopen_path, &daemon_store_options())?;
        Ok(Arc::new(store) as Arc<dyn Store>)
    });
    let mut notice = None;
    // Damage that the quick open trips over (the pending-line recovery reads a damaged page)
    // gets the full check at once, which moves the file aside.
    let opened = SqliteStore::open_with(&path, &daemon_store_options()).or_else(|_| {
        let full = crate::adapters::store::Options {
            quick_check: true,
            ..daemon_store_options()
        };
        SqliteStore::open_with(&path, &full)
    });
    let store: Option<Arc<SqliteStore>> = match opened {
        Ok((store, report)) => {
            if let Some(moved) = &report.moved_aside {
                tracing::warn!(moved_to = %moved.to.display(), reason = %moved.reason, "the history store was unreadable: moved aside, a fresh one was created");
                notice = Some(Notice {
                    summary: "yaku: history store replaced".into(),
                    body: crate::core::notice::escape(&format!(
                        "{} could not be read and was moved to {}; a new one was created.",
                        path.display(),
                        moved.to.display()
                    )),
                });
            }
            if report.interrupted > 0 {
                tracing::info!(
                    rows = report.interrupted,
                    "lines left pending by the last run are now interrupted"
                );
            }
            tracing::info!(path = %path.display(), "history store open");
            Some(Arc::new(store))
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "history store unavailable; translating without history and cache, retrying every 10 minutes");
            None
        }
    };
    let port = store.clone().map(|s| s as Arc<dyn Store>);
    (
        Arc::new(StoreHandle::new(port, opener, clock, STORE_RETRY)),
        notice,
        store,
    )
}
