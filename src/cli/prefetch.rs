//! `yaku prefetch FILE`: a script translated ahead, in batches, into the daemon's cache.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::UsageError;
use super::args::PrefetchArgs;
use crate::config::Config;
use crate::config::credentials::Credentials;
use crate::core::clock::{Clock, TokioClock};
use crate::core::gates::Gates;
use crate::core::prefetch::{self, Progress, RunLimits, Stopped, Summary, Template};
use crate::core::store::Store;
use crate::wire;

/// The longest wait for a budget before the run stops (a daily quota waits for tomorrow's run).
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A batch's request may take longer than one line's: its deadline is at least this.
const BATCH_DEADLINE: Duration = Duration::from_secs(120);

pub fn run(config: &Config, args: PrefetchArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.provider {
        super::known_provider(config, name)?;
    }
    if !config.store.cache_enabled {
        return Err(UsageError(
            "the cache is off (`[store] cache = false`): a prefetched line would not be kept"
                .into(),
        )
        .into());
    }
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", args.file.display())))?;
    let lines = prefetch::parse_script(&text)
        .map_err(|e| UsageError(format!("{}: {e}", args.file.display())))?;
    let mut gates = Gates::new(config.clipboard.gates.clone())
        .context("the privacy gates could not be set up")?;
    let template = Template {
        request: wire::request_for(config, ""),
        context_lines: config.context.lines,
        glossary: config.context.glossary.clone(),
        collapse: config.clipboard.collapse_repeats,
    };
    let prepared = prefetch::prepare(&lines, &mut gates, &template);
    let store: Arc<dyn Store> = Arc::new(wire::open_store_for_command(config)?);
    let todo = prefetch::uncached(&prepared.items, store.as_ref())
        .context("cannot read the cache")?
        .len();
    let batch = usize::from(args.batch);
    let paced = paced(config);
    if args.dry_run {
        return dry_run(&paced, &args, lines.len(), &prepared, todo, batch);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let chain = {
        let _entered = runtime.enter();
        wire::build_chain(&paced, &credentials, clock.clone())?
    };
    // Today's requests (the daemon's and earlier runs') are already spent.
    wire::seed_daily_budgets(&paced, &chain);
    let limits = RunLimits {
        batch,
        max_requests: args.limit,
        max_failures: 3,
        max_wait: MAX_WAIT,
    };
    let mut report = Reporter::new(todo, args.json);
    let summary = runtime.block_on(prefetch::run(
        &chain,
        clock.as_ref(),
        store.as_ref(),
        &prepared.items,
        args.provider.as_deref(),
        limits,
        &mut |p| report.batch(p),
    ));
    report.finish();
    print_summary(&summary, &prepared, args.json)?;
    let left = summary.todo - summary.translated;
    match &summary.stopped {
        Some(Stopped::Limit) => Ok(()),
        _ if left == 0 => Ok(()),
        _ => {
            anyhow::bail!("{left} lines are not cached yet; run `yaku prefetch` again to continue")
        }
    }
}

/// The config as the prefetch uses it: one request a minute and one a day of each provider
/// are left to the daemon (whose own budget state this process cannot see), and a batch gets
/// a longer deadline than a line.
fn paced(config: &Config) -> Config {
    let mut c = config.clone();
    for p in &mut c.providers {
        if p.requests_per_minute > 1 {
            p.requests_per_minute -= 1;
        }
        if p.requests_per_day > 1 {
            p.requests_per_day -= 1;
        }
    }
    c.translation.deadline = c.translation.deadline.max(BATCH_DEADLINE);
    c
}

fn dry_run(
    paced: &Config,
    args: &PrefetchArgs,
    script_lines: usize,
    prepared: &prefetch::Prepared,
    todo: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let requests = prefetch::requests_for(todo, batch);
    let providers: Vec<serde_json::Value> = paced
        .providers
        .iter()
        .filter(|p| args.provider.as_ref().is_none_or(|n| *n == p.name))
        .map(|p| {
            let days =
                (p.requests_per_day > 0).then(|| requests as f64 / f64::from(p.requests_per_day));
            let minutes = (p.requests_per_minute > 0)
                .then(|| requests as f64 / f64::from(p.requests_per_minute));
            json!({
                "provider": p.name,
                "requests_per_minute": p.requests_per_minute,
                "requests_per_day": p.requests_per_day,
                "days": days,
                "minutes": minutes,
            })
        })
        .collect();
    let out = json!({
        "dry_run": true,
        "script_lines": script_lines,
        "lines": prepared.items.len(),
        "rejected": prepared.rejected,
        "repeats": prepared.repeats,
        "cached": prepared.items.len() - todo,
        "todo": todo,
        "batch": batch,
        "requests": requests,
        "providers": providers,
    });
    if args.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "{todo} lines to translate ({} cached, {} refused by the gates, {} repeats) in {requests} requests of {batch} lines",
        prepared.items.len() - todo,
        prepared.rejected,
        prepared.repeats
    );
    for p in &providers {
        let name = p["provider"].as_str().unwrap_or("");
        let days = p["days"].as_f64().map_or("no daily cap".to_string(), |d| {
            format!(
                "{d:.2} days of its daily budget ({}/day)",
                p["requests_per_day"]
            )
        });
        let minutes = p["minutes"]
            .as_f64()
            .map_or("no per-minute limit".to_string(), |m| {
                format!("at least {m:.1} min at {}/min", p["requests_per_minute"])
            });
        println!("  {name}: {days}; {minutes}");
    }
    Ok(())
}

/// Progress: a bar on a terminal, else one line per batch on stderr (none with --json).
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl Reporter {
    fn new(total: usize, json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !json).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} lines · {msg} · ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            lines: !terminal && !json,
        }
    }

    fn batch(&mut self, p: Progress) {
        let done = p.translated + p.failed;
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{} requests", p.requests));
        } else if self.lines {
            eprintln!(
                "prefetch: {done}/{} lines ({} failed), {} requests",
                p.total, p.failed, p.requests
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_summary(s: &Summary, prepared: &prefetch::Prepared, json: bool) -> anyhow::Result<()> {
    let stopped = s.stopped.as_ref().map(|st| match st {
        Stopped::Limit => "limit",
        Stopped::Budget { .. } => "budget",
        Stopped::Store(_) => "store",
    });
    if json {
        let by: Vec<serde_json::Value> = s
            .by_provider
            .iter()
            .map(|(p, n)| json!({ "provider": p, "requests": n }))
            .collect();
        println!(
            "{}",
            json!({
                "lines": prepared.items.len(),
                "rejected": prepared.rejected,
                "repeats": prepared.repeats,
                "cached": s.cached,
                "todo": s.todo,
                "translated": s.translated,
                "failed": s.failed,
                "requests": s.requests,
                "providers": by,
                "splits": s.splits,
                "waited_ms": s.waited.as_millis() as u64,
                "stopped": stopped,
            })
        );
        return Ok(());
    }
    eprintln!(
        "prefetch: {} translated, {} failed, {} already cached; {} requests ({} split batches)",
        s.translated, s.failed, s.cached, s.requests, s.splits
    );
    match &s.stopped {
        Some(Stopped::Limit) => eprintln!("prefetch: stopped at --limit; run again to continue"),
        Some(Stopped::Budget { wait }) => eprintln!(
            "prefetch: every provider's budget is spent{}; run again later to continue",
            wait.map(|w| format!(" for {}", crate::core::chain::human_duration(w)))
                .unwrap_or_default()
        ),
        Some(Stopped::Store(e)) => eprintln!("prefetch: the history store failed: {e}"),
        None => {}
    }
    Ok(())
}
