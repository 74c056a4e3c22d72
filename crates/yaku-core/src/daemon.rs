//! The daemon's pipeline: clipboard changes → intake (clean, gates) → latest-wins queue → the
//! chain → notifications. One task owns all of it; the clipboard poll loop and the notifier
//! are separate workers fed through bounded channels.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::breaker::{OpenCause, State as BreakerState};
use super::chain::{Chain, ChainFailure, Skipped, Translation};
use super::clock::{BoxFuture, Clock};
use super::games::{ActiveWindow, GameProfile, Games};
use super::gates::Gates;
use super::intake::{ClipEvent, Intake, WatchControl, WatchMode, intake};
use super::line::{Accepted, CacheUse, Lines};
use super::lookahead::{AheadItem, Lookahead, LookaheadSettings, LookaheadStatus};
use super::memory::{ContextWindow, Glossary};
use super::notice::{self, Notice, OutageNotices};
use super::prompt::TranslationRequest;
use super::queue::{DisplayOrder, LatestWins, Line, QueueEffect};
use super::store::{Status, StoreHandle};

/// The desktop notification port.
pub trait Notifier: Send + Sync + 'static {
    /// Shows `notice`, replacing yaku's previous notification.
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// Why a notice could not be shown. The detail is the platform's own words (never a line's
/// text: a notice's text is not part of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Nothing to show it: no notification server on the session bus, or no bus at all.
    #[error("no notification server: {0}")]
    NoServer(String),
    /// The notification server did not answer in time.
    #[error("the notification server did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The notification server answered with an error.
    #[error("the notification server refused the notification: {0}")]
    Refused(String),
}

/// How the daemon behaves; from the config.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Undo Textractor's repeated characters and repeated lines before anything else.
    pub collapse_repeats: bool,
    pub show_original: bool,
    /// Log the original line and its best translation (never a rejected text).
    pub include_text: bool,
    /// Every field but `text`, `context` and `glossary` is used for each line.
    pub request: TranslationRequest,
    /// Previous lines sent as context, and when they are forgotten.
    pub context_lines: usize,
    pub context_reset: Duration,
    pub glossary: Glossary,
    pub cache_enabled: bool,
    /// The `[[games]]` profiles; empty: every line is of no game.
    pub games: Games,
    /// `[intake] game`: the profile of every WebSocket line; None: the active window's.
    pub websocket_game: Option<String>,
    /// `[lookahead]` with its script; None: off (no script, or one that could not be read).
    pub lookahead: Option<LookaheadSettings>,
}

/// Counts for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCounts {
    pub accepted: u64,
    pub rejected: u64,
    /// `rejected`, by the gate that rejected: tells a reader which setting to look at.
    pub rejected_by_gate: std::collections::BTreeMap<&'static str, u64>,
    pub superseded: u64,
    pub translated: u64,
    pub failed: u64,
    /// Finished after a newer line was shown: logged, not shown.
    pub stale: u64,
    /// Answered from the cache, with no request.
    pub cached: u64,
}

/// A request to the running daemon, from the control socket or a signal.
pub enum DaemonCommand {
    Status(oneshot::Sender<DaemonStatus>),
    /// Stop reading the clipboard, for `duration` or until resumed.
    Pause {
        duration: Option<Duration>,
        reply: oneshot::Sender<DaemonStatus>,
    },
    Resume(oneshot::Sender<DaemonStatus>),
    /// Use a new config's chain, gates and settings (a reload).
    Reconfigure(Box<Reconfig>),
    /// Show a message, such as a reload that failed.
    Notify(Notice),
}

/// What a reload replaces. Building it (reading the config) happens outside the daemon, so a
/// broken config never touches the running one.
pub struct Reconfig {
    pub chain: Arc<Chain>,
    pub gates: Gates,
    pub settings: DaemonSettings,
}

/// A provider as `yaku status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    pub name: String,
    /// "closed", "open", "half_open", "disabled" or "no_key".
    pub state: &'static str,
    /// How long an open breaker stays open.
    pub open_for: Option<Duration>,
    /// Why it is open or disabled.
    pub reason: Option<String>,
    /// Requests left in the daily budget, when there is one.
    pub daily_remaining: Option<u32>,
}

/// The daemon's state for `yaku status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    pub paused: bool,
    /// How long a timed pause still lasts.
    pub paused_for: Option<Duration>,
    /// Lines in the queue, the one in flight included.
    pub queue: usize,
    pub providers: Vec<ProviderStatus>,
    pub last_latency_ms: Option<u64>,
    pub counts: DaemonCounts,
    /// The game profile of the window active now; None without one (or without `[[games]]`).
    pub game: Option<String>,
    /// How the clipboard watch learns of changes; None before its first read (or without
    /// one).
    pub watch: Option<WatchMode>,
    /// The script position and what is ready ahead; None without `[lookahead] script`.
    pub lookahead: Option<LookaheadStatus>,
}

type Work =
    std::pin::Pin<Box<dyn Future<Output = (u64, Result<Translation, ChainFailure>)> + Send>>;

/// A look-ahead batch's request may take longer than one line's.
const LOOKAHEAD_DEADLINE: Duration = Duration::from_secs(120);

/// What a look-ahead batch did, sent back to the pipeline by its task.
struct AheadDone {
    /// Script indices now cached.
    translated: Vec<usize>,
    /// Requests made, per provider (each counts against its daily share).
    requests: Vec<String>,
}

/// Look-ahead in the daemon: the policy, and the one batch task it may have running.
struct Ahead {
    policy: Lookahead,
    /// The batch in flight, aborted when the daemon stops or the look-ahead is turned off.
    task: Option<tokio::task::JoinHandle<()>>,
    done_tx: mpsc::Sender<AheadDone>,
    done: mpsc::Receiver<AheadDone>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub struct Daemon {
    chain: Arc<Chain>,
    clock: Arc<dyn Clock>,
    gates: Gates,
    settings: DaemonSettings,
    notices: watch::Sender<Option<Notice>>,
    counts: watch::Sender<DaemonCounts>,
    queue: LatestWins,
    display: DisplayOrder,
    outage: OutageNotices,
    next_id: u64,
    /// The line being translated (its work future is polled by `run`).
    in_flight: Option<Line>,
    /// History and cache, through the one line use case.
    lines: Lines,
    context: ContextWindow,
    /// Shared with the clipboard thread: while set, the clipboard is not read.
    paused: Arc<AtomicBool>,
    paused_until: Option<Instant>,
    commands_tx: mpsc::Sender<DaemonCommand>,
    commands: mpsc::Receiver<DaemonCommand>,
    last_latency_ms: Option<u64>,
    /// The clipboard poll loop's marks, when one runs (see [`Daemon::follow_marks`]).
    marks: Option<(WatchControl, watch::Receiver<u64>)>,
    /// `yaku resume` replies waiting for the mark they asked for.
    resumes: Vec<(u64, oneshot::Sender<DaemonStatus>)>,
    /// Tells which window is active, so a line is given its game's profile.
    window: Option<Arc<dyn ActiveWindow>>,
    /// The game of the last accepted line: the context window is its game's.
    game: Option<String>,
    /// The chain in force, for the tasks that follow reloads (`warm::keep_warm`).
    chains: watch::Sender<Arc<Chain>>,
    /// `[lookahead]`, when a script is configured.
    ahead: Option<Ahead>,
}

impl Daemon {
    pub fn new(
        chain: Arc<Chain>,
        clock: Arc<dyn Clock>,
        gates: Gates,
        settings: DaemonSettings,
        notices: watch::Sender<Option<Notice>>,
        store: Option<Arc<StoreHandle>>,
    ) -> Self {
        let context = ContextWindow::new(settings.context_lines, settings.context_reset);
        let (commands_tx, commands) = mpsc::channel(8);
        Self {
            paused: Arc::new(AtomicBool::new(false)),
            paused_until: None,
            commands_tx,
            commands,
            last_latency_ms: None,
            marks: None,
            resumes: Vec::new(),
            window: None,
            game: None,
            chains: watch::Sender::new(chain.clone()),
            ahead: settings.lookahead.clone().map(Ahead::new),
            lines: Lines::new(store),
            context,
            chain,
            clock,
            gates,
            settings,
            notices,
            counts: watch::Sender::new(DaemonCounts::default()),
            queue: LatestWins::new(),
            display: DisplayOrder::default(),
            outage: OutageNotices::default(),
            next_id: 1,
            in_flight: None,
        }
    }

