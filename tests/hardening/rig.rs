//! The daemon's pipeline in-process: a `Daemon` fed through a channel (the clipboard fake),
//! a scripted in-memory provider, the core's FakeNotifier, and waits on the daemon's counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use yaku::core::breaker::BreakerConfig;
use yaku::core::chain::{Chain, ChainConfig, ChainEntry};
use yaku::core::clock::{BoxFuture, Clock, TokioClock};
use yaku::core::daemon::{
    Daemon, DaemonCommand, DaemonCounts, DaemonSettings, DaemonStatus, notify_worker,
};
use yaku::core::fake::FakeNotifier;
use yaku::core::gates::{GateConfig, Gates};
use yaku::core::intake::ClipEvent;
use yaku::core::memory::Glossary;
use yaku::core::prompt::{Prompt, TranslationRequest};
use yaku::core::provider::{Provider, ProviderFailure};
use yaku::core::ratelimit::RateLimit;
use yaku::core::store::StoreHandle;

/// How many notices the rig's notifier keeps (a soak shows thousands; all are counted).
pub const KEEP_NOTICES: usize = 512;

/// What a scripted provider answers: after `latency`, `result`.
pub type Answer = (Duration, Result<String, ProviderFailure>);

/// An in-memory provider that records every prompt and answers through a script.
pub struct ScriptProvider {
    name: String,
    pub prompts: Mutex<Vec<Prompt>>,
    answer: Box<dyn Fn(&Prompt) -> Answer + Send + Sync>,
}

impl ScriptProvider {
    pub fn new(name: &str, answer: impl Fn(&Prompt) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            name: name.to_string(),
            prompts: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        }
    }

    /// Answers every line with `EN <line>` after `latency`.
    pub fn echo(name: &str, latency: Duration) -> Self {
        Self::new(name, move |p| {
            let line = line_of_prompt(p).unwrap_or_default();
            (
                latency,
                Ok(serde_json::json!({ "options": [format!("EN {line}")] }).to_string()),
            )
        })
    }

    pub fn calls(&self) -> usize {
        self.prompts.lock().unwrap().len()
    }

    /// The lines the provider was asked to translate, in order.
    pub fn lines(&self) -> Vec<String> {
        self.prompts
            .lock()
            .unwrap()
            .iter()
            .map(|p| line_of_prompt(p).unwrap_or_else(|| "<unparsed>".into()))
            .collect()
    }

    /// Every prompt's full text (system + user), for checking that something never left.
    pub fn everything_sent(&self) -> String {
        self.prompts
            .lock()
            .unwrap()
            .iter()
            .map(|p| format!("{}\n{}\n", p.system, p.user))
            .collect()
    }
}

impl Provider for ScriptProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn model(&self) -> &str {
        "script-model"
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        self.prompts.lock().unwrap().push(prompt.clone());
        let (latency, result) = (self.answer)(prompt);
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            result
        })
    }
}

/// The copied line of a prompt: the user message is `...:\n{"line": "<text>", ...}`.
pub fn line_of_prompt(p: &Prompt) -> Option<String> {
    let (_, object) = p.user.split_once('\n')?;
    let object: Value = serde_json::from_str(object.trim()).ok()?;
    object.get("line")?.as_str().map(str::to_string)
}

/// A chain of `providers` in order, unlimited rates, on `clock`.
pub fn chain_of(
    providers: Vec<Arc<dyn Provider>>,
    breaker: BreakerConfig,
    cfg: ChainConfig,
    clock: Arc<dyn Clock>,
) -> Arc<Chain> {
    let entries = providers
        .into_iter()
        .map(|p| {
            ChainEntry::new(
                p,
                breaker,
                RateLimit::new(0, 0, clock.clone()),
                String::new(),
            )
        })
        .collect();
    // The fakes answer `EN <line>`, mostly Japanese: an untranslated reply to the checks.
    let cfg = ChainConfig {
        reply_checks: false,
        ..cfg
    };
    Arc::new(Chain::with_seed(entries, clock, cfg, 7))
}

/// The daemon settings a test usually wants: Japanese to English, 3 options.
pub fn settings(cache: bool, context_lines: usize) -> DaemonSettings {
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
        cache_enabled: cache,
        games: Default::default(),
        websocket_game: None,
        lookahead: None,
    }
}

