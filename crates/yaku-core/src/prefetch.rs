//! `yaku prefetch`: a game's script translated ahead of the reader, in batches, into the
//! same cache the daemon reads. The script's lines pass the same cleaning and gates as copied
//! ones and get the same cache keys, so a later copy of any of them is a hit. Every finished
//! batch is stored at once: a run that is stopped keeps its work, and the next run asks only
//! for what is still missing.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::batch::Plan;
use super::chain::{Chain, ChainFailure, SkipReason, Skipped};
use super::clock::Clock;
use super::gates::Gates;
use super::intake::{ClipEvent, Intake, intake};
use super::memory::{Glossary, cache_key};
use super::prompt::TranslationRequest;
use super::store::{AttemptRecord, CachedAnswer, Finished, Source, Status, Store, StoreError};

/// One line of a script: what the game shows, and who says it when the script names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLine {
    pub speaker: Option<String>,
    pub text: String,
}

/// A script file that is neither plain text nor a GalTransl-style JSON list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(pub String);

/// Reads a script: a JSON list of `{"name": ..., "message": ...}` (GalTransl) when the text
/// starts with `[`, else one line of the game per line, blank lines skipped.
pub fn parse_script(text: &str) -> Result<Vec<ScriptLine>, ScriptError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.trim_start().starts_with('[') {
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| ScriptLine {
                speaker: None,
                text: l.to_string(),
            })
            .collect());
    }
    let entries: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| ScriptError(format!("not a JSON list of {{\"name\", \"message\"}}: {e}")))?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let message = e
            .get("message")
            .and_then(|m| m.as_str())
            .ok_or_else(|| ScriptError(format!("entry {} has no \"message\" string", i + 1)))?;
        let speaker = e
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if !message.trim().is_empty() {
            out.push(ScriptLine {
                speaker,
                text: message.trim().to_string(),
            });
        }
    }
    Ok(out)
}

/// What is asked for every line: languages, options, instructions (the text, context and
/// glossary are filled in per line).
#[derive(Debug, Clone)]
pub struct Template {
    pub request: TranslationRequest,
    /// `[context] lines`: how many previous script lines go with each request.
    pub context_lines: usize,
    pub glossary: Glossary,
    /// `[clipboard] collapse_repeats`.
    pub collapse: bool,
}

/// A script line ready to send: its request (with the previous lines as context) and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub request: TranslationRequest,
    pub key: String,
}

/// The script's lines that passed the gates, in order, each once (a line repeated in the
/// script has one cache entry); and how many did not.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub items: Vec<Item>,
    /// Lines the gates refused (never sent).
    pub rejected: usize,
    /// Lines whose text appeared earlier in the script.
    pub repeats: usize,
}

/// Cleans and gates every line as a copied one is, and gives each its context and key.
pub fn prepare(lines: &[ScriptLine], gates: &mut Gates, t: &Template) -> Prepared {
    let mut out = Prepared::default();
    let mut seen = HashSet::new();
    let mut shown: Vec<String> = Vec::new();
    for line in lines {
        let event = ClipEvent::Text {
            text: line.text.clone(),
            concealed: None,
        };
        let text = match intake(event, gates, t.collapse) {
            Intake::Accepted(text) => text,
            // A script repeats lines ("……"); the repeat gate is for the clipboard only.
            Intake::Rejected {
                rejection: super::gates::Rejection::Repeat,
                ..
            } => collapse(&line.text, t.collapse),
            Intake::Rejected { .. } => {
                out.rejected += 1;
                continue;
            }
        };
        let context: Vec<String> = shown
            .iter()
            .skip(shown.len().saturating_sub(t.context_lines))
            .cloned()
            .collect();
        shown.push(match &line.speaker {
            Some(name) => format!("{name}: {text}"),
            None => text.clone(),
        });
        let own = t.glossary.applicable(&text, &[]);
        let r = &t.request;
        let key = cache_key(
            &text,
            &r.source_language,
            &r.target_language,
            r.options,
            &r.instructions,
            &own,
        );
        if !seen.insert(key.clone()) {
            out.repeats += 1;
            continue;
        }
        let request = TranslationRequest {
            glossary: t.glossary.applicable(&text, &context),
            text,
            context,
            ..r.clone()
        };
        out.items.push(Item { request, key });
    }
    out
}

fn collapse(text: &str, on: bool) -> String {
    if on {
        super::clean::collapse_repeats(text)
    } else {
        text.trim().to_string()
    }
}

/// How a run is bounded.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Lines per request (at least 1).
    pub batch: usize,
    /// At most this many requests (None: no limit).
    pub max_requests: Option<u64>,
    /// Give up on a batch after this many failed requests in a row.
    pub max_failures: u32,
    /// Stop rather than wait longer than this for a budget (a daily quota).
    pub max_wait: Duration,
}

