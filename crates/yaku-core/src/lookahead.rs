//! Look-ahead while reading (`[lookahead]`): where the reader is in a game's script, and which
//! of the next lines to translate in the background, as one batch, before they are copied.
//!
//! Pure policy: the daemon says what was copied and what the cache holds; this module says the
//! script position, the batch to send, and whether a provider may spend a request on it. A
//! look-ahead request is the lowest priority there is: the chain sends it only to a provider
//! with a free cell and a closed breaker (no probe, no wait, no retry, see
//! `Chain::spare_batch`), and [`Allowance`] keeps it within `daily_share` of each daily budget
//! and off the last request of a day.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::calendar::DailyReset;
use super::chain::{Answered, ChainFailure, Skipped};
use super::gates::{Gates, Rejection};
use super::intake::{ClipEvent, Intake, intake};
use super::prefetch::ScriptLine;
use super::store::{AttemptRecord, CachedAnswer, Finished, Source, Status, Store, StoreError};

/// A script as the reader will copy it: each line cleaned as a copied line is, in order,
/// repeats kept (the position needs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// What `yaku status` calls it (the file's path as configured).
    pub name: String,
    pub lines: Vec<ScriptLine>,
}

impl Script {
    /// Cleans every line through `gates` as a copied line would be; lines the gates refuse
    /// are left out (a copy of one is refused too, so it can never be a position).
    pub fn new(name: &str, lines: &[ScriptLine], gates: &mut Gates, collapse: bool) -> Script {
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            let event = ClipEvent::Text {
                text: line.text.clone(),
                concealed: None,
            };
            let text = match intake(event, gates, collapse) {
                Intake::Accepted(text) => text,
                // A script repeats lines ("……"); the repeat gate is for the clipboard only.
                Intake::Rejected {
                    rejection: Rejection::Repeat,
                    ..
                } if collapse => super::clean::collapse_repeats(&line.text),
                Intake::Rejected {
                    rejection: Rejection::Repeat,
                    ..
                } => line.text.trim().to_string(),
                Intake::Rejected { .. } => continue,
            };
            out.push(ScriptLine {
                speaker: line.speaker.clone(),
                text,
            });
        }
        Script {
            name: name.to_string(),
            lines: out,
        }
    }

    /// Where a copied (cleaned) line is: the first occurrence after `last` (the previous
    /// match), else the first in the script. None: not a line of the script.
    pub fn locate(&self, text: &str, last: Option<usize>) -> Option<usize> {
        let at = |i: &usize| self.lines[*i].text == text;
        let after = last.map_or(0, |l| l + 1);
        (after..self.lines.len())
            .find(at)
            .or_else(|| (0..after.min(self.lines.len())).find(at))
    }

    /// The line as context sees it: `name: text` when the script names the speaker.
    pub fn shown(&self, i: usize) -> Option<String> {
        self.lines.get(i).map(|l| match &l.speaker {
            Some(name) => format!("{name}: {}", l.text),
            None => l.text.clone(),
        })
    }
}

/// One provider's daily budget as look-ahead sees it: the look-ahead requests already made in
/// its current budget day (read from the history at start and reload, as the daemon seeds its
/// budgets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyShare {
    pub provider: String,
    /// `requests_per_day` (0: none, and no share to keep).
    pub per_day: u32,
    pub reset: DailyReset,
    /// Look-ahead requests of the budget day that holds `day`.
    pub spent: u32,
    pub day: SystemTime,
}

/// `[lookahead]` as the daemon uses it.
#[derive(Debug, Clone)]
pub struct LookaheadSettings {
    pub script: Arc<Script>,
    /// `lines`: how many lines ahead are kept ready (and how many one batch asks for).
    pub lines: usize,
    /// `daily_share`: the most of any provider's daily budget look-ahead may use.
    pub daily_share: f64,
    pub shares: Vec<DailyShare>,
}

/// The script position and what look-ahead knows, for `yaku status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookaheadStatus {
    pub script: String,
    /// The matched line, 0-based in the script's (cleaned) lines; None before the first match.
    pub position: Option<usize>,
    /// Lines in the script.
    pub lines: usize,
    /// `[lookahead] lines`.
    pub ahead: usize,
    /// Of the `ahead` lines after the position, those in the cache.
    pub ready_ahead: usize,
    /// A batch is being translated now.
    pub in_flight: bool,
}

/// How far past the window a batch may look for lines that are not ready yet: a script that
/// is mostly prefetched is not scanned to its end on every copy.
const SCAN: usize = 4;

