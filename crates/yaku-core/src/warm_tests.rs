use std::sync::Mutex;

use super::*;
use crate::breaker::{BreakerConfig, State};
use crate::chain::{ChainConfig, ChainEntry};
use crate::clock::{BoxFuture, ManualClock, TokioClock};
use crate::fake::{self, FakeProvider};
use crate::prompt::{Prompt, TranslationRequest};
use crate::provider::{FailureClass, Provider, ProviderFailure};
use crate::ratelimit::RateLimit;

const PROVIDERS: &[&str] = &["gemini", "groq"];

/// One step of a case, at `secs` after the start.
enum Step {
    /// A plan at `secs`: the providers warmed (and marked warmed then), and the next look.
    Plan {
        secs: u64,
        paused: bool,
        warm: &'static [&'static str],
        next: Option<u64>,
    },
    Line(u64),
    Warmed(&'static str, u64),
    Forget,
}
use Step::*;

fn plan(secs: u64, warm: &'static [&'static str], next: Option<u64>) -> Step {
    Plan {
        secs,
        paused: false,
        warm,
        next,
    }
}

fn paused(secs: u64, next: Option<u64>) -> Step {
    Plan {
        secs,
        paused: true,
        warm: &[],
        next,
    }
}

#[test]
fn warm_policy_table() {
    // every 45 s, idle after 1,800 s.
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "start warms every provider at once, then each every 45 s",
            vec![
                plan(0, PROVIDERS, Some(45)),
                plan(10, &[], Some(45)),
                plan(45, PROVIDERS, Some(90)),
            ],
        ),
        (
            "providers warmed at different times: the next look is the earliest due",
            vec![
                Warmed("gemini", 0),
                Warmed("groq", 20),
                plan(30, &[], Some(45)),
                plan(45, &["gemini"], Some(65)),
            ],
        ),
        (
            "while paused nothing is warmed, and the pause is looked at again after 45 s",
            vec![paused(0, Some(45)), paused(45, Some(90))],
        ),
        (
            "a resume counts as a line: warmed at once even after hours",
            vec![
                plan(0, PROVIDERS, Some(45)),
                paused(1000, Some(1045)),
                plan(9000, PROVIDERS, Some(9045)),
            ],
        ),
        (
            "idle past 30 minutes: nothing, and no look until a line",
            vec![
                plan(0, PROVIDERS, Some(45)),
                plan(1790, PROVIDERS, None),
                plan(1800, &[], None),
                plan(9000, &[], None),
            ],
        ),
        (
            "a line keeps the reader active past 30 minutes from the start",
            vec![
                plan(0, PROVIDERS, Some(45)),
                Line(1000),
                plan(2000, PROVIDERS, Some(2045)),
                plan(2780, PROVIDERS, None),
                plan(2800, &[], None),
            ],
        ),
        (
            "a line after an idle spell is not warmed beside (its own request opens the \
             connection), and warming goes on 45 s later",
            vec![
                plan(0, PROVIDERS, Some(45)),
                Line(5000),
                plan(5000, &[], Some(5045)),
                plan(5045, PROVIDERS, Some(5090)),
            ],
        ),
        (
            "a reload forgets every warm: the new connections are warmed at once",
            vec![
                plan(0, PROVIDERS, Some(45)),
                Forget,
                plan(10, PROVIDERS, Some(55)),
            ],
        ),
    ];
    for (name, steps) in cases {
        let clock = ManualClock::new();
        let start = clock.now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut policy = WarmPolicy::new(
            WarmConfig {
                every: Duration::from_secs(45),
                idle_after: Duration::from_secs(1800),
            },
            start,
        );
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Plan {
                    secs,
                    paused,
                    warm,
                    next,
                } => {
                    clock.advance(at(secs).saturating_duration_since(clock.now()));
                    let now = clock.now();
                    let got = policy.plan(now, paused, PROVIDERS);
                    assert_eq!(got.warm, warm, "{name}: step {i} warm");
                    assert_eq!(got.next, next.map(at), "{name}: step {i} next");
                    for n in got.warm {
                        policy.warmed(&n, now);
                    }
                }
                Line(secs) => policy.active(at(secs)),
                Warmed(n, secs) => policy.warmed(n, at(secs)),
                Forget => policy.forget(),
            }
        }
    }
    let cfg = WarmConfig {
        every: Duration::from_secs(45),
        idle_after: Duration::from_secs(1800),
    };
    let mut policy = WarmPolicy::new(cfg, Instant::now());
    assert_eq!(
        policy.plan(Instant::now(), false, &[]),
        WarmPlan {
            warm: Vec::new(),
            next: None
        },
        "no provider: nothing to warm or look at"
    );
}

/// A provider that counts its warms (failing them when told) and its translations.
struct Warmable {
    inner: FakeProvider,
    warms: Mutex<Vec<tokio::time::Instant>>,
    warm_fails: bool,
}

impl Warmable {
    fn new(name: &str, warm_fails: bool) -> Arc<Warmable> {
        Arc::new(Warmable {
            inner: FakeProvider::new(name, vec![], fake::ok("Good morning.")),
            warms: Mutex::new(Vec::new()),
            warm_fails,
        })
    }
    fn warms(&self) -> usize {
        self.warms.lock().unwrap().len()
    }
}