/// After each batch: where the run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Lines to translate in this run.
    pub total: usize,
    pub translated: usize,
    pub failed: usize,
    /// Requests sent so far.
    pub requests: u64,
    /// Lines in the batch just finished.
    pub batch: usize,
}

/// Why a run ended before every line was translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// `--limit` requests were sent.
    Limit,
    /// Every provider's budget is spent for longer than `max_wait` (a daily quota).
    Budget { wait: Option<Duration> },
    /// The store failed: nothing more would be kept.
    Store(String),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Lines to translate at the start (not cached yet).
    pub todo: usize,
    /// Lines already in the cache, not asked again.
    pub cached: usize,
    pub translated: usize,
    pub failed: usize,
    pub requests: u64,
    /// Requests per provider, in first-use order.
    pub by_provider: Vec<(String, u64)>,
    /// Batches split because their reply did not match.
    pub splits: u64,
    /// Time spent waiting for budgets (rate limits, the provider's reset).
    pub waited: Duration,
    pub stopped: Option<Stopped>,
}

/// The lines of `items` not in the cache yet.
pub fn uncached<'a>(items: &'a [Item], store: &dyn Store) -> Result<Vec<&'a Item>, StoreError> {
    let mut out = Vec::new();
    for item in items {
        let usable = store
            .cache_get(&item.key)?
            .is_some_and(|a| a.options.iter().any(|o| !o.trim().is_empty()));
        if !usable {
            out.push(item);
        }
    }
    Ok(out)
}