/// The look-ahead state machine: position, lines known to be ready, the batch in flight and
/// the requests spent of each day's share.
#[derive(Debug, Clone)]
pub struct Lookahead {
    settings: LookaheadSettings,
    position: Option<usize>,
    /// Texts known to be cached (a repeated line is ready at every occurrence).
    ready: HashSet<String>,
    /// The script lines of the batch in flight.
    in_flight: Option<Vec<usize>>,
    /// Set by each copy of a script line: worth planning again. A batch's end does not set
    /// it, so a batch that failed (or found no provider to spare) is not sent again until the
    /// reader copies another line: look-ahead never retries.
    stale: bool,
}

impl Lookahead {
    pub fn new(settings: LookaheadSettings) -> Self {
        Self {
            settings,
            position: None,
            ready: HashSet::new(),
            in_flight: None,
            stale: false,
        }
    }

    /// The same look-ahead under new settings (a reload): the position is kept when the script
    /// is the same, and what is known to be ready too.
    pub fn reconfigured(self, settings: LookaheadSettings) -> Self {
        let same = self.settings.script == settings.script;
        Self {
            position: self.position.filter(|_| same),
            ready: if same { self.ready } else { HashSet::new() },
            in_flight: self.in_flight,
            stale: self.stale,
            settings,
        }
    }

    pub fn script(&self) -> &Script {
        &self.settings.script
    }

    /// A line was copied (cleaned text); `cached` when it was answered from the cache. Returns
    /// the new position when it is a line of the script.
    pub fn copied(&mut self, text: &str, cached: bool) -> Option<usize> {
        if cached {
            self.ready.insert(text.to_string());
        }
        let at = self.settings.script.locate(text, self.position)?;
        self.position = Some(at);
        self.stale = true;
        Some(at)
    }

    /// A line is in the cache now (translated live, or by a batch).
    pub fn mark_ready(&mut self, text: &str) {
        self.ready.insert(text.to_string());
    }

    /// The batch to send now, if any: when one of the `lines` lines after the position is not
    /// ready, the next `lines` lines that are not (each text once, at most `SCAN` windows
    /// ahead). `cached` asks the cache about a text; what it says is remembered. Nothing while
    /// a batch is in flight, and nothing more until the next copy.
    pub fn plan(&mut self, cached: &mut dyn FnMut(&str) -> bool) -> Option<Vec<usize>> {
        if self.in_flight.is_some() || !self.stale {
            return None;
        }
        self.stale = false;
        let pos = self.position?;
        let n = self.settings.lines;
        let script = self.settings.script.clone();
        let len = script.lines.len();
        let mut is_ready = |i: usize, ready: &mut HashSet<String>| {
            let text = &script.lines[i].text;
            if ready.contains(text) {
                return true;
            }
            let hit = cached(text);
            if hit {
                ready.insert(text.clone());
            }
            hit
        };
        let window = (pos + 1)..(pos + 1 + n).min(len);
        if window.clone().all(|i| is_ready(i, &mut self.ready)) {
            return None;
        }
        let mut batch: Vec<usize> = Vec::new();
        let mut texts: HashSet<&str> = HashSet::new();
        for i in (pos + 1)..(pos + 1 + n * SCAN).min(len) {
            if batch.len() == n {
                break;
            }
            if !is_ready(i, &mut self.ready) && texts.insert(&script.lines[i].text) {
                batch.push(i);
            }
        }
        if batch.is_empty() {
            return None;
        }
        self.in_flight = Some(batch.clone());
        Some(batch)
    }

    /// The batch in flight ended: `translated` of its lines are cached now.
    pub fn done(&mut self, translated: &[usize]) {
        for &i in translated {
            if let Some(l) = self.settings.script.lines.get(i) {
                self.ready.insert(l.text.clone());
            }
        }
        // A copy during the batch has set `stale`: the next plan starts from its position.
        self.in_flight = None;
    }

    /// What look-ahead may spend now (`now`: the wall clock, for the budget days).
    pub fn allowance(&mut self, now: SystemTime) -> Allowance {
        let share = self.settings.daily_share;
        let left = self
            .settings
            .shares
            .iter_mut()
            .filter(|s| s.per_day > 0)
            .map(|s| {
                let day = s.reset.day_start(now);
                if day != s.day {
                    s.day = day;
                    s.spent = 0;
                }
                (s.provider.clone(), share_left(s.per_day, share, s.spent))
            })
            .collect();
        Allowance { left }
    }

