//! `yaku translate [TEXT]`: one line through the chain, printed; recorded in the history.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::NoProvider;
use super::UsageError;
use super::args::TranslateArgs;
use crate::config::Config;
use crate::config::credentials::Credentials;
use crate::core::chain::{ChainFailure, Skipped, Translation};
use crate::core::clock::{Clock, TokioClock};
use crate::core::line::{Accepted, CacheUse, Lines};
use crate::core::store::{Source, StoreHandle};
use crate::wire;

pub fn run(config: &Config, args: TranslateArgs) -> anyhow::Result<()> {
    let text = read_text(config, args.text.as_deref())?;
    let text = text.as_str();
    if let Some(name) = &args.provider {
        super::known_provider(config, name)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Key files are checked first, so a file others can read is refused even for a cached line.
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let chain = {
        // Provider clients are built inside the runtime they will run on.
        let _entered = runtime.enter();
        wire::build_chain(config, &credentials, clock.clone())?
    };
    // As the daemon does: today's requests are spent, so a budget the history shows as used
    // up is not walked into a 429.
    wire::seed_daily_budgets(config, &chain);
    let request = wire::request_for(config, text);
    // History and cache are a convenience here: without the store the line is still translated.
    let store = match wire::open_store_for_command(config) {
        Ok(s) => Some(Arc::new(StoreHandle::once(Arc::new(s), clock))),
        Err(e) => {
            tracing::warn!("translating without history and cache: {e:#}");
            None
        }
    };
    let cache = match (
        config.store.cache_enabled,
        args.fresh || args.provider.is_some(),
    ) {
        (false, _) => CacheUse::Off,
        (true, false) => CacheUse::On,
        (true, true) => CacheUse::Refresh,
    };
    let lines = Lines::new(store);
    let result = match lines.accept(&request, &request.glossary, Source::Cli, cache) {
        Accepted::Cached(t, _) => {
            eprintln!("from the cache ({})", t.provider);
            Ok(t)
        }
        Accepted::Pending(entry) => {
            runtime.block_on(lines.translate(&chain, &request, args.provider.as_deref(), &entry))
        }
    };
    let rendered = result.as_ref().ok().and_then(|t| t.speaker.as_deref());
    let speaker = crate::core::speaker::shown_name(text, &config.context.glossary, rendered);
    print(text, speaker.as_deref(), result, args.json)
}

/// The line: the argument, else standard input; trimmed, within `max_chars`, not empty.
fn read_text(config: &Config, arg: Option<&str>) -> anyhow::Result<String> {
    let text = match arg {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read standard input")?;
            s
        }
    };
    let text = text.trim();
    // The clipboard's length limit holds here too: a file piped in by mistake is not sent.
    let max = config.clipboard.gates.max_chars;
    if text.chars().nth(max).is_some() {
        return Err(UsageError(format!(
            "the text is longer than {max} characters (`[clipboard] max_chars`); nothing was sent"
        ))
        .into());
    }
    if text.is_empty() {
        return Err(UsageError(
            "nothing to translate: pass the text as an argument or on standard input".into(),
        )
        .into());
    }
    Ok(text.to_string())
}

/// Prints the answer (or the failure, as JSON too with `--json`) and says who answered.
/// `speaker` is the line's speaker as shown (`speaker::shown_name`).
fn print(
    text: &str,
    speaker: Option<&str>,
    result: Result<Translation, ChainFailure>,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match result {
        Ok(t) => {
            if json {
                writeln!(out, "{}", translation_json(text, speaker, &t))?;
            } else {
                write_plain(&mut out, &t)?;
                if !t.attempts.is_empty() {
                    eprintln!("{}", t.via_line());
                }
            }
            Ok(())
        }
        Err(failure) => {
            if json {
                writeln!(out, "{}", failure_json(text, speaker, &failure))?;
            }
            eprintln!("yaku: no provider could translate this line:");
            for s in &failure.skipped {
                eprintln!("  {}", s.described());
            }
            Err(NoProvider.into())
        }
    }
}

fn write_plain(out: &mut impl Write, t: &Translation) -> std::io::Result<()> {
    for line in option_lines(t, "") {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The options as printed: the best on its own line, then `  2. …`, all after `indent`.
pub(super) fn option_lines(t: &Translation, indent: &str) -> Vec<String> {
    t.options
        .iter()
        .enumerate()
        .map(|(i, option)| match i {
            0 => format!("{indent}{option}"),
            _ => format!("{indent}  {}. {option}", i + 1),
        })
        .collect()
}

fn skipped_json(skipped: &[Skipped]) -> serde_json::Value {
    skipped
        .iter()
        .map(|s| {
            json!({
                "provider": s.provider,
                "reason": s.reason.as_str(),
                "retry_after_ms": s.retry_after.map(|d| d.as_millis() as u64),
            })
        })
        .collect()
}

pub fn translation_json(text: &str, speaker: Option<&str>, t: &Translation) -> serde_json::Value {
    json!({
        "text": text,
        "speaker": speaker,
        "best": t.options.first(),
        "options": t.options,
        "provider": t.provider,
        "skipped": skipped_json(&t.skipped),
        "latency_ms": t.latency.as_millis() as u64,
    })
}

pub fn failure_json(text: &str, speaker: Option<&str>, f: &ChainFailure) -> serde_json::Value {
    json!({
        "text": text,
        "speaker": speaker,
        "best": null,
        "options": [],
        "provider": null,
        "skipped": skipped_json(&f.skipped),
        "latency_ms": f.latency.as_millis() as u64,
    })
}
