//! The chain: walks the providers in order for one line, under one deadline, asking each
//! provider's breaker and rate limit before sending, and retrying a transient failure at most
//! once per provider. It is the only layer that retries.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::batch::{BatchReply, parse_batch};
use super::breaker::{Admission, Breaker, BreakerConfig, OpenCause, State, Transition};
use super::checks::{Checked, ReplyChecks};
use super::clock::Clock;
use super::prompt::{Prompt, TranslationRequest, build_batch};
use super::provider::{FailureClass, Provider, ProviderFailure, QuotaScope};
use super::ratelimit::RateLimit;
use super::store::AttemptRecord;

/// The attempt outcome of a request dropped because another provider answered the line
/// first: not a failure, so neither the breaker nor the statistics count it as one.
pub const CANCELLED: &str = "cancelled";

/// Why a provider did not give this line its translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    RateLimited,
    Transient,
    Refused,
    Unauthorized,
    ModelUnavailable,
    BadRequest,
    NoKey,
    BreakerOpen,
    NoCapacity,
}

impl SkipReason {
    /// The stable name printed in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::RateLimited => "rate_limited",
            SkipReason::Transient => "transient",
            SkipReason::Refused => "refused",
            SkipReason::Unauthorized => "unauthorized",
            SkipReason::ModelUnavailable => "model_unavailable",
            SkipReason::BadRequest => "bad_request",
            SkipReason::NoKey => "no_key",
            SkipReason::BreakerOpen => "breaker_open",
            SkipReason::NoCapacity => "no_capacity",
        }
    }

    fn from_class(class: FailureClass) -> Self {
        match class {
            FailureClass::RateLimited => SkipReason::RateLimited,
            FailureClass::Transient => SkipReason::Transient,
            FailureClass::Refused => SkipReason::Refused,
            FailureClass::Unauthorized => SkipReason::Unauthorized,
            FailureClass::ModelUnavailable => SkipReason::ModelUnavailable,
            FailureClass::BadRequest => SkipReason::BadRequest,
        }
    }
}

/// One provider that did not answer this line, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub provider: String,
    pub reason: SkipReason,
    /// How long until the provider may be asked again, when known.
    pub retry_after: Option<Duration>,
    /// For a rate limit: whether it was the daily quota.
    pub daily: bool,
    /// What happened, for humans; never holds a key.
    pub detail: String,
    /// What the user can do about it.
    pub advice: String,
}

impl Skipped {
    /// A short phrase such as `rate limited for 37 s`.
    pub fn summary(&self) -> String {
        let wait = self.retry_after.map(human_duration);
        match (self.reason, wait) {
            (SkipReason::RateLimited, Some(w)) if self.daily => {
                format!("daily quota used up, resets in {w}")
            }
            (SkipReason::RateLimited, Some(w)) => format!("rate limited for {w}"),
            (SkipReason::RateLimited, None) => "rate limited".into(),
            (SkipReason::BreakerOpen, Some(w)) => {
                format!("paused after repeated failures, next try in {w}")
            }
            (SkipReason::BreakerOpen, None) => "paused after repeated failures".into(),
            (SkipReason::NoCapacity, Some(w)) => {
                format!("at its configured request limit, free in {w}")
            }
            (SkipReason::NoCapacity, None) => "at its configured request limit".into(),
            (SkipReason::Transient, _) => format!("unavailable ({})", self.detail),
            (SkipReason::Refused, _) => format!("gave no translation ({})", self.detail),
            (SkipReason::Unauthorized, _) => "key rejected".into(),
            (SkipReason::ModelUnavailable, _) => format!("model unavailable ({})", self.detail),
            (SkipReason::BadRequest, _) => format!("rejected the request ({})", self.detail),
            (SkipReason::NoKey, _) => "no API key".into(),
        }
    }

    /// `gemini: rate limited for 37 s`.
    pub fn line(&self) -> String {
        format!("{}: {}", self.provider, self.summary())
    }

    /// `gemini: rate limited for 37 s — wait, or add another provider to the chain`.
    pub fn described(&self) -> String {
        if self.advice.is_empty() {
            self.line()
        } else {
            format!("{} — {}", self.line(), self.advice)
        }
    }