    /// Look-ahead requests were made (whatever their outcome): they count against the share.
    pub fn spent(&mut self, provider: &str, n: u32) {
        if let Some(s) = self
            .settings
            .shares
            .iter_mut()
            .find(|s| s.provider == provider)
        {
            s.spent = s.spent.saturating_add(n);
        }
    }

    pub fn status(&self) -> LookaheadStatus {
        let script = &self.settings.script;
        let ready_ahead = self.position.map_or(0, |pos| {
            script
                .lines
                .iter()
                .skip(pos + 1)
                .take(self.settings.lines)
                .filter(|l| self.ready.contains(&l.text))
                .count()
        });
        LookaheadStatus {
            script: script.name.clone(),
            position: self.position,
            lines: script.lines.len(),
            ahead: self.settings.lines,
            ready_ahead,
            in_flight: self.in_flight.is_some(),
        }
    }
}

/// Requests of the share still free: `floor(per_day × share) − spent`.
fn share_left(per_day: u32, share: f64, spent: u32) -> u32 {
    let cap = (f64::from(per_day) * share.clamp(0.0, 1.0)).floor() as u32;
    cap.saturating_sub(spent)
}

/// What look-ahead may spend of each provider's daily budget, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Per provider with a daily budget: requests of its look-ahead share still free.
    left: HashMap<String, u32>,
}

impl Allowance {
    /// Whether look-ahead may send `provider` a request now, given the requests left in its
    /// daily budget (None: no daily cap). Never its share's end, never the day's last request
    /// (a copied line may need it). The breaker and the minute's cell are the chain's to ask.
    pub fn allows(&self, provider: &str, day_remaining: Option<u32>) -> bool {
        match (self.left.get(provider), day_remaining) {
            (Some(&left), Some(remaining)) => left > 0 && remaining >= 2,
            (Some(&left), None) => left > 0,
            (None, Some(remaining)) => remaining >= 2,
            (None, None) => true,
        }
    }
}

/// One script line of a batch, ready to send and to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AheadItem {
    /// Its place in the script.
    pub index: usize,
    pub request: super::prompt::TranslationRequest,
    pub key: String,
    pub game: Option<String>,
}

/// Stores what a look-ahead request gave: a cache entry and a `translated` history row
/// (source `lookahead`) per line, the request's attempts on the first row; a request that
/// translated nothing leaves one `failed` row carrying its attempts, so the statistics and the
/// daily budgets count every request. Returns the script indices now cached.
pub fn keep(
    store: &dyn Store,
    items: &[AheadItem],
    reply: &Result<Answered<super::batch::BatchReply>, ChainFailure>,
) -> Result<Vec<usize>, StoreError> {
    let now = SystemTime::now();
    let mut done = Vec::new();
    let (mut attempts, latency_ms): (&[AttemptRecord], u64) = match reply {
        Ok(a) => (&a.attempts, a.latency.as_millis() as u64),
        Err(f) => (&f.attempts, f.latency.as_millis() as u64),
    };
    if let Ok(Answered {
        value: Ok(entries),
        provider,
        model,
        ..
    }) = reply
    {
        for (item, entry) in items.iter().zip(entries) {
            let Ok(options) = entry else { continue };
            let answer = CachedAnswer {
                options: options.clone(),
                provider: provider.clone(),
                model: model.clone(),
            };
            store.cache_put_game(&item.key, &answer, item.game.as_deref())?;
            let id = store.begin_game(
                &item.request.text,
                Source::Lookahead,
                now,
                item.game.as_deref(),
            )?;
            let finished = Finished {
                status: Status::Translated,
                provider: Some(provider.clone()),
                model: Some(model.clone()),
                options: options.clone(),
                latency_ms: Some(latency_ms),
                error: None,
            };
            store.finish(id, &finished, attempts)?;
            attempts = &[];
            done.push(item.index);
        }
    }
    if !attempts.is_empty()
        && let Some(first) = items.first()
    {
        let error = match reply {
            Err(f) => Skipped::reasons(&f.skipped),
            Ok(a) => match &a.value {
                Err(m) => format!("{}: batch reply did not match ({m})", a.provider),
                Ok(_) => format!("{}: the reply checks refused the lines", a.provider),
            },
        };
        let id = store.begin_game(
            &first.request.text,
            Source::Lookahead,
            now,
            first.game.as_deref(),
        )?;
        let finished = Finished {
            status: Status::Failed,
            provider: None,
            model: None,
            options: Vec::new(),
            latency_ms: Some(latency_ms),
            error: Some(error),
        };
        store.finish(id, &finished, attempts)?;
    }
    Ok(done)
}

#[cfg(test)]
#[path = "lookahead_tests.rs"]
mod tests;