    /// Resumes through the poll loop of `control`: each one asks it to take what is on the
    /// clipboard as already seen, and `yaku resume` answers once it has.
    pub fn follow_marks(&mut self, control: &WatchControl) {
        self.marks = Some((control.clone(), control.marks_taken.subscribe()));
    }

    /// Chooses each line's game profile by the window `window` says is active.
    pub fn watch_window(&mut self, window: Arc<dyn ActiveWindow>) {
        self.window = Some(window);
    }

    /// The profile of the window active now.
    fn active_profile(&self) -> Option<Arc<GameProfile>> {
        if self.settings.games.is_empty() {
            return None;
        }
        let window = self.window.as_ref()?.active();
        self.settings.games.choose(window.as_ref())
    }

    /// The profile of a line from `source`: a WebSocket line is of the game `[intake]` names,
    /// when it names one (the hooker serves one game, whatever window is in front).
    fn profile_for(&self, source: crate::store::Source) -> Option<Arc<GameProfile>> {
        let named = match (source, &self.settings.websocket_game) {
            (crate::store::Source::Websocket, Some(name)) => self.settings.games.get(name),
            _ => None,
        };
        named.or_else(|| self.active_profile())
    }

    /// Where commands (status, pause, reload) are sent.
    pub fn commands(&self) -> mpsc::Sender<DaemonCommand> {
        self.commands_tx.clone()
    }

    /// The pause switch the clipboard thread must obey.
    pub fn pause_flag(&self) -> Arc<AtomicBool> {
        self.paused.clone()
    }

    /// The chain in force, replaced by each reload.
    pub fn chains(&self) -> watch::Receiver<Arc<Chain>> {
        self.chains.subscribe()
    }

    /// A live view of the counts.
    pub fn counts(&self) -> watch::Receiver<DaemonCounts> {
        self.counts.subscribe()
    }