    /// Each provider's reason, `; `-separated: what a failed line's history row says.
    pub fn reasons(skipped: &[Skipped]) -> String {
        skipped
            .iter()
            .map(Skipped::line)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `37 s`, `4 min`, `5 h 12 min`: rounded up, so a wait is never understated.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        0..=119 => format!("{secs} s"),
        120..=5999 => format!("{} min", secs.div_ceil(60)),
        _ => {
            let mins = secs.div_ceil(60);
            format!("{} h {} min", mins / 60, mins % 60)
        }
    }
}

/// A line translated.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The options, best first; never empty.
    pub options: Vec<String>,
    pub provider: String,
    pub model: String,
    /// Providers asked before the one that answered, and why they did not.
    pub skipped: Vec<Skipped>,
    pub latency: Duration,
    /// Every request sent for the line, in order (for the statistics).
    pub attempts: Vec<AttemptRecord>,
    /// The model's rendering of the line's speaker, when the line named one and the reply
    /// gave it (`{"speaker": ...}`); not cached, so a cached answer has none.
    pub speaker: Option<String>,
}

impl Translation {
    /// `via groq in 812 ms (gemini: rate limited for 37 s)`.
    pub fn via_line(&self) -> String {
        let mut line = format!("via {} in {} ms", self.provider, self.latency.as_millis());
        if !self.skipped.is_empty() {
            line.push_str(&format!(" ({})", Skipped::reasons(&self.skipped)));
        }
        line
    }
}

impl From<super::store::CachedAnswer> for Translation {
    /// A cached answer, shown as it was first given: no request, no wait.
    fn from(answer: super::store::CachedAnswer) -> Self {
        Translation {
            options: answer.options,
            provider: answer.provider,
            model: answer.model,
            skipped: Vec::new(),
            latency: Duration::ZERO,
            attempts: Vec::new(),
            speaker: None,
        }
    }
}

/// No provider could translate the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no provider could translate the line")]
pub struct ChainFailure {
    /// Each provider and its last reason, in chain order.
    pub skipped: Vec<Skipped>,
    pub latency: Duration,
    /// Every request sent for the line, in order (for the statistics).
    pub attempts: Vec<AttemptRecord>,
}

/// A provider as the chain holds it.
pub struct ChainEntry {
    pub name: String,
    /// None when the provider cannot be used at all (no key); then `unusable` says why.
    pub provider: Option<Arc<dyn Provider>>,
    pub unusable: Option<Skipped>,
    /// Shown when the provider's key is rejected ("run `yaku key set gemini`", "check GEMINI_API_KEY").
    pub key_advice: String,
    pub guard: Mutex<Guard>,
    /// Identifies the settings the entry was built from (a hash; never the key itself), so a
    /// reload can tell an unchanged provider from a changed one. None: never the same.
    pub settings_id: Option<u64>,
    /// `hedge_after_ms`: with no answer by then, the next provider is asked too (None: never).
    pub hedge_after: Option<Duration>,
}

/// The state that must change together: a provider's breaker and its request budget.
pub struct Guard {
    pub breaker: Breaker,
    pub limit: RateLimit,
}

impl ChainEntry {
    /// A usable provider with its limits.
    pub fn new(
        provider: Arc<dyn Provider>,
        breaker: BreakerConfig,
        limit: RateLimit,
        key_advice: String,
    ) -> Self {
        Self {
            name: provider.name().to_string(),
            provider: Some(provider),
            unusable: None,
            key_advice,
            guard: Mutex::new(Guard {
                breaker: Breaker::new(breaker),
                limit,
            }),
            settings_id: None,
            hedge_after: None,
        }
    }

    /// The entry with `settings_id` set (see the field).
    pub fn with_settings_id(mut self, id: u64) -> Self {
        self.settings_id = Some(id);
        self
    }

    /// The entry hedged after `after` (see the field); zero turns hedging off.
    pub fn with_hedge_after(mut self, after: Duration) -> Self {
        self.hedge_after = (!after.is_zero()).then_some(after);
        self
    }

