//! `yaku translate [TEXT]`: one line through the chain, printed; recorded in the history.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::UsageError;
use super::NoProvider;
use super::args::TranslateArgs;
use crate::config::{Config, ConfigError};
use crate::config::credentials::Credentials;
use crate::core::chain::{ChainFailure, Skipped, Translation};
use crate::core::clock::TokioClock;
use crate::core::memory::cache_key;
use crate::core::store::{CachedAnswer, Finished, Source, Status, Store};
use crate::wire;

pub fn run(config: &Config, args: TranslateArgs) -> anyhow::Result<()> {
    let text = match args.text.as_deref() {
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
    if let Some(name) = &args.provider
        && !config.providers.iter().any(|p| &p.name == name)
    {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        return Err(UsageError(format!(
            "no provider named \"{name}\"; configured: {}",
            names.join(", ")
        ))
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Key files are checked first, so a file others can read is refused even for a cached line.
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let mut request = wire::request_for(config, text);
    request.glossary = config.memory.glossary.applicable(text, &[]);
    // History and cache are a convenience here: without the store the line is still translated.
    let store = match wire::open_store_for_command(config) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("translating without history and cache: {e:#}");
            None
        }
    };
    let key = config.memory.cache_enabled.then(|| {
        cache_key(
            text,
            &request.source_language,
            &request.target_language,
            request.options,
            &request.instructions,
            &request.glossary,
        )
    });
    let cached = match (&store, &key) {
        (Some(st), Some(k)) if !args.fresh && args.provider.is_none() => {
            st.cache_get(k).ok().flatten()
        }
        _ => None,
    };
    let row = store.as_ref().and_then(|st| {
        st.begin(text, Source::Cli, std::time::SystemTime::now())
            .ok()
    });
    let finish = |status: Status,
                  t: Option<&Translation>,
                  error: Option<String>,
                  attempts: &[crate::core::store::AttemptRecord]| {
        if let (Some(st), Some(id)) = (&store, row) {
            let f = Finished::of(status, t, error);
            if let Err(e) = st.finish(id, &f, attempts) {
                tracing::warn!("history not updated: {e}");
            }
        }
    };
    let result = if let Some(answer) = cached {
        let t = Translation::from(answer);
        finish(Status::Cached, Some(&t), None, &[]);
        eprintln!("from the cache ({})", t.provider);
        Ok(t)
    } else {
        let result = runtime.block_on(async {
            let chain = wire::build_chain(config, &credentials, Arc::new(TokioClock))?;
            Ok::<_, ConfigError>(chain.translate(&request, args.provider.as_deref()).await)
        })?;
        match &result {
            Ok(t) => {
                finish(Status::Translated, Some(t), None, &t.attempts);
                if let (Some(st), Some(k)) = (&store, &key) {
                    let answer = CachedAnswer {
                        options: t.options.clone(),
                        provider: t.provider.clone(),
                        model: t.model.clone(),
                    };
                    if let Err(e) = st.cache_put(k, &answer) {
                        tracing::warn!("cache not updated: {e}");
                    }
                }
            }
            Err(f) => {
                finish(
                    Status::Failed,
                    None,
                    Some(Skipped::reasons(&f.skipped)),
                    &f.attempts,
                );
            }
        }
        result
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(t) => {
            if args.json {
                writeln!(out, "{}", translation_json(text, &t))?;
            } else {
                write_plain(&mut out, &t)?;
                if !t.attempts.is_empty() {
                    eprintln!("{}", t.via_line());
                }
            }
            Ok(())
        }
        Err(failure) => {
            if args.json {
                writeln!(out, "{}", failure_json(text, &failure))?;
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
    for (i, option) in t.options.iter().enumerate() {
        if i == 0 {
            writeln!(out, "{option}")?;
        } else {
            writeln!(out, "  {}. {option}", i + 1)?;
        }
    }
    Ok(())
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

pub fn translation_json(text: &str, t: &Translation) -> serde_json::Value {
    json!({
        "text": text,
        "best": t.options.first(),
        "options": t.options,
        "provider": t.provider,
        "skipped": skipped_json(&t.skipped),
        "latency_ms": t.latency.as_millis() as u64,
    })
}

pub fn failure_json(text: &str, f: &ChainFailure) -> serde_json::Value {
    json!({
        "text": text,
        "best": null,
        "options": [],
        "provider": null,
        "skipped": skipped_json(&f.skipped),
        "latency_ms": f.latency.as_millis() as u64,
    })
}