/// The default gates (the config's defaults, ignore pattern included).
pub fn default_gates() -> Gates {
    let cfg = GateConfig {
        ignore: vec![regex::Regex::new("^https?://").unwrap()],
        ..GateConfig::default()
    };
    Gates::new(cfg).unwrap()
}

/// A running daemon fed through a channel.
pub struct Rig {
    pub tx: mpsc::Sender<ClipEvent>,
    pub commands: mpsc::Sender<DaemonCommand>,
    pub counts: watch::Receiver<DaemonCounts>,
    pub shown: Arc<FakeNotifier>,
    sent: AtomicU64,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<DaemonCounts>>,
    notifier: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// Starts the daemon (and its notifier worker) on the current runtime.
    pub fn start(
        chain: Arc<Chain>,
        gates: Gates,
        settings: DaemonSettings,
        store: Option<Arc<StoreHandle>>,
    ) -> Rig {
        Self::start_on(chain, Arc::new(TokioClock), gates, settings, store, 16)
    }

    pub fn start_on(
        chain: Arc<Chain>,
        clock: Arc<dyn Clock>,
        gates: Gates,
        settings: DaemonSettings,
        store: Option<Arc<StoreHandle>>,
        channel: usize,
    ) -> Rig {
        let (notices_tx, notices_rx) = watch::channel(None);
        let daemon = Daemon::new(chain, clock, gates, settings, notices_tx, store);
        let shown = Arc::new(FakeNotifier::keeping(KEEP_NOTICES));
        let notifier = tokio::spawn(notify_worker(
            shown.clone(),
            notices_rx,
            Duration::from_secs(5),
        ));
        let (tx, rx) = mpsc::channel(channel);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let commands = daemon.commands();
        let counts = daemon.counts();
        let done = tokio::spawn(daemon.run(rx, async move {
            let _ = stop_rx.await;
        }));
        Rig {
            tx,
            commands,
            counts,
            shown,
            sent: AtomicU64::new(0),
            stop: Some(stop),
            done: Some(done),
            notifier,
        }
    }

    /// Copies `text` (an unconcealed X11 read).
    pub async fn copy(&self, text: &str) {
        self.event(ClipEvent::Text {
            text: text.to_string(),
            concealed: Some(false),
        })
        .await;
    }

    pub async fn event(&self, event: ClipEvent) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.tx.send(event).await.unwrap();
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> DaemonCounts {
        self.counts.borrow().clone()
    }

    /// Waits until every event sent so far was taken in and every accepted line has its
    /// outcome (translated, failed, superseded or cached). Tokio time: virtual when paused.
    pub async fn idle(&mut self, timeout: Duration) -> DaemonCounts {
        let sent = self.sent();
        let settled = |c: &DaemonCounts| {
            c.accepted + c.rejected == sent
                && c.accepted == c.translated + c.failed + c.superseded + c.cached
        };
        let wait = async {
            loop {
                {
                    let c = self.counts.borrow_and_update();
                    if settled(&c) {
                        return c.clone();
                    }
                }
                if self.counts.changed().await.is_err() {
                    return self.counts.borrow().clone();
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(c) => c,
            Err(_) => panic!(
                "the daemon did not settle within {timeout:?}: {sent} events sent, counts {:?}",
                self.counts.borrow()
            ),
        }
    }

    /// Waits until a notice whose summary is `summary` was shown (the notifier worker runs
    /// apart from the daemon, so counts settle before the notice arrives).
    pub async fn await_shown(&self, summary: &str, timeout: Duration) {
        let shown = |n: &FakeNotifier| n.notices().iter().any(|x| x.summary == summary);
        let wait = async {
            while !shown(&self.shown) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            panic!(
                "no notice {summary:?} within {timeout:?}; shown: {:?}",
                self.shown
                    .notices()
                    .iter()
                    .map(|n| n.summary.clone())
                    .collect::<Vec<_>>()
            );
        }
    }

    pub async fn status(&self) -> DaemonStatus {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(DaemonCommand::Status(reply))
            .await
            .unwrap();
        rx.await.unwrap()
    }

    /// Stops the daemon; returns its final counts (a panic in it fails the test here).
    pub async fn stop(mut self) -> DaemonCounts {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let counts = self
            .done
            .take()
            .unwrap()
            .await
            .expect("the daemon task panicked");
        self.notifier.abort();
        counts
    }
}