    /// Runs until `shutdown` resolves or the clipboard channel closes. Work in flight is
    /// dropped (cancelled) on shutdown.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<ClipEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> DaemonCounts {
        tokio::pin!(shutdown);
        let mut inflight: Option<Work> = None;
        loop {
            let work = async {
                match inflight.as_mut() {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            };
            let pause_ends = async {
                match self.paused_until {
                    Some(t) => self.clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let waiting = !self.resumes.is_empty();
            let marked = async {
                match self.marks.as_mut() {
                    Some((_, taken)) if waiting => taken.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            let ahead_done = async {
                match self.ahead.as_mut() {
                    Some(a) => a.done.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = pause_ends => {
                    let _ = self.resume();
                }
                Some(cmd) = self.commands.recv() => self.command(cmd),
                true = marked => self.answer_resumes(),
                Some(done) = ahead_done => self.ahead_finished(done),
                (id, result) = work => {
                    if let Some(line) = self.in_flight.take().filter(|l| l.id == id) {
                        self.finish(line, result);
                    }
                    let next = self.queue.finished();
                    inflight = self.apply(next);
                }
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if let Some(line) = self.accept(event) {
                        let effects = self.queue.push(line);
                        if let Some(w) = self.apply(effects) {
                            inflight = Some(w);
                        }
                    }
                }
            }
            // Look-ahead is the lowest priority: it starts only when no copied line is
            // being translated or waiting, so it never takes the cell a copied line needs.
            if self.in_flight.is_none() && self.queue.is_empty() {
                self.look_ahead();
            }
        }
        self.ahead = None;
        drop(inflight);
        if let Some(line) = self.in_flight.take() {
            tracing::info!(
                line_id = line.id,
                "shutting down: the line in flight is abandoned"
            );
            self.lines.abandon(&line.entry, Status::Interrupted);
        }
        for effect in self.queue.clear() {
            if let QueueEffect::Superseded(line) = effect {
                tracing::info!(line_id = line.id, "shutting down: waiting line dropped");
                self.lines.abandon(&line.entry, Status::Superseded);
            }
        }
        self.counts.borrow().clone()
    }

    fn command(&mut self, cmd: DaemonCommand) {
        match cmd {
            DaemonCommand::Status(reply) => {
                let _ = reply.send(self.status());
            }
            DaemonCommand::Pause { duration, reply } => {
                self.paused.store(true, Ordering::Relaxed);
                self.paused_until = duration.map(|d| crate::clock::later(self.clock.now(), d));
                let body = match duration {
                    Some(d) => format!(
                        "Copied text is not read for {} (or until `yaku resume`).",
                        crate::chain::human_duration(d)
                    ),
                    None => "Copied text is not read until `yaku resume`.".into(),
                };
                tracing::info!(for_secs = duration.map(|d| d.as_secs()), "paused");
                self.notices.send_replace(Some(Notice {
                    summary: "yaku is paused".into(),
                    body,
                }));
                let _ = reply.send(self.status());
            }
            DaemonCommand::Resume(reply) => match self.resume() {
                Some(mark) => {
                    self.resumes.push((mark, reply));
                    self.answer_resumes();
                }
                None => {
                    let _ = reply.send(self.status());
                }
            },
            DaemonCommand::Reconfigure(r) => {
                let Reconfig {
                    chain,
                    gates,
                    settings,
                } = *r;
                let kept = chain.keep_state_of(&self.chain);
                tracing::info!(kept = ?kept, "unchanged providers keep their breaker and limits");
                self.chain = chain;
                self.chains.send_replace(self.chain.clone());
                self.gates = gates;
                self.context = ContextWindow::new(settings.context_lines, settings.context_reset);
                self.game = None;
                self.ahead = match (self.ahead.take(), settings.lookahead.clone()) {
                    (Some(a), Some(new)) => Some(a.reconfigured(new)),
                    (None, Some(new)) => Some(Ahead::new(new)),
                    (_, None) => None,
                };
                self.settings = settings;
                tracing::info!("config reloaded: providers, gates and settings replaced");
            }
            DaemonCommand::Notify(n) => {
                self.notices.send_replace(Some(n));
            }
        }
    }

    /// Returns the mark the poll loop takes before reading again, when there is one to wait
    /// for.
    fn resume(&mut self) -> Option<u64> {
        self.paused_until = None;
        // The mark is asked for before the poll loop may read again.
        let mark = match &self.marks {
            Some((control, _)) if self.paused.load(Ordering::Relaxed) => Some(control.want_mark()),
            _ => None,
        };
        if self.paused.swap(false, Ordering::Relaxed) {
            tracing::info!("resumed");
        }
        mark
    }

    /// Answers the resumes whose mark is taken.
    fn answer_resumes(&mut self) {
        let Some((_, taken)) = &self.marks else {
            return;
        };
        let taken = *taken.borrow();
        let (done, waiting) = std::mem::take(&mut self.resumes)
            .into_iter()
            .partition(|(mark, _)| *mark <= taken);
        self.resumes = waiting;
        for (_, reply) in done {
            let _ = reply.send(self.status());
        }
    }

    /// The state `yaku status` shows.
    pub fn status(&self) -> DaemonStatus {
        let now = self.clock.now();
        let providers = self
            .chain
            .entries()
            .iter()
            .map(|e| {
                let (state, open_for, reason) = match (&e.unusable, e.breaker_state()) {
                    (Some(s), _) => ("no_key", None, Some(s.advice.clone())),
                    (None, BreakerState::Closed { .. }) => ("closed", None, None),
                    (None, BreakerState::HalfOpen) => ("half_open", None, None),
                    (None, BreakerState::Open { until, cause }) => (
                        "open",
                        Some(until.saturating_duration_since(now)),
                        Some(match cause {
                            OpenCause::RateLimited => "rate limited".to_string(),
                            OpenCause::Failures => "repeated failures".to_string(),
                        }),
                    ),
                    (None, BreakerState::Disabled { class, detail }) => (
                        "disabled",
                        None,
                        Some(format!("{}: {detail}", class.as_str())),
                    ),
                };
                ProviderStatus {
                    name: e.name.clone(),
                    state,
                    open_for,
                    reason,
                    daily_remaining: e.day_remaining(),
                }
            })
            .collect();
        DaemonStatus {
            paused: self.paused.load(Ordering::Relaxed),
            paused_for: self.paused_until.map(|t| t.saturating_duration_since(now)),
            queue: self.queue.len(),
            providers,
            last_latency_ms: self.last_latency_ms,
            counts: self.counts.borrow().clone(),
            game: self.active_profile().map(|p| p.name.clone()),
            watch: self.marks.as_ref().and_then(|(c, _)| c.mode()),
            lookahead: self.ahead.as_ref().map(|a| a.policy.status()),
        }
    }

    fn count(&self, f: impl FnOnce(&mut DaemonCounts)) {
        self.counts.send_modify(f);
    }

    /// Runs a change through intake and the line use case's first step; returns the line
    /// when it must be translated (a cached answer is shown at once).
    fn accept(&mut self, event: ClipEvent) -> Option<Line> {
        let source = event.source();
        // The game decides which script the gates look for.
        let profile = self.profile_for(source);
        self.gates
            .use_language(profile.as_ref().and_then(|p| p.source_language.as_deref()));
        let text = match intake(event, &mut self.gates, self.settings.collapse_repeats) {
            Intake::Rejected { rejection, chars } => {
                // Never the text: only which gate and how long it was.
                let gate = rejection.gate_name();
                tracing::info!(gate, chars, "clipboard text rejected");
                self.count(|c| {
                    c.rejected += 1;
                    *c.rejected_by_gate.entry(gate).or_default() += 1;
                });
                return None;
            }
            Intake::Accepted(text) => text,
        };
        self.count(|c| c.accepted += 1);
        let now = self.clock.now();
        let game = profile.as_ref().map(|p| p.name.clone());
        if game != self.game {
            // Another game's lines are no context for this one.
            let lines = profile
                .as_ref()
                .and_then(|p| p.context_lines)
                .unwrap_or(self.settings.context_lines);
            self.context = ContextWindow::new(lines, self.settings.context_reset);
            tracing::info!(
                game = game.as_deref().unwrap_or("(none)"),
                "game profile changed"
            );
            self.game = game.clone();
        }
        let glossary = profile
            .as_ref()
            .and_then(|p| p.glossary.as_ref())
            .unwrap_or(&self.settings.glossary);
        let mut line = Line::new(self.next_id, text, now);
        line.game = game;
        line.context = self.context.next(&line.text, now);
        line.glossary = glossary.applicable(&line.text, &line.context);
        let own = glossary.applicable(&line.text, &[]);
        let request = self.request(&line);
        let cache = if self.settings.cache_enabled {
            CacheUse::On
        } else {
            CacheUse::Off
        };
        let accepted = self.lines.accept(&request, &own, source, cache);
        let (Accepted::Pending(entry) | Accepted::Cached(_, entry)) = &accepted;
        // The history row's id becomes the line's, so `line_id` in the log goes on from the
        // last session's and names the row `yaku history` shows.
        line.id = entry
            .history_id
            .and_then(|h| u64::try_from(h).ok())
            .map_or(self.next_id, |h| h.max(self.next_id));
        self.next_id = line.id + 1;
        if self.settings.include_text {
            tracing::info!(line_id = line.id, chars = line.text.chars().count(), text = %line.text, "line accepted");
        } else {
            tracing::info!(
                line_id = line.id,
                chars = line.text.chars().count(),
                "line accepted"
            );
        }
        if let Some(a) = self.ahead.as_mut()
            && let Some(at) = a
                .policy
                .copied(&line.text, matches!(accepted, Accepted::Cached(..)))
        {
            tracing::debug!(
                line_id = line.id,
                position = at,
                "look-ahead: script position"
            );
        }
        match accepted {
            Accepted::Pending(entry) => {
                line.entry = entry;
                Some(line)
            }
            Accepted::Cached(t, _) => {
                let _span = tracing::info_span!("line", line_id = line.id).entered();
                self.count(|c| c.cached += 1);
                if self.settings.include_text {
                    tracing::info!(provider = %t.provider, original = %line.text, best = %best(&t), "cached");
                } else {
                    tracing::info!(provider = %t.provider, "cached");
                }
                self.show(&line, &t);
                None
            }
        }
    }

    /// The request for `line`: the settings' languages and options (its game's overrides
    /// applied), its text and memory.
    fn request(&self, line: &Line) -> TranslationRequest {
        let mut request = self.settings.request.clone();
        if let Some(p) = line
            .game
            .as_deref()
            .and_then(|g| self.settings.games.get(g))
        {
            p.apply(&mut request);
        }
        request.text = line.text.clone();
        request.context = line.context.clone();
        request.glossary = line.glossary.clone();
        request
    }

    /// Carries out queue effects; returns the work to start, if any.
    fn apply(&mut self, effects: Vec<QueueEffect>) -> Option<Work> {
        let mut start = None;
        for effect in effects {
            match effect {
                QueueEffect::Superseded(line) => {
                    tracing::info!(
                        line_id = line.id,
                        "superseded: a newer line replaced it in the queue"
                    );
                    self.count(|c| c.superseded += 1);
                    self.lines.abandon(&line.entry, Status::Superseded);
                }
                QueueEffect::Start(line) => {
                    start = Some(self.translate(&line));
                    self.in_flight = Some(line);
                }
            }
        }
        start
    }

    fn translate(&self, line: &Line) -> Work {
        let (chain, lines) = (self.chain.clone(), self.lines.clone());
        let (request, entry) = (self.request(line), line.entry.clone());
        let id = line.id;
        let span = tracing::info_span!("line", line_id = id);
        Box::pin(
            async move { (id, lines.translate(&chain, &request, None, &entry).await) }
                .instrument(span),
        )
    }

    /// Starts the look-ahead batch the policy asks for, as a task of its own: the copied
    /// lines never wait behind it, and it holds no lock while it waits.
    fn look_ahead(&mut self) {
        if !self.settings.cache_enabled || self.paused.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut a) = self.ahead.take() else {
            return;
        };
        let batch = {
            let game = self.game.clone();
            let mut cached = |text: &str| {
                let (request, own) = self.ahead_request(text, &[], game.as_deref());
                self.lines.is_cached(&crate::line::key_for(&request, &own))
            };
            a.policy.plan(&mut cached)
        };
        if let Some(batch) = batch {
            let items = self.ahead_items(a.policy.script(), &batch);
            let allowance = a.policy.allowance(std::time::SystemTime::now());
            let (chain, store, tx) = (self.chain.clone(), self.lines.store(), a.done_tx.clone());
            tracing::info!(
                lines = items.len(),
                "look-ahead: translating the next script lines"
            );
            let work = async move {
                let reqs: Vec<TranslationRequest> =
                    items.iter().map(|i| i.request.clone()).collect();
                let allow =
                    |e: &crate::chain::ChainEntry| allowance.allows(&e.name, e.day_remaining());
                let reply = chain.spare_batch(&reqs, LOOKAHEAD_DEADLINE, &allow).await;
                let Some(reply) = reply else {
                    tracing::info!("look-ahead: no provider has a request to spare now");
                    let _ = tx
                        .send(AheadDone {
                            translated: Vec::new(),
                            requests: Vec::new(),
                        })
                        .await;
                    return;
                };
                let requests = match &reply {
                    Ok(r) => r.attempts.iter().map(|a| a.provider.clone()).collect(),
                    Err(f) => f.attempts.iter().map(|a| a.provider.clone()).collect(),
                };
                let translated = store
                    .and_then(|s| {
                        s.with("stored look-ahead translations", |st| {
                            crate::lookahead::keep(st, &items, &reply)
                        })
                    })
                    .unwrap_or_default();
                match &reply {
                    Ok(r) => {
                        tracing::info!(provider = %r.provider, lines = reqs.len(), cached = translated.len(), latency_ms = r.latency.as_millis() as u64, "look-ahead: batch done")
                    }
                    Err(f) => {
                        tracing::info!(reasons = %Skipped::reasons(&f.skipped), "look-ahead: batch failed (not retried)")
                    }
                }
                let _ = tx
                    .send(AheadDone {
                        translated,
                        requests,
                    })
                    .await;
            };
            a.task = Some(tokio::spawn(
                work.instrument(tracing::info_span!("lookahead")),
            ));
        }
        self.ahead = Some(a);
    }

    fn ahead_finished(&mut self, done: AheadDone) {
        let Some(a) = self.ahead.as_mut() else {
            return;
        };
        a.task = None;
        for p in &done.requests {
            a.policy.spent(p, 1);
        }
        a.policy.done(&done.translated);
    }

    /// The request for script line `text` of `game`, with `context`, as a copied line of
    /// that game would be asked (so its cache key is the one a copy looks up); and the
    /// glossary entries of the line itself.
    fn ahead_request(
        &self,
        text: &str,
        context: &[String],
        game: Option<&str>,
    ) -> (TranslationRequest, Vec<crate::memory::GlossaryEntry>) {
        let profile = game.and_then(|g| self.settings.games.get(g));
        let glossary = profile
            .as_ref()
            .and_then(|p| p.glossary.as_ref())
            .unwrap_or(&self.settings.glossary);
        let mut request = self.settings.request.clone();
        if let Some(p) = &profile {
            p.apply(&mut request);
        }
        request.text = text.to_string();
        request.context = context.to_vec();
        request.glossary = glossary.applicable(text, context);
        (request, glossary.applicable(text, &[]))
    }

    /// The batch's requests: each line with the script lines before it as its context.
    fn ahead_items(&self, script: &crate::lookahead::Script, batch: &[usize]) -> Vec<AheadItem> {
        let game = self.game.clone();
        let lines = game
            .as_deref()
            .and_then(|g| self.settings.games.get(g))
            .and_then(|p| p.context_lines)
            .unwrap_or(self.settings.context_lines);
        batch
            .iter()
            .filter_map(|&i| {
                let text = &script.lines.get(i)?.text;
                let context: Vec<String> = (i.saturating_sub(lines)..i)
                    .filter_map(|j| script.shown(j))
                    .collect();
                let (request, own) = self.ahead_request(text, &context, game.as_deref());
                let key = crate::line::key_for(&request, &own);
                Some(AheadItem {
                    index: i,
                    request,
                    key,
                    game: game.clone(),
                })
            })
            .collect()
    }

    fn show(&mut self, line: &Line, t: &Translation) {
        for option in &t.options {
            self.gates.record_output(option);
        }
        if !self.display.claim(line.id) {
            tracing::info!("not shown: a newer line's translation is on screen");
            self.count(|c| c.stale += 1);
            return;
        }
        let first = self
            .chain
            .entries()
            .first()
            .map(|e| e.name.as_str())
            .unwrap_or_default();
        let speaker =
            crate::speaker::shown_name(&line.text, &self.settings.glossary, t.speaker.as_deref());
        let n = notice::translation(
            &line.text,
            speaker.as_deref(),
            t,
            self.settings.show_original,
            first,
        );
        self.notices.send_replace(Some(n));
    }

    fn finish(&mut self, line: Line, result: Result<Translation, ChainFailure>) {
        let _span = tracing::info_span!("line", line_id = line.id).entered();
        let waited = self.clock.now().saturating_duration_since(line.accepted_at);
        match result {
            Ok(t) => {
                self.count(|c| c.translated += 1);
                self.outage.succeeded();
                let latency_ms = t.latency.as_millis() as u64;
                self.last_latency_ms = Some(latency_ms);
                if self.settings.include_text {
                    tracing::info!(provider = %t.provider, latency_ms, total_ms = ms(waited), original = %line.text, best = %best(&t), "translated");
                } else {
                    tracing::info!(provider = %t.provider, latency_ms, total_ms = ms(waited), "translated");
                }
                for s in &t.skipped {
                    tracing::info!(provider = %s.provider, reason = s.reason.as_str(), "fallback: {}", s.summary());
                }
                if let Some(a) = self.ahead.as_mut()
                    && line.entry.cache_key.is_some()
                {
                    a.policy.mark_ready(&line.text);
                }
                self.show(&line, &t);
            }
            Err(f) => {
                self.count(|c| c.failed += 1);
                // A line that failed is no repeat: copying it again asks again.
                self.gates.forget_accepted(&line.text);
                let reasons = Skipped::reasons(&f.skipped);
                tracing::warn!(
                    total_ms = ms(waited),
                    "no provider could translate the line: {reasons}"
                );
                if self.outage.failed() {
                    self.notices.send_replace(Some(notice::outage(&f)));
                }
            }
        }
    }
}

impl Ahead {
    fn new(settings: LookaheadSettings) -> Self {
        let (done_tx, done) = mpsc::channel(1);
        tracing::info!(script = %settings.script.name, lines = settings.script.lines.len(), "look-ahead: script loaded");
        Self {
            policy: Lookahead::new(settings),
            task: None,
            done_tx,
            done,
        }
    }

    /// A reload: the policy keeps its position on the same script; a batch in flight
    /// finishes into the new one.
    fn reconfigured(mut self, settings: LookaheadSettings) -> Self {
        let (task, done_tx) = (self.task.take(), self.done_tx.clone());
        let (_, placeholder) = mpsc::channel(1);
        let done = std::mem::replace(&mut self.done, placeholder);
        let policy = self.policy.clone().reconfigured(settings);
        Self {
            policy,
            task,
            done_tx,
            done,
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The best option, for the log.
fn best(t: &Translation) -> &str {
    t.options.first().map(String::as_str).unwrap_or_default()
}

/// Shows the latest notice whenever it changes, each under a timeout (a hung notification
/// server would otherwise block for ever). A failure is logged once, until a notice gets
/// through again.
pub async fn notify_worker(
    notifier: Arc<dyn Notifier>,
    mut notices: watch::Receiver<Option<Notice>>,
    timeout: Duration,
) {
    let mut failing = false;
    while notices.changed().await.is_ok() {
        let Some(notice) = notices.borrow_and_update().clone() else {
            continue;
        };
        let outcome = match tokio::time::timeout(timeout, notifier.show(&notice)).await {
            Ok(r) => r,
            Err(_) => Err(NotifyError::TimedOut(timeout)),
        };
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!("notifications are shown again");
                }
                failing = false;
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot show notifications; translating goes on (see the log)");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::chain::{ChainConfig, ChainEntry};
    use crate::clock::TokioClock;
    use crate::fake::{
        self, FakeClipboard, FakeNotifier, FakeProvider, MemStore, PromptLog, Scripted,
    };
    use crate::gates::GateConfig;
    use crate::provider::FailureClass;
    use crate::ratelimit::RateLimit;

    struct Rig {
        commands: mpsc::Sender<DaemonCommand>,
        paused: Arc<AtomicBool>,
        tx: mpsc::Sender<ClipEvent>,
        shown: Arc<FakeNotifier>,
        provider: Arc<PromptLog>,
        store: Arc<MemStore>,
        stop: tokio::sync::oneshot::Sender<()>,
        done: tokio::task::JoinHandle<DaemonCounts>,
    }

    fn one_provider_chain(provider: Arc<PromptLog>, clock: &Arc<dyn Clock>) -> Arc<Chain> {
        let entry = ChainEntry::new(
            provider,
            BreakerConfig::default(),
            RateLimit::new(0, 0, clock.clone()),
            String::new(),
        );
        Arc::new(Chain::new(
            vec![entry],
            clock.clone(),
            ChainConfig::default(),
        ))
    }

    fn settings(context_lines: usize, cache_enabled: bool) -> DaemonSettings {
        DaemonSettings {
            collapse_repeats: true,
            show_original: true,
            include_text: false,
            request: TranslationRequest {
                source_language: "Japanese".into(),
                target_language: "English".into(),
                options: 3,
                ..Default::default()
            },
            context_lines,
            context_reset: Duration::from_secs(600),
            glossary: Glossary::default(),
            cache_enabled,
            games: Games::default(),
            websocket_game: None,
            lookahead: None,
        }
    }

    fn rig(script: Vec<Scripted>, then: Scripted) -> Rig {
        rig_with(script, then, Glossary::default())
    }

    fn rig_with(script: Vec<Scripted>, then: Scripted, glossary: Glossary) -> Rig {
        let mut settings = settings(2, true);
        settings.glossary = glossary;
        rig_settings(script, then, settings)
    }

    fn rig_settings(script: Vec<Scripted>, then: Scripted, settings: DaemonSettings) -> Rig {
        rig_window(script, then, settings, None)
    }

    fn rig_window(
        script: Vec<Scripted>,
        then: Scripted,
        settings: DaemonSettings,
        window: Option<Arc<fake::FakeWindow>>,
    ) -> Rig {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let provider = Arc::new(PromptLog {
            inner: FakeProvider::new("gemini", script, then),
            prompts: Mutex::new(Vec::new()),
        });
        let chain = one_provider_chain(provider.clone(), &clock);
        let store = Arc::new(MemStore::default());
        let dyn_store: Arc<dyn crate::store::Store> = store.clone();
        let opener: crate::store::Opener =
            Box::new(|| Err(crate::store::StoreError::Refused("unused".into())));
        let handle = Arc::new(StoreHandle::new(
            Some(dyn_store),
            opener,
            clock.clone(),
            Duration::from_secs(600),
        ));
        let (notices_tx, notices_rx) = watch::channel(None);
        let mut daemon = Daemon::new(
            chain,
            clock,
            Gates::new(GateConfig::default()).unwrap(),
            settings,
            notices_tx,
            Some(handle),
        );
        if let Some(w) = window {
            daemon.watch_window(w);
        }
        let shown = Arc::new(FakeNotifier::new());
        tokio::spawn(notify_worker(
            shown.clone(),
            notices_rx,
            Duration::from_secs(5),
        ));
        let (tx, rx) = mpsc::channel(16);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (commands, paused) = (daemon.commands(), daemon.pause_flag());
        let done = tokio::spawn(daemon.run(rx, async move {
            let _ = stop_rx.await;
        }));
        Rig {
            commands,
            paused,
            tx,
            shown,
            provider,
            store,
            stop,
            done,
        }
    }

    fn calls(r: &Rig) -> usize {
        r.provider.prompts.lock().unwrap().len()
    }

    fn sent_object(r: &Rig, i: usize) -> serde_json::Value {
        let p = r.provider.prompts.lock().unwrap()[i].user.clone();
        serde_json::from_str(p.split_once('\n').unwrap().1).unwrap()
    }

    async fn status(r: &Rig) -> DaemonStatus {
        let (reply, rx) = oneshot::channel();
        r.commands.send(DaemonCommand::Status(reply)).await.unwrap();
        rx.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn pause_stops_the_clipboard_says_so_once_and_a_timed_pause_ends_by_itself() {
        let r = rig(vec![], fake::ok("fine"));
        let (reply, rx) = oneshot::channel();
        r.commands
            .send(DaemonCommand::Pause {
                duration: Some(Duration::from_secs(600)),
                reply,
            })
            .await
            .unwrap();
        let st = rx.await.unwrap();
        assert!(st.paused && r.paused.load(Ordering::Relaxed));
        assert_eq!(st.paused_for, Some(Duration::from_secs(600)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let shown = r.shown.summaries();
        assert_eq!(shown, ["yaku is paused"]);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!status(&r).await.paused, "the timed pause ended");
        assert!(!r.paused.load(Ordering::Relaxed));

        let (reply, rx) = oneshot::channel();
        r.commands
            .send(DaemonCommand::Pause {
                duration: None,
                reply,
            })
            .await
            .unwrap();
        assert_eq!(rx.await.unwrap().paused_for, None);
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(
            status(&r).await.paused,
            "an open-ended pause lasts until resumed"
        );
        let (reply, rx) = oneshot::channel();
        r.commands.send(DaemonCommand::Resume(reply)).await.unwrap();
        assert!(!rx.await.unwrap().paused);
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn status_reports_breakers_queue_and_latency_and_reconfigure_reenables_a_disabled_provider()
     {
        let r = rig(
            vec![fake::fail(crate::provider::FailureClass::Unauthorized)],
            fake::ok("fine"),
        );
        r.tx.send(copy("一行目です")).await.unwrap();
        settle().await;
        let st = status(&r).await;
        assert_eq!(st.providers[0].state, "disabled");
        assert!(
            st.providers[0]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("unauthorized")
        );
        assert_eq!((st.queue, st.counts.failed), (0, 1));

        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let chain = one_provider_chain(r.provider.clone(), &clock);
        let settings = settings(0, false);
        let reconfig = Reconfig {
            chain,
            gates: Gates::new(GateConfig::default()).unwrap(),
            settings,
        };
        r.commands
            .send(DaemonCommand::Reconfigure(Box::new(reconfig)))
            .await
            .unwrap();
        r.tx.send(copy("二行目です")).await.unwrap();
        settle().await;
        let st = status(&r).await;
        assert_eq!(st.providers[0].state, "closed");
        assert_eq!(st.counts.translated, 1, "{st:?}");
        assert_eq!(st.last_latency_ms, Some(0));
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_line_is_shown_with_no_request_and_recorded_as_cached() {
        let r = rig(vec![], fake::ok("Good morning."));
        r.tx.send(copy("おはよう")).await.unwrap();
        settle().await;
        r.tx.send(copy("こんにちは")).await.unwrap();
        settle().await;
        r.tx.send(copy("おはよう")).await.unwrap();
        settle().await;
        assert_eq!(calls(&r), 2, "the repeated line came from the cache");
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(counts.cached, 1);
        assert_eq!(
            r.store.statuses(),
            vec![
                ("おはよう".into(), "translated"),
                ("こんにちは".into(), "translated"),
                ("おはよう".into(), "cached")
            ]
        );
        assert_eq!(r.shown.last().unwrap().summary, "Good morning.");
    }

    #[tokio::test(start_paused = true)]
    async fn a_script_line_copied_sends_the_next_lines_as_one_batch_and_a_failed_batch_is_not_retried()
     {
        let raw: Vec<crate::prefetch::ScriptLine> =
            ["おはよう", "こんにちは", "さようなら", "ありがとう"]
                .iter()
                .map(|t| crate::prefetch::ScriptLine {
                    speaker: None,
                    text: t.to_string(),
                })
                .collect();
        let mut gates = Gates::new(GateConfig::default()).unwrap();
        let script = crate::lookahead::Script::new("s.txt", &raw, &mut gates, true);
        let mut s = settings(2, true);
        s.lookahead = Some(LookaheadSettings {
            script: Arc::new(script),
            lines: 2,
            daily_share: 0.5,
            shares: Vec::new(),
        });
        let batch = Scripted {
            latency: Duration::from_millis(300),
            result: Ok(
                r#"{"translations":[{"options":["Hello."]},{"options":["Goodbye."]}]}"#.into(),
            ),
        };
        let r = rig_settings(vec![fake::ok("Good morning.")], batch, s);
        r.tx.send(copy("おはよう")).await.unwrap();
        settle().await;
        assert_eq!(calls(&r), 2, "the line, then one batch");
        let user = r.provider.prompts.lock().unwrap()[1].user.clone();
        let object: serde_json::Value =
            serde_json::from_str(&user[user.find('{').unwrap()..]).unwrap();
        assert_eq!(
            object["lines"],
            serde_json::json!(["こんにちは", "さようなら"])
        );
        let st = status(&r).await.lookahead.unwrap();
        assert_eq!(
            (st.position, st.ready_ahead, st.in_flight),
            (Some(0), 2, false)
        );

        r.tx.send(copy("こんにちは")).await.unwrap();
        settle().await;
        assert_eq!(r.shown.last().unwrap().summary, "Hello.", "from the cache");
        // The next window's one missing line goes as a batch of one; the two-entry reply does
        // not match it, and look-ahead does not ask again by itself.
        assert_eq!(calls(&r), 3);
        settle().await;
        assert_eq!(calls(&r), 3, "a failed batch is not retried");
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!((counts.translated, counts.cached), (1, 1));
        let statuses = r.store.statuses();
        assert_eq!(
            statuses,
            vec![
                ("おはよう".into(), "translated"),
                ("こんにちは".into(), "translated"),
                ("さようなら".into(), "translated"),
                ("こんにちは".into(), "cached"),
                ("ありがとう".into(), "failed"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_answer_without_options_is_a_miss_and_the_fresh_answer_replaces_it() {
        // With the text in the log, the "cached" line names the best option.
        let r = rig_settings(
            vec![],
            fake::ok("Good morning."),
            DaemonSettings {
                include_text: true,
                ..settings(2, true)
            },
        );
        r.tx.send(copy("おはよう")).await.unwrap();
        settle().await;
        r.tx.send(copy("こんにちは")).await.unwrap();
        settle().await;
        // What a hand edit can leave: no options, or only empty ones.
        for emptied in [vec![], vec![String::new(), " ".into()]] {
            for answer in r.store.cache.lock().unwrap().values_mut() {
                answer.options = emptied.clone();
            }
            r.tx.send(copy("おはよう")).await.unwrap();
            settle().await;
            r.tx.send(copy("こんにちは")).await.unwrap();
            settle().await;
        }
        assert_eq!(calls(&r), 6, "every emptied entry was asked for afresh");
        assert!(
            r.store
                .cache
                .lock()
                .unwrap()
                .values()
                .all(|a| a.options == ["Good morning."]),
            "the fresh answers replaced the entries"
        );
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!((counts.cached, counts.translated), (0, 6));
        assert!(r.store.statuses().iter().all(|(_, s)| *s == "translated"));
        assert_eq!(r.shown.last().unwrap().summary, "Good morning.");
    }

    #[tokio::test(start_paused = true)]
    async fn context_lines_and_applicable_glossary_entries_travel_with_the_request() {
        use crate::memory::GlossaryEntry;
        let g = |s: &str, t: &str| GlossaryEntry {
            source: s.into(),
            target: t.into(),
            note: String::new(),
        };
        let glossary = Glossary::new(vec![
            g("春香", "Haruka"),
            g("先輩", "senpai"),
            g("魔法", "magic"),
        ]);
        let r = rig_with(vec![], fake::ok("ok"), glossary);
        for line in ["春香が来た。", "おはよう。", "先輩、遅いよ！"] {
            r.tx.send(copy(line)).await.unwrap();
            settle().await;
        }
        let last = sent_object(&r, 2);
        assert_eq!(
            last["context"],
            serde_json::json!(["1. 春香が来た。", "2. おはよう。"])
        );
        let terms: Vec<&str> = last["glossary"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["term"].as_str().unwrap())
            .collect();
        assert_eq!(
            terms,
            ["春香", "先輩"],
            "the name in the context keeps its rendering; 魔法 appears nowhere"
        );
        assert!(sent_object(&r, 0).get("context").is_none());
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_notice_names_the_speaker_in_the_glossarys_rendering_and_a_known_name_shares_the_cache()
     {
        use crate::memory::GlossaryEntry;
        let glossary = Glossary::new(vec![GlossaryEntry {
            source: "春香".into(),
            target: "Haruka".into(),
            note: String::new(),
        }]);
        let reply = |speaker: &str, option: &str| Scripted {
            latency: Duration::ZERO,
            result: Ok(serde_json::json!({ "speaker": speaker, "options": [option] }).to_string()),
        };
        let r = rig_with(
            vec![
                reply("Harukaa", "Hey, are you listening?"),
                reply("Misaki", "Yeah."),
            ],
            fake::ok("unused"),
            glossary,
        );
        let mut summaries = Vec::new();
        for line in [
            "【春香】「ねえ、聞いてる？」",
            "美咲「うん」",
            "春香「ねえ、聞いてる？」",
        ] {
            r.tx.send(copy(line)).await.unwrap();
            settle().await;
            summaries.push(r.shown.last().unwrap().summary);
        }
        assert_eq!(
            summaries,
            [
                "Haruka: Hey, are you listening?",
                "Misaki: Yeah.",
                "Haruka: Hey, are you listening?"
            ],
            "the glossary's rendering, else the reply's"
        );
        assert_eq!(
            calls(&r),
            2,
            "the known name's other form came from the cache"
        );
        let first = sent_object(&r, 0);
        assert_eq!(first["speaker"], "春香");
        assert_eq!(first["line"], "「ねえ、聞いてる？」");
        assert_eq!(
            sent_object(&r, 1)["context"],
            serde_json::json!(["1. 春香: 「ねえ、聞いてる？」"])
        );
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn each_line_takes_the_profile_of_the_active_window_and_a_new_game_starts_a_new_context()
    {
        use crate::games::GameProfile;
        use crate::memory::GlossaryEntry;
        let profile = |name: &str, re: &str, term: &str, target: &str| GameProfile {
            name: name.into(),
            matcher: regex::Regex::new(re).unwrap(),
            glossary: Some(Glossary::new(vec![GlossaryEntry {
                source: term.into(),
                target: target.into(),
                note: String::new(),
            }])),
            instructions: Some(format!("{name} style")),
            source_language: None,
            context_lines: None,
        };
        let mut settings = settings(4, true);
        settings.games = Games::new(vec![
            profile("sakura", "^sakura", "先輩", "senpai"),
            profile("steins", "^steins", "先輩", "Okabe"),
        ]);
        let window = Arc::new(fake::FakeWindow::default());
        let r = rig_window(vec![], fake::ok("ok"), settings, Some(window.clone()));
        let sent_glossary = |i: usize| sent_object(&r, i)["glossary"][0]["translation"].clone();
        let system = |i: usize| r.provider.prompts.lock().unwrap()[i].system.clone();

        window.set_class("sakura Sakura");
        assert_eq!(status(&r).await.game.as_deref(), Some("sakura"));
        for line in ["おはよう。", "先輩、遅いよ！"] {
            r.tx.send(copy(line)).await.unwrap();
            settle().await;
        }
        assert_eq!(sent_glossary(1), "senpai");
        assert!(system(1).ends_with("sakura style"));
        assert_eq!(
            sent_object(&r, 1)["context"],
            serde_json::json!(["1. おはよう。"])
        );

        window.set_class("steins Steins");
        r.tx.send(copy("先輩、またね。")).await.unwrap();
        settle().await;
        assert_eq!(sent_glossary(2), "Okabe");
        assert!(system(2).ends_with("steins style"));
        assert!(
            sent_object(&r, 2).get("context").is_none(),
            "another game's lines are no context"
        );

        *window.0.lock().unwrap() = None;
        r.tx.send(copy("先輩、さよなら。")).await.unwrap();
        settle().await;
        assert!(
            sent_object(&r, 3).get("glossary").is_none(),
            "no window: no profile"
        );
        assert_eq!(status(&r).await.game, None);
        assert_eq!(
            *r.store.games.lock().unwrap(),
            vec![
                Some("sakura".to_string()),
                Some("sakura".to_string()),
                Some("steins".to_string()),
                None
            ]
        );
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    /// A profile that only names its game, matched by a window class starting with the name.
    fn bare_profile(name: &str) -> crate::games::GameProfile {
        crate::games::GameProfile {
            name: name.into(),
            matcher: regex::Regex::new(&format!("^{name}")).unwrap(),
            glossary: None,
            instructions: None,
            source_language: None,
            context_lines: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn websocket_lines_take_the_game_intake_names_and_copies_the_active_windows() {
        let mut settings = settings(0, true);
        settings.games = Games::new(vec![bare_profile("sakura"), bare_profile("steins")]);
        settings.websocket_game = Some("steins".into());
        let window = Arc::new(fake::FakeWindow::default());
        let r = rig_window(vec![], fake::ok("ok"), settings, Some(window.clone()));
        window.set_class("sakura");
        r.tx.send(copy("おはよう。")).await.unwrap();
        settle().await;
        r.tx.send(ClipEvent::Pushed {
            text: "またね。".into(),
        })
        .await
        .unwrap();
        settle().await;
        *window.0.lock().unwrap() = None;
        r.tx.send(ClipEvent::Pushed {
            text: "さようなら。".into(),
        })
        .await
        .unwrap();
        settle().await;
        assert_eq!(
            *r.store.games.lock().unwrap(),
            vec![
                Some("sakura".to_string()),
                Some("steins".to_string()),
                Some("steins".to_string())
            ],
            "the copy is the window's game, the hooker's lines the one [intake] names"
        );
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_games_source_language_is_the_script_the_gates_look_for() {
        use crate::games::GameProfile;
        let mut settings = settings(0, true);
        settings.games = Games::new(vec![GameProfile {
            source_language: Some("Korean".into()),
            ..bare_profile("hangul")
        }]);
        let window = Arc::new(fake::FakeWindow::default());
        let r = rig_window(vec![], fake::ok("ok"), settings, Some(window.clone()));
        // Japanese is the configured language: no Korean line passes without the game.
        r.tx.send(copy("안녕하세요 여러분")).await.unwrap();
        settle().await;
        window.set_class("hangul");
        r.tx.send(copy("안녕하세요 여러분")).await.unwrap();
        settle().await;
        r.tx.send(copy("おはようございます")).await.unwrap();
        settle().await;
        *window.0.lock().unwrap() = None;
        r.tx.send(copy("おはようございます")).await.unwrap();
        settle().await;
        assert_eq!(
            *r.store.games.lock().unwrap(),
            vec![Some("hangul".to_string()), None],
            "the Korean line under its game, the Japanese one without"
        );
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(
            counts.rejected_by_gate.get("wrong_script"),
            Some(&2),
            "{counts:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_line_in_two_games_is_cached_per_game() {
        let mut settings = settings(0, true);
        settings.games = Games::new(vec![bare_profile("sakura"), bare_profile("steins")]);
        let window = Arc::new(fake::FakeWindow::default());
        let r = rig_window(vec![], fake::ok("ok"), settings, Some(window.clone()));
        for class in ["sakura", "steins", "sakura", "steins"] {
            window.set_class(class);
            r.tx.send(copy("おはよう。")).await.unwrap();
            settle().await;
            // The repeat gate would take the same copy for a repeat.
            r.tx.send(copy("またね。")).await.unwrap();
            settle().await;
        }
        let statuses: Vec<&str> = r.store.statuses().iter().map(|(_, s)| *s).collect();
        assert_eq!(
            statuses,
            [
                "translated",
                "translated",
                "translated",
                "translated",
                "cached",
                "cached",
                "cached",
                "cached"
            ]
        );
        let _ = r.stop.send(());
        r.done.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn superseded_lines_are_recorded_superseded_and_shutdown_marks_the_line_in_flight_interrupted()
     {
        let r = rig(
            vec![],
            Scripted {
                latency: Duration::from_secs(3600),
                result: Ok("{}".into()),
            },
        );
        for line in ["一行目です", "二行目です", "三行目です"] {
            r.tx.send(copy(line)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = r.stop.send(());
        r.done.await.unwrap();
        assert_eq!(
            r.store.statuses(),
            vec![
                ("一行目です".into(), "interrupted"),
                ("二行目です".into(), "skipped"),
                ("三行目です".into(), "skipped")
            ]
        );
    }

    fn copy(text: &str) -> ClipEvent {
        ClipEvent::Text {
            text: text.into(),
            concealed: Some(false),
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }

    fn slow_ok(text: &str) -> Scripted {
        let mut s = fake::ok(text);
        s.latency = Duration::from_millis(300);
        s
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_translates_the_first_and_the_last_line_only_and_shows_the_last() {
        let r = rig(vec![], slow_ok("translated"));
        for i in 0..10 {
            r.tx.send(copy(&format!("{i}番目のセリフです")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        settle().await;
        assert_eq!(calls(&r), 2, "the first line, then the newest waiting one");
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(
            (counts.accepted, counts.translated, counts.superseded),
            (10, 2, 8)
        );
        let shown = r.shown.notices();
        assert_eq!(
            shown.last().unwrap().body.lines().last(),
            Some("9番目のセリフです")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_own_output_and_secrets_never_reach_the_provider() {
        // Into Chinese, so that a reply in kana and kanji passes the reply checks and is shown.
        let mut settings = settings(2, true);
        settings.request.target_language = "Chinese".into();
        let r = rig_settings(vec![], fake::ok("おはようございます、先輩。"), settings);
        r.tx.send(copy("おはよう")).await.unwrap();
        settle().await;
        for text in [
            "おはようございます、先輩。",
            "おはよう",
            "Good morning.",
            "hunter2",
            "gsk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN",
        ] {
            r.tx.send(copy(text)).await.unwrap();
        }
        r.tx.send(ClipEvent::Text {
            text: "パスワードです".into(),
            concealed: Some(true),
        })
        .await
        .unwrap();
        r.tx.send(ClipEvent::Oversized { bytes: 10 << 20 })
            .await
            .unwrap();
        settle().await;
        assert_eq!(calls(&r), 1);
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!((counts.accepted, counts.rejected), (1, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_shown_once_until_a_line_succeeds() {
        let r = rig(
            vec![
                fake::fail(FailureClass::Refused),
                fake::fail(FailureClass::Refused),
                fake::ok("back"),
                fake::fail(FailureClass::Refused),
            ],
            fake::ok("x"),
        );
        for line in ["一行目", "二行目", "三行目", "四行目"] {
            r.tx.send(copy(line)).await.unwrap();
            settle().await;
        }
        let shown = r.shown.summaries();
        assert_eq!(
            shown,
            [
                "yaku could not translate",
                "back",
                "yaku could not translate"
            ]
        );
        let _ = r.stop.send(());
        r.done.await.unwrap();
        let statuses: Vec<&str> = r.store.statuses().into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            statuses,
            ["failed", "failed", "translated", "failed"],
            "every failed line is recorded as failed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_abandons_a_hung_request_at_once() {
        let r = rig(
            vec![],
            Scripted {
                latency: Duration::from_secs(3600),
                result: Ok("{}".into()),
            },
        );
        r.tx.send(copy("止まらない")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = tokio::time::Instant::now();
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(tokio::time::Instant::now() - t0, Duration::ZERO);
        assert_eq!(
            (counts.accepted, counts.translated, counts.failed),
            (1, 0, 0)
        );
    }

    /// Waits (real time, generously) until the fake clipboard was read `n` times in all.
    async fn await_reads(clip: &FakeClipboard, n: u64) {
        let wait = async {
            while clip.reads() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("the clipboard was read {} times, not {n}", clip.reads()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copied_line_goes_from_the_clipboard_through_intake_to_a_notice() {
        use crate::intake::{WatchControl, watch};
        use std::sync::atomic::AtomicU64;
        let r = rig(vec![], fake::ok("Good morning, senpai."));
        let clip = FakeClipboard::new(500);
        let control = WatchControl {
            interval_ms: Arc::new(AtomicU64::new(10)),
            ..WatchControl::default()
        };
        let watcher = {
            let (clip, tx, control) = (clip.clone(), r.tx.clone(), control.clone());
            std::thread::spawn(move || watch(clip, tx, control))
        };
        let bound = Duration::from_secs(10);

        // What is there at the start is taken as seen: copy once the loop has looked.
        await_reads(&clip, 1).await;
        clip.copy("おはよう、先輩。");
        assert!(
            r.shown.wait_for(1, bound).await,
            "no notice for the first line"
        );
        assert_eq!(r.shown.last().unwrap().summary, "Good morning, senpai.");
        assert!(r.shown.last().unwrap().body.contains("おはよう、先輩。"));

        // The same text from a new owner (a repeat), then a password manager's copy: neither
        // is sent.
        clip.copy("おはよう、先輩。");
        let reads = clip.reads();
        await_reads(&clip, reads + 2).await;
        clip.copy_concealed("パスワードです");
        let reads = clip.reads();
        await_reads(&clip, reads + 2).await;
        clip.copy("今日も早いですね。");
        assert!(
            r.shown.wait_for(2, bound).await,
            "no notice for the second line"
        );

        control.stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        let lines: Vec<String> = r
            .provider
            .prompts
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.user.clone())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("おはよう、先輩。") && lines[1].contains("今日も早いですね。"));
        assert!(!lines.iter().any(|l| l.contains("パスワード")));
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(
            (counts.accepted, counts.rejected),
            (2, 2),
            "the repeated copy is a new copy the repeat gate rejects; so is the concealed one"
        );
        assert_eq!(r.shown.total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_notifier_leaves_translating_alone_and_the_next_notice_is_shown() {
        let r = rig(vec![], fake::ok("translated"));
        r.shown
            .fail_with(Some(NotifyError::NoServer("no bus".into())));
        r.tx.send(copy("一行目です")).await.unwrap();
        settle().await;
        assert_eq!((r.shown.attempts(), r.shown.total()), (1, 0));
        r.shown.fail_with(None);
        r.shown.hang(true);
        r.tx.send(copy("二行目です")).await.unwrap();
        settle().await;
        assert_eq!(
            (r.shown.attempts(), r.shown.total()),
            (2, 0),
            "the hung call timed out"
        );
        r.shown.hang(false);
        r.tx.send(copy("三行目です")).await.unwrap();
        settle().await;
        assert_eq!(r.shown.total(), 1);
        assert!(r.shown.last().unwrap().body.contains("三行目です"));
        let _ = r.stop.send(());
        let counts = r.done.await.unwrap();
        assert_eq!(counts.translated, 3);
    }
}