/// Translates every uncached item, batch by batch, storing each finished batch at once.
pub async fn run(
    chain: &Chain,
    clock: &dyn Clock,
    store: &dyn Store,
    items: &[Item],
    only: Option<&str>,
    limits: RunLimits,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Summary {
    let mut s = Summary::default();
    let todo = match uncached(items, store) {
        Ok(t) => t,
        Err(e) => {
            s.stopped = Some(Stopped::Store(e.to_string()));
            return s;
        }
    };
    s.todo = todo.len();
    s.cached = items.len() - todo.len();
    let mut plan = Plan::new(todo.len(), limits.batch);
    let mut failures = 0u32;
    while let Some(range) = plan.next_batch() {
        if limits.max_requests.is_some_and(|m| s.requests >= m) {
            s.stopped = Some(Stopped::Limit);
            break;
        }
        let batch: Vec<&Item> = todo[range.clone()].to_vec();
        let outcome = ask(chain, &batch, only).await;
        s.requests += outcome.attempts.len() as u64;
        for a in &outcome.attempts {
            match s.by_provider.iter_mut().find(|(p, _)| *p == a.provider) {
                Some((_, n)) => *n += 1,
                None => s.by_provider.push((a.provider.clone(), 1)),
            }
        }
        if let Err(e) = keep(store, &batch, &outcome) {
            s.stopped = Some(Stopped::Store(e.to_string()));
            break;
        }
        match outcome.result {
            Outcome::Lines(lines) => {
                failures = 0;
                for (i, line) in lines.iter().enumerate() {
                    match line {
                        Some(_) => s.translated += 1,
                        // Refused by the checks inside a batch: asked on its own next.
                        None if range.len() > 1 => plan.alone(range.start + i),
                        None => s.failed += 1,
                    }
                }
            }
            Outcome::Mismatch(why) => {
                failures = 0;
                tracing::info!(lines = range.len(), %why, "batch reply did not match: splitting");
                s.splits += 1;
                if !plan.split(range.clone()) {
                    s.failed += 1;
                }
            }
            Outcome::Failed(f) => match budget_wait(&f.skipped) {
                Some(wait) if wait <= limits.max_wait => {
                    s.waited += wait;
                    tracing::info!(
                        wait_secs = wait.as_secs(),
                        "every provider is at its limit: waiting"
                    );
                    clock
                        .sleep_until(crate::clock::later(clock.now(), wait))
                        .await;
                    plan.again(range.clone());
                }
                Some(wait) if is_budget(&f.skipped) => {
                    s.stopped = Some(Stopped::Budget { wait: Some(wait) });
                    break;
                }
                _ => {
                    failures += 1;
                    if failures < limits.max_failures {
                        plan.again(range.clone());
                    } else {
                        failures = 0;
                        tracing::warn!(lines = range.len(), reasons = %Skipped::reasons(&f.skipped), "batch failed: its lines are left for the next run");
                        s.failed += range.len();
                    }
                }
            },
        }
        progress(Progress {
            total: s.todo,
            translated: s.translated,
            failed: s.failed,
            requests: s.requests,
            batch: range.len(),
        });
    }
    s
}

/// What one request for a batch gave.
struct Asked {
    result: Outcome,
    provider: String,
    model: String,
    latency_ms: u64,
    attempts: Vec<AttemptRecord>,
}

enum Outcome {
    /// Per line, its options, or None when its entry failed the checks.
    Lines(Vec<Option<Vec<String>>>),
    Mismatch(String),
    Failed(ChainFailure),
}

/// One line goes with the ordinary single-line contract; more as a batch.
async fn ask(chain: &Chain, batch: &[&Item], only: Option<&str>) -> Asked {
    if let [one] = batch {
        return match chain.translate(&one.request, only).await {
            Ok(t) => Asked {
                provider: t.provider,
                model: t.model,
                latency_ms: t.latency.as_millis() as u64,
                attempts: t.attempts,
                result: Outcome::Lines(vec![Some(t.options)]),
            },
            Err(f) => failed(f),
        };
    }
    let reqs: Vec<TranslationRequest> = batch.iter().map(|i| i.request.clone()).collect();
    match chain.translate_batch(&reqs, only).await {
        Ok(a) => Asked {
            result: match a.value {
                Ok(entries) => Outcome::Lines(entries.into_iter().map(Result::ok).collect()),
                Err(m) => Outcome::Mismatch(m.to_string()),
            },
            provider: a.provider,
            model: a.model,
            latency_ms: a.latency.as_millis() as u64,
            attempts: a.attempts,
        },
        Err(f) => failed(f),
    }
}

fn failed(f: ChainFailure) -> Asked {
    Asked {
        provider: String::new(),
        model: String::new(),
        latency_ms: f.latency.as_millis() as u64,
        attempts: f.attempts.clone(),
        result: Outcome::Failed(f),
    }
}

/// Stores what a request gave: a cache entry and a `translated` history row (source
/// `prefetch`) for each line, the request's attempts on the first row. A request that
/// translated nothing leaves one `failed` row for its first line, carrying its attempts, so
/// the statistics and the daily budget count every request sent.
fn keep(store: &dyn Store, batch: &[&Item], asked: &Asked) -> Result<(), StoreError> {
    let now = SystemTime::now();
    let mut attempts = asked.attempts.as_slice();
    if let Outcome::Lines(lines) = &asked.result {
        for (item, options) in batch.iter().zip(lines) {
            let Some(options) = options else { continue };
            let answer = CachedAnswer {
                options: options.clone(),
                provider: asked.provider.clone(),
                model: asked.model.clone(),
            };
            store.cache_put(&item.key, &answer)?;
            let id = store.begin(&item.request.text, Source::Prefetch, now)?;
            let finished = Finished {
                status: Status::Translated,
                provider: Some(asked.provider.clone()),
                model: Some(asked.model.clone()),
                options: options.clone(),
                latency_ms: Some(asked.latency_ms),
                error: None,
            };
            store.finish(id, &finished, attempts)?;
            attempts = &[];
        }
    }
    if !attempts.is_empty()
        && let Some(first) = batch.first()
    {
        let error = match &asked.result {
            Outcome::Failed(f) => Skipped::reasons(&f.skipped),
            Outcome::Mismatch(why) => {
                format!("{}: batch reply did not match ({why})", asked.provider)
            }
            Outcome::Lines(_) => format!("{}: the reply checks refused the line", asked.provider),
        };
        let id = store.begin(&first.request.text, Source::Prefetch, now)?;
        let finished = Finished {
            status: Status::Failed,
            provider: None,
            model: None,
            options: Vec::new(),
            latency_ms: Some(asked.latency_ms),
            error: Some(error),
        };
        store.finish(id, &finished, attempts)?;
    }
    Ok(())
}

/// How long until some provider has budget again, when every reason was a budget (a rate
/// limit, the configured limit, a breaker that waits out a 429).
fn budget_wait(skipped: &[Skipped]) -> Option<Duration> {
    if !is_budget(skipped) {
        return None;
    }
    skipped.iter().filter_map(|s| s.retry_after).min()
}

fn is_budget(skipped: &[Skipped]) -> bool {
    !skipped.is_empty()
        && skipped.iter().all(|s| {
            matches!(
                s.reason,
                SkipReason::RateLimited | SkipReason::NoCapacity | SkipReason::BreakerOpen
            ) && s.retry_after.is_some()
        })
}

/// Requests a run of `lines` lines in batches of `batch` takes when every reply matches.
pub fn requests_for(lines: usize, batch: usize) -> u64 {
    lines.div_ceil(batch.max(1)) as u64
}

#[cfg(test)]
#[path = "prefetch_tests.rs"]
mod tests;