impl Provider for Warmable {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        self.inner.complete(prompt)
    }
    fn warm(&self) -> BoxFuture<'_, Result<(), ProviderFailure>> {
        self.warms.lock().unwrap().push(tokio::time::Instant::now());
        let fails = self.warm_fails;
        Box::pin(async move {
            if fails {
                Err(ProviderFailure::new(
                    FailureClass::Transient,
                    "could not connect",
                ))
            } else {
                Ok(())
            }
        })
    }
}

fn chain_of(providers: &[Arc<Warmable>], rpm: u32) -> Arc<Chain> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let entries = providers
        .iter()
        .map(|p| {
            ChainEntry::new(
                p.clone(),
                BreakerConfig::default(),
                RateLimit::new(rpm, 0, clock.clone()),
                String::new(),
            )
        })
        .collect();
    Arc::new(Chain::new(entries, clock, ChainConfig::default()))
}

struct Rig {
    chains: watch::Sender<Arc<Chain>>,
    counts: watch::Sender<DaemonCounts>,
    paused: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(chain: Arc<Chain>, paused: bool) -> Rig {
    let chains = watch::Sender::new(chain);
    let counts = watch::Sender::new(DaemonCounts::default());
    let paused = Arc::new(AtomicBool::new(paused));
    let task = tokio::spawn(keep_warm(
        Arc::new(TokioClock),
        WarmConfig {
            every: Duration::from_secs(45),
            idle_after: Duration::from_secs(120),
        },
        chains.subscribe(),
        counts.subscribe(),
        paused.clone(),
    ));
    Rig {
        chains,
        counts,
        paused,
        task,
    }
}

fn line(rig: &Rig) {
    rig.counts.send_modify(|c| c.accepted += 1);
}

async fn at(secs: u64, started: tokio::time::Instant) {
    tokio::time::sleep_until(started + Duration::from_secs(secs)).await;
    // Let the task act on what is due at this instant.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn providers_are_warmed_at_start_every_45_s_while_active_and_not_once_idle() {
    let t0 = tokio::time::Instant::now();
    let (a, b) = (Warmable::new("gemini", false), Warmable::new("groq", false));
    let rig = start(chain_of(&[a.clone(), b.clone()], 0), false);
    at(1, t0).await;
    assert_eq!((a.warms(), b.warms()), (1, 1), "both warmed at start");
    at(44, t0).await;
    assert_eq!(a.warms(), 1, "not again before 45 s");
    at(46, t0).await;
    assert_eq!(a.warms(), 2);
    // Idle after 120 s: the warms at 0, 45 and 90 s, none later.
    at(3600, t0).await;
    assert_eq!(
        (a.warms(), b.warms()),
        (3, 3),
        "an idle reader's yaku sends nothing"
    );
    // A line wakes it: no warm beside the line, then every 45 s again.
    line(&rig);
    at(3601, t0).await;
    assert_eq!(a.warms(), 3, "no warm beside the line's own request");
    at(3646, t0).await;
    assert_eq!((a.warms(), b.warms()), (4, 4));
    rig.task.abort();
}

#[tokio::test(start_paused = true)]
async fn nothing_is_warmed_while_paused_and_a_resume_warms_at_once() {
    let t0 = tokio::time::Instant::now();
    let a = Warmable::new("gemini", false);
    let rig = start(chain_of(std::slice::from_ref(&a), 0), true);
    at(7200, t0).await;
    assert_eq!(a.warms(), 0, "paused for two hours: no warm");
    rig.paused.store(false, Ordering::Relaxed);
    at(7200 + 45, t0).await;
    assert_eq!(a.warms(), 1, "warmed within 45 s of the resume");
    rig.task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_reload_warms_the_new_chains_providers_at_once() {
    let t0 = tokio::time::Instant::now();
    let old = Warmable::new("gemini", false);
    let rig = start(chain_of(std::slice::from_ref(&old), 0), false);
    at(10, t0).await;
    let new = Warmable::new("gemini", false);
    rig.chains
        .send_replace(chain_of(std::slice::from_ref(&new), 0));
    at(11, t0).await;
    assert_eq!((old.warms(), new.warms()), (1, 1));
    rig.task.abort();
}

#[tokio::test(start_paused = true)]
async fn failed_warms_never_open_the_breaker_spend_a_request_or_count_as_an_attempt() {
    let t0 = tokio::time::Instant::now();
    let a = Warmable::new("gemini", true);
    // One request a minute: a warm that took the cell would hold the line back.
    let chain = chain_of(std::slice::from_ref(&a), 1);
    let rig = start(chain.clone(), false);
    at(100, t0).await;
    assert_eq!(
        a.warms(),
        3,
        "failed warms at 0, 45 and 90 s (more than open a breaker)"
    );
    let entry = chain.entry("gemini").unwrap();
    assert!(
        matches!(entry.breaker_state(), State::Closed { failures: 0 }),
        "{:?}",
        entry.breaker_state()
    );
    let req = TranslationRequest {
        text: "おはよう".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 1,
        ..Default::default()
    };
    let t = chain.translate(&req, None).await.unwrap();
    assert_eq!(
        t.latency,
        Duration::ZERO,
        "sent at once: the minute's request was not spent"
    );
    assert_eq!(t.attempts.len(), 1, "only the line's request is an attempt");
    assert_eq!(a.inner.calls().len(), 1);
    rig.task.abort();
}