    /// Takes `n` requests made earlier (today's, from the history) from the daily budget.
    pub fn spend_day(&self, n: u32) {
        self.lock().limit.spend_day(n);
    }

    /// A configured provider that cannot be used (its key is missing), so it is listed and skipped.
    pub fn unusable(name: &str, reason: Skipped, limit: RateLimit) -> Self {
        Self {
            name: name.to_string(),
            provider: None,
            unusable: Some(reason),
            key_advice: String::new(),
            guard: Mutex::new(Guard {
                breaker: Breaker::new(BreakerConfig::default()),
                limit,
            }),
            settings_id: None,
            hedge_after: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Guard> {
        // A panic elsewhere cannot leave the breaker half-updated: every update is one assignment.
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests left in the provider's daily budget, when it has one.
    pub fn day_remaining(&self) -> Option<u32> {
        self.lock().limit.day_remaining()
    }

    /// The breaker's current state, for status output and tests.
    pub fn breaker_state(&self) -> State {
        self.lock().breaker.state().clone()
    }
}

/// Chain-wide timing.
#[derive(Debug, Clone, Copy)]
pub struct ChainConfig {
    /// One deadline per line, across every attempt and provider.
    pub deadline: Duration,
    /// The base of the full-jitter backoff before the one retry of a transient failure.
    pub retry_base: Duration,
    /// `[translation] reply_checks`: false keeps only the reply contract checks.
    pub reply_checks: bool,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(20),
            retry_base: Duration::from_millis(500),
            reply_checks: true,
        }
    }
}

/// The ordered providers and the policy that walks them.
pub struct Chain {
    entries: Vec<ChainEntry>,
    clock: Arc<dyn Clock>,
    cfg: ChainConfig,
    rng: Mutex<StdRng>,
}

/// How a reply's text is read: what the walk returns, or why the provider failed.
type Parse<'p, T> = &'p (dyn Fn(&str) -> Result<T, ProviderFailure> + Sync);

/// What every provider is sent for one line (or batch), and how its reply is read.
struct Ask<'p, T> {
    prompt: Prompt,
    /// The request's estimated cost for a `tokens_per_minute` budget.
    tokens: u32,
    parse: Parse<'p, T>,
    /// Whether a late request may be hedged: a line's, not a prefetch batch's (a batch is
    /// slow by nature, so a line's `hedge_after` would double every batch's cost).
    hedge: bool,
}

/// A reply the chain accepted, from the provider that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered<T> {
    pub value: T,
    pub provider: String,
    pub model: String,
    pub skipped: Vec<Skipped>,
    pub latency: Duration,
    pub attempts: Vec<AttemptRecord>,
}

/// What one provider can still do for the line being translated.
#[derive(Debug, Clone)]
struct Attempt {
    sent: u32,
    /// Not before this instant (a retry backoff, a rate limit's next cell, a breaker's end).
    not_before: Option<Instant>,
    done: bool,
    last: Option<Skipped>,
}

/// Whether a provider may be sent this line now: its breaker and rate limit, asked together.
enum Clearance {
    Send {
        probe: bool,
    },
    Skip {
        skipped: Skipped,
        ready_at: Option<Instant>,
    },
}

/// What one request came to, and its row for the statistics.
struct Sent<T> {
    /// None: the deadline cut it off.
    result: Option<Result<T, ProviderFailure>>,
    record: AttemptRecord,
}

/// A request in flight for the line: whose, since when, and its future.
struct Racer<'a, T> {
    slot: usize,
    sent_at: Instant,
    call: super::clock::BoxFuture<'a, Sent<T>>,
}

/// What the race between a request, its hedge and the hedge timer came to next.
enum Event<T> {
    First(Sent<T>),
    Hedge(Sent<T>),
    HedgeTime,
}

/// Resolves with the racer's outcome; never, when there is none.
async fn run<T>(racer: &mut Option<Racer<'_, T>>) -> Sent<T> {
    match racer {
        Some(r) => (&mut r.call).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the timer does; never, when there is none.
async fn ring(timer: &mut Option<super::clock::BoxFuture<'_, ()>>) {
    match timer {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>, clock: Arc<dyn Clock>, cfg: ChainConfig) -> Self {
        Self::with_rng(entries, clock, cfg, StdRng::from_os_rng())
    }

    /// A chain whose jitter is reproducible.
    pub fn with_seed(
        entries: Vec<ChainEntry>,
        clock: Arc<dyn Clock>,
        cfg: ChainConfig,
        seed: u64,
    ) -> Self {
        Self::with_rng(entries, clock, cfg, StdRng::seed_from_u64(seed))
    }

    fn with_rng(
        entries: Vec<ChainEntry>,
        clock: Arc<dyn Clock>,
        cfg: ChainConfig,
        rng: StdRng,
    ) -> Self {
        Self {
            entries,
            clock,
            cfg,
            rng: Mutex::new(rng),
        }
    }

    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// Takes over, for each usable entry whose name and settings are unchanged in `old`, that
    /// entry's breaker and rate-limit state: a reload must not close an open breaker or give
    /// back a spent budget. Returns the names kept; every other entry starts fresh.
    pub fn keep_state_of(&self, old: &Chain) -> Vec<String> {
        let mut kept = Vec::new();
        for new in &self.entries {
            let same = old.entries.iter().find(|o| {
                o.name == new.name
                    && o.provider.is_some()
                    && new.provider.is_some()
                    && new.settings_id.is_some()
                    && o.settings_id == new.settings_id
            });
            if let Some(o) = same {
                std::mem::swap(&mut *new.lock(), &mut *o.lock());
                kept.push(new.name.clone());
            }
        }
        kept
    }

    pub fn entry(&self, name: &str) -> Option<&ChainEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Translates one line, using only the provider named `only` when given.
    pub async fn translate(
        &self,
        req: &TranslationRequest,
        only: Option<&str>,
    ) -> Result<Translation, ChainFailure> {
        let checks = ReplyChecks::new(req, self.cfg.reply_checks);
        let prompt = Prompt::build(req);
        let max = usize::from(prompt.options);
        // The line names a speaker: a reply may give its rendering.
        let speaks = crate::speaker::split(&req.text).speaker.is_some();
        let parse = move |text: &str| {
            let checked = checks
                .options(text, max)
                .map_err(|e| ProviderFailure::new(FailureClass::Refused, e.to_string()))?;
            let speaker = speaks.then(|| crate::reply::parse_speaker(text)).flatten();
            Ok((checked, speaker))
        };
        let a: Answered<(Checked, Option<String>)> = self.walk(prompt, &parse, only, true).await?;
        let (checked, speaker) = a.value;
        if !checked.dropped.is_empty() {
            let dropped: Vec<&str> = checked.dropped.iter().map(|p| p.as_str()).collect();
            tracing::info!(provider = %a.provider, ?dropped, "reply checks dropped options");
        }
        Ok(Translation {
            speaker,
            options: checked.options,
            provider: a.provider,
            model: a.model,
            skipped: a.skipped,
            latency: a.latency,
            attempts: a.attempts,
        })
    }

    /// Translates consecutive lines in one request (`yaku prefetch`), using only `only` when
    /// given. A reply in the wrong shape is an answer (the provider is up) that the caller
    /// must not use: it comes back as a [`super::batch::Mismatch`], never paired by guesswork.
    pub async fn translate_batch(
        &self,
        reqs: &[TranslationRequest],
        only: Option<&str>,
    ) -> Result<Answered<BatchReply>, ChainFailure> {
        let Some(first) = reqs.first() else {
            return Err(ChainFailure {
                skipped: Vec::new(),
                latency: Duration::ZERO,
                attempts: Vec::new(),
            });
        };
        let checks = ReplyChecks::new(first, self.cfg.reply_checks);
        let prompt = build_batch(reqs);
        let max = usize::from(prompt.options);
        let n = reqs.len();
        let parse = move |text: &str| Ok(parse_batch(text, n, &checks, max));
        self.walk(prompt, &parse, only, false).await
    }

    /// The walk over the providers for one prompt: the first reply `parse` accepts wins.
    async fn walk<T: Send>(
        &self,
        prompt: Prompt,
        parse: Parse<'_, T>,
        only: Option<&str>,
        hedge: bool,
    ) -> Result<Answered<T>, ChainFailure> {
        let ask = Ask {
            hedge,
            tokens: prompt.estimated_tokens(),
            prompt,
            parse,
        };
        let start = self.clock.now();
        let deadline = crate::clock::later(start, self.cfg.deadline);
        let used: Vec<usize> = (0..self.entries.len())
            .filter(|&i| only.is_none_or(|n| self.entries[i].name == n))
            .collect();
        let mut attempts: Vec<Attempt> = used
            .iter()
            .map(|_| Attempt {
                sent: 0,
                not_before: None,
                done: false,
                last: None,
            })
            .collect();
        let mut sent: Vec<AttemptRecord> = Vec::new();

        loop {
            for (slot, &i) in used.iter().enumerate() {
                let now = self.clock.now();
                if now >= deadline {
                    break;
                }
                let a = &mut attempts[slot];
                if a.done || a.not_before.is_some_and(|t| now < t) {
                    continue;
                }
                let entry = &self.entries[i];
                let probe = match self.clearance(entry, now, ask.tokens) {
                    Clearance::Skip { skipped, ready_at } => {
                        a.done = ready_at.is_none_or(|t| t >= deadline);
                        a.not_before = ready_at;
                        a.last = Some(skipped);
                        continue;
                    }
                    Clearance::Send { probe } => probe,
                };
                let Some(provider) = entry.provider.as_ref() else {
                    continue;
                };
                a.sent += 1;
                tracing::debug!(provider = %entry.name, attempt = a.sent, probe, "sending");
                let call = self.call(entry, provider.as_ref(), &ask, probe, deadline);
                let mut first = Some(Racer {
                    slot,
                    sent_at: now,
                    call: Box::pin(call),
                });
                let mut hedge: Option<Racer<'_, T>> = None;
                // A hedge that could only start at or after the deadline is never sent.
                let mut timer = entry
                    .hedge_after
                    .filter(|_| ask.hedge)
                    .map(|d| crate::clock::later(now, d))
                    .filter(|&at| at < deadline)
                    .map(|at| self.clock.deadline(at));
                let mut won = None;
                // The race's rows, in the order sent (first, hedge): the first row of a line
                // names the provider asked first, whichever answered first.
                let mut rows: [Option<AttemptRecord>; 2] = [None, None];
                while won.is_none() && (first.is_some() || hedge.is_some()) {
                    let event = tokio::select! {
                        biased;
                        s = run(&mut first) => Event::First(s),
                        s = run(&mut hedge) => Event::Hedge(s),
                        () = ring(&mut timer) => Event::HedgeTime,
                    };
                    let (racer, done) = match event {
                        Event::HedgeTime => {
                            timer = None;
                            if let Some(j) = self.hedge_to(slot, &used, &attempts, ask.tokens) {
                                let e = &self.entries[used[j]];
                                if let Some(p) = e.provider.as_ref() {
                                    attempts[j].sent += 1;
                                    tracing::info!(provider = %entry.name, hedge = %e.name, "no answer yet: asking the next provider too");
                                    hedge = Some(Racer {
                                        slot: j,
                                        sent_at: self.clock.now(),
                                        call: Box::pin(self.call(
                                            e,
                                            p.as_ref(),
                                            &ask,
                                            false,
                                            deadline,
                                        )),
                                    });
                                }
                            }
                            continue;
                        }
                        Event::First(s) => (first.take().map(|r| (0, r.slot)), s),
                        Event::Hedge(s) => (hedge.take().map(|r| (1, r.slot)), s),
                    };
                    // Once a request is over, no hedge begins: a failure is handled by the walk.
                    timer = None;
                    let Some((row, k)) = racer else { continue };
                    rows[row] = Some(done.record);
                    let e = &self.entries[used[k]];
                    won = self
                        .settle(e, &mut attempts[k], done.result, deadline)
                        .map(|value| (k, value));
                }
                let Some((k, value)) = won else {
                    sent.extend(rows.into_iter().flatten());
                    continue;
                };
                // The request still in flight lost: dropping it cancels it (and releases a probe).
                for (row, loser) in [(0, first.take()), (1, hedge.take())] {
                    let Some(loser) = loser else { continue };
                    let (lost_slot, sent_at) = (loser.slot, loser.sent_at);
                    drop(loser);
                    let e = &self.entries[used[lost_slot]];
                    tracing::debug!(provider = %e.name, "cancelled: another provider answered first");
                    rows[row] = Some(AttemptRecord {
                        provider: e.name.clone(),
                        outcome: CANCELLED,
                        latency_ms: self
                            .clock
                            .now()
                            .saturating_duration_since(sent_at)
                            .as_millis() as u64,
                        opened_breaker: false,
                    });
                }
                sent.extend(rows.into_iter().flatten());
                let e = &self.entries[used[k]];
                let now = self.clock.now();
                return Ok(Answered {
                    value,
                    provider: e.name.clone(),
                    model: e.provider.as_ref().map_or("", |p| p.model()).to_string(),
                    skipped: skipped_before(&attempts, k),
                    latency: now.saturating_duration_since(start),
                    attempts: sent,
                });
            }

            let now = self.clock.now();
            let next = attempts
                .iter()
                .filter(|a| !a.done)
                .filter_map(|a| a.not_before)
                .min();
            match next {
                Some(t) if t < deadline && now < deadline => {
                    if t > now {
                        self.clock.sleep_until(t).await;
                    }
                }
                _ => {
                    let skipped = attempts.iter().filter_map(|a| a.last.clone()).collect();
                    return Err(ChainFailure {
                        skipped,
                        latency: now.saturating_duration_since(start),
                        attempts: sent,
                    });
                }
            }
        }
    }

    /// Applies one request's outcome to what its provider can still do for the line; the
    /// value when it answered.
    fn settle<T>(
        &self,
        entry: &ChainEntry,
        a: &mut Attempt,
        result: Option<Result<T, ProviderFailure>>,
        deadline: Instant,
    ) -> Option<T> {
        let now = self.clock.now();
        match result {
            Some(Ok(value)) => return Some(value),
            Some(Err(failure)) => {
                a.last = Some(self.describe_failure(entry, &failure));
                if failure.class == FailureClass::Transient && a.sent < 2 {
                    let at = crate::clock::later(now, self.backoff());
                    a.not_before = Some(at);
                    a.done = at >= deadline;
                } else {
                    a.done = true;
                }
            }
            // Cut off by the deadline: nothing was learnt about the provider.
            None => {
                a.done = true;
                a.last = Some(Skipped {
                    provider: entry.name.clone(),
                    reason: SkipReason::Transient,
                    retry_after: None,
                    daily: false,
                    detail: "no answer before the line's deadline".into(),
                    advice:
                        "raise `deadline_secs` or the provider's `timeout_secs` if this repeats"
                            .into(),
                });
            }
        }
        None
    }

    /// The slot to hedge the request of slot `from` to, its request budget taken: the next
    /// usable provider of the line, if it can take a request now without a probe and without
    /// its budget's last request (see [`RateLimit::try_acquire_spare`]).
    fn hedge_to(
        &self,
        from: usize,
        used: &[usize],
        attempts: &[Attempt],
        tokens: u32,
    ) -> Option<usize> {
        let now = self.clock.now();
        let j = (from + 1..used.len()).find(|&j| {
            let e = &self.entries[used[j]];
            e.provider.is_some() && e.unusable.is_none() && !attempts[j].done
        })?;
        if attempts[j].not_before.is_some_and(|t| now < t) {
            return None;
        }
        let mut g = self.entries[used[j]].lock();
        // Closed only: a recovering provider's single probe is not spent on a hedge.
        if g.breaker.peek(now) != (Admission::Send { probe: false }) {
            return None;
        }
        let sent = g.limit.try_acquire_spare(tokens)
            && matches!(g.breaker.admit(now), Admission::Send { probe: false });
        sent.then_some(j)
    }

    /// Asks the breaker and the rate limit together, so that neither changes unless both allow.
    fn clearance(&self, entry: &ChainEntry, now: Instant, tokens: u32) -> Clearance {
        if let Some(reason) = &entry.unusable {
            return Clearance::Skip {
                skipped: reason.clone(),
                ready_at: None,
            };
        }
        let mut g = entry.lock();
        let skip =
            |reason, until: Option<Instant>, detail: String, advice: String| Clearance::Skip {
                skipped: Skipped {
                    provider: entry.name.clone(),
                    reason,
                    retry_after: until.map(|u| u.saturating_duration_since(now)),
                    daily: false,
                    detail,
                    advice,
                },
                ready_at: until,
            };
        match g.breaker.peek(now) {
            Admission::Send { .. } => {}
            Admission::Open {
                until,
                cause: OpenCause::RateLimited,
            } => {
                return skip(
                    SkipReason::RateLimited,
                    Some(until),
                    "waiting out the provider's rate limit".into(),
                    "wait, or add another provider to the chain".into(),
                );
            }
            Admission::Open {
                until,
                cause: OpenCause::Failures,
            } => {
                return skip(
                    SkipReason::BreakerOpen,
                    Some(until),
                    "paused after repeated failures".into(),
                    "it is retried automatically; check the provider's status page if this lasts"
                        .into(),
                );
            }
            Admission::ProbeInFlight => {
                return skip(
                    SkipReason::BreakerOpen,
                    None,
                    "another request is probing the provider".into(),
                    "it is retried automatically".into(),
                );
            }
            Admission::Disabled { class, detail } => {
                let reason = SkipReason::from_class(class);
                return Clearance::Skip {
                    skipped: Skipped {
                        provider: entry.name.clone(),
                        reason,
                        retry_after: None,
                        daily: false,
                        advice: self.advice(entry, reason),
                        detail,
                    },
                    ready_at: None,
                };
            }
        }
        if let Err(free_at) = g.limit.try_acquire_cost(tokens) {
            return skip(
                SkipReason::NoCapacity,
                Some(free_at),
                "at its configured request limit".into(),
                "raise `requests_per_minute` / `requests_per_day` only if your plan allows more"
                    .into(),
            );
        }
        match g.breaker.admit(now) {
            Admission::Send { probe } => Clearance::Send { probe },
            // peek said Send under the same lock, so admit cannot disagree; stay safe anyway.
            _ => Clearance::Skip {
                skipped: Skipped {
                    provider: entry.name.clone(),
                    reason: SkipReason::BreakerOpen,
                    retry_after: None,
                    daily: false,
                    detail: "breaker state changed".into(),
                    advice: String::new(),
                },
                ready_at: None,
            },
        }
    }

    /// Sends one request and records its outcome in the breaker; the result is `None` when
    /// the deadline cut it off.
    async fn call<'a, T>(
        &'a self,
        entry: &'a ChainEntry,
        provider: &'a dyn Provider,
        ask: &'a Ask<'a, T>,
        probe: bool,
        deadline: Instant,
    ) -> Sent<T> {
        let prompt = &ask.prompt;
        let sent_at = self.clock.now();
        let record = |outcome: &'static str, opened_breaker: bool, at: Instant| AttemptRecord {
            provider: entry.name.clone(),
            outcome,
            latency_ms: at.saturating_duration_since(sent_at).as_millis() as u64,
            opened_breaker,
        };
        let mut pending = PendingCall {
            entry,
            clock: self.clock.as_ref(),
            probe,
            armed: true,
        };
        // The deadline is in the Clock's time, like every other instant here.
        let reply = tokio::select! {
            biased;
            reply = provider.complete_reply(prompt) => reply,
            () = self.clock.deadline(deadline) => {
                return Sent { result: None, record: record("transient", false, self.clock.now()) };
            }
        };
        // A reply that fails the checks is a refusal: the next provider may do better, and the
        // breaker counts it as an answer (the provider is up).
        let mut hold = None;
        let result = reply.and_then(|r| {
            hold = r.budget.hold();
            (ask.parse)(&r.text)
        });
        let jitter = self.jitter();
        pending.armed = false;
        let now = self.clock.now();
        if let Some(h) = hold {
            // The provider said its budget is spent: asking before its reset would earn a 429.
            tracing::info!(provider = %entry.name, for_secs = h.as_secs(), "provider reports its budget used up: holding off");
            entry.lock().limit.hold_until(crate::clock::later(now, h));
        }
        let transition =
            entry
                .lock()
                .breaker
                .record(now, probe, result.as_ref().map(|_| ()), jitter);
        match &result {
            Ok(_) => tracing::debug!(provider = %entry.name, "answered"),
            Err(f) => {
                tracing::info!(provider = %entry.name, class = %f.class, detail = %f.detail, "provider failed")
            }
        }
        let opened = matches!(transition, Some(Transition::Opened { .. }));
        let record = record(
            result.as_ref().map_or_else(|f| f.class.as_str(), |_| "ok"),
            opened,
            now,
        );
        if let Some(t) = transition {
            self.log_transition(entry, t, result.as_ref().err());
        }
        Sent {
            result: Some(result),
            record,
        }
    }

    fn log_transition(&self, entry: &ChainEntry, t: Transition, failure: Option<&ProviderFailure>) {
        let now = self.clock.now();
        match t {
            Transition::Opened { until, cause } => tracing::warn!(
                provider = %entry.name,
                ?cause,
                for_secs = until.saturating_duration_since(now).as_secs(),
                "breaker opened: no requests until it may be probed"
            ),
            Transition::Closed => {
                tracing::info!(provider = %entry.name, "breaker closed: the provider answers again")
            }
            Transition::Disabled { class } => {
                let reason = SkipReason::from_class(class);
                tracing::error!(
                    provider = %entry.name,
                    reason = reason.as_str(),
                    detail = failure.map_or("", |f| f.detail.as_str()),
                    "provider disabled until the config changes: {}",
                    self.advice(entry, reason)
                );
            }
        }
    }

    fn describe_failure(&self, entry: &ChainEntry, f: &ProviderFailure) -> Skipped {
        let reason = SkipReason::from_class(f.class);
        Skipped {
            provider: entry.name.clone(),
            reason,
            retry_after: f.retry_after,
            daily: f.scope == QuotaScope::Daily,
            detail: f.detail.clone(),
            advice: self.advice(entry, reason),
        }
    }

    fn advice(&self, entry: &ChainEntry, reason: SkipReason) -> String {
        match reason {
            SkipReason::Unauthorized => entry.key_advice.clone(),
            SkipReason::ModelUnavailable => {
                format!(
                    "set `model` of provider \"{}\" in the config to a model the API offers",
                    entry.name
                )
            }
            SkipReason::RateLimited => "wait, or add another provider to the chain".into(),
            SkipReason::Transient => {
                "the provider is having trouble; it is retried automatically".into()
            }
            SkipReason::Refused => {
                "the provider would not translate this line; another provider may".into()
            }
            SkipReason::BadRequest => format!(
                "check provider \"{}\"'s `extra` and `model` settings",
                entry.name
            ),
            SkipReason::NoKey | SkipReason::BreakerOpen | SkipReason::NoCapacity => String::new(),
        }
    }

    /// Full jitter: uniform in [0, retry_base * 2].
    fn backoff(&self) -> Duration {
        let max = self.cfg.retry_base.as_secs_f64() * 2.0;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_secs_f64(rng.random_range(0.0..=max))
    }

    fn jitter(&self) -> f64 {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random_range(-0.2..=0.2)
    }
}

/// Every other provider that was asked, or passed over, for this line.
fn skipped_before(attempts: &[Attempt], winner: usize) -> Vec<Skipped> {
    attempts
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != winner)
        .filter_map(|(_, a)| a.last.clone())
        .collect()
}

/// Releases a half-open probe whose request was dropped before it had an outcome, so the
/// breaker does not stay half-open for ever.
struct PendingCall<'a> {
    entry: &'a ChainEntry,
    clock: &'a dyn Clock,
    probe: bool,
    armed: bool,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if self.armed && self.probe {
            self.entry.lock().breaker.abandon_probe(self.clock.now());
        }
    }
}

/// Look-ahead's one spare try (`Chain::spare_batch`).
#[path = "chain_spare.rs"]
mod spare;

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
