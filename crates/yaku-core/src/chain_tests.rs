//! The chain with in-memory providers, in tokio's paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::*;
use crate::clock::TokioClock;
use crate::fake::{self, FakeProvider, Scripted};

const S: Duration = Duration::from_secs(1);

fn req() -> TranslationRequest {
    TranslationRequest {
        text: "おはよう".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        instructions: String::new(),
        ..Default::default()
    }
}

fn breaker() -> BreakerConfig {
    BreakerConfig {
        failures_to_open: 3,
        open: 30 * S,
        max_open: 900 * S,
    }
}

fn entry(p: &Arc<FakeProvider>, rpm: u32, rpd: u32) -> ChainEntry {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    ChainEntry::new(
        p.clone(),
        breaker(),
        RateLimit::new(rpm, rpd, clock),
        "check the key".into(),
    )
}

fn chain(entries: Vec<ChainEntry>, deadline: Duration) -> Chain {
    Chain::with_seed(
        entries,
        Arc::new(TokioClock),
        ChainConfig {
            deadline,
            retry_base: Duration::from_millis(500),
            reply_checks: true,
        },
        7,
    )
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[tokio::test(start_paused = true)]
async fn rate_limited_first_provider_falls_through_and_gets_no_request_until_its_wait_ends() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![fake::limited(37)],
        fake::ok("from gemini"),
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("from groq")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    let t0 = now();

    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.provider, "groq");
    assert_eq!(t.options, vec!["from groq"]);
    assert_eq!(t.skipped.len(), 1);
    assert_eq!(t.skipped[0].reason, SkipReason::RateLimited);
    assert_eq!(t.skipped[0].retry_after, Some(37 * S));

    // Lines during the next 37 s go straight to groq.
    for _ in 0..5 {
        tokio::time::sleep(7 * S).await;
        let t = c.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, "groq");
        assert_eq!(t.skipped[0].reason, SkipReason::RateLimited);
    }
    assert_eq!(
        gemini.calls().len(),
        1,
        "no request while the rate limit lasts"
    );
    tokio::time::sleep_until((t0 + 37 * S).into()).await;
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(
        t.provider, "gemini",
        "the first line after the wait probes gemini"
    );
    assert_eq!(gemini.calls().len(), 2);
    assert_eq!(gemini.calls()[1] - t0, 37 * S);
}

#[tokio::test(start_paused = true)]
async fn refusal_falls_through_without_opening_the_breaker() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        fake::fail(FailureClass::Refused),
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("ok")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    for _ in 0..5 {
        let t = c.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, "groq");
        assert_eq!(t.skipped[0].reason, SkipReason::Refused);
    }
    assert_eq!(
        gemini.calls().len(),
        5,
        "a refusal is per line: gemini is still asked every time"
    );
    assert_eq!(
        c.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
}

#[tokio::test(start_paused = true)]
async fn unauthorized_disables_the_provider_for_later_lines() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        fake::fail(FailureClass::Unauthorized),
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("ok")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    for _ in 0..3 {
        let t = c.translate(&req(), None).await.unwrap();
        assert_eq!(t.skipped[0].reason, SkipReason::Unauthorized);
        assert_eq!(t.skipped[0].advice, "check the key");
        tokio::time::sleep(3600 * S).await;
    }
    assert_eq!(gemini.calls().len(), 1);
    assert!(matches!(
        c.entry("gemini").unwrap().breaker_state(),
        State::Disabled { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_once_after_a_backoff_within_the_deadline() {
    let only = Arc::new(FakeProvider::new(
        "gemini",
        vec![fake::fail(FailureClass::Transient)],
        fake::ok("second try"),
    ));
    let c = chain(vec![entry(&only, 0, 0)], 20 * S);
    let t0 = now();
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.options, vec!["second try"]);
    let calls = only.calls();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1] - t0 <= S,
        "full-jitter backoff is at most 2 × 500 ms"
    );

    // Two transient failures: no third attempt on the same line.
    let twice = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        fake::fail(FailureClass::Transient),
    ));
    let c = chain(vec![entry(&twice, 0, 0)], 20 * S);
    let err = c.translate(&req(), None).await.unwrap_err();
    assert_eq!(twice.calls().len(), 2);
    assert_eq!(err.skipped[0].reason, SkipReason::Transient);
}

#[tokio::test(start_paused = true)]
async fn consecutive_transient_failures_open_the_breaker_and_later_lines_skip_it() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        fake::fail(FailureClass::Transient),
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("ok")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    // Line 1: gemini fails, groq answers at once (gemini's retry is not waited for).
    c.translate(&req(), None).await.unwrap();
    assert_eq!(gemini.calls().len(), 1);
    c.translate(&req(), None).await.unwrap();
    c.translate(&req(), None).await.unwrap();
    assert_eq!(gemini.calls().len(), 3);
    let State::Open {
        until,
        cause: OpenCause::Failures,
    } = c.entry("gemini").unwrap().breaker_state()
    else {
        panic!("three transient failures must open the breaker")
    };
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.skipped[0].reason, SkipReason::BreakerOpen);
    assert_eq!(gemini.calls().len(), 3);
    tokio::time::sleep_until(until.into()).await;
    c.translate(&req(), None).await.unwrap();
    assert_eq!(
        gemini.calls().len(),
        4,
        "one probe when the open period ends"
    );
}

#[tokio::test(start_paused = true)]
async fn all_providers_down_reports_each_reason_in_order() {
    let gemini = Arc::new(FakeProvider::new("gemini", vec![], fake::limited(37)));
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![],
        fake::fail(FailureClass::Unauthorized),
    ));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let nokey = ChainEntry::unusable(
        "local",
        Skipped {
            provider: "local".into(),
            reason: SkipReason::NoKey,
            retry_after: None,
            daily: false,
            detail: "no API key".into(),
            advice: "set LOCAL_KEY".into(),
        },
        RateLimit::new(0, 0, clock),
    );
    let c = chain(
        vec![entry(&gemini, 0, 0), entry(&groq, 0, 0), nokey],
        20 * S,
    );
    let err = c.translate(&req(), None).await.unwrap_err();
    let reasons: Vec<(&str, SkipReason)> = err
        .skipped
        .iter()
        .map(|s| (s.provider.as_str(), s.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("gemini", SkipReason::RateLimited),
            ("groq", SkipReason::Unauthorized),
            ("local", SkipReason::NoKey)
        ]
    );
    assert_eq!(err.skipped[0].summary(), "rate limited for 37 s");
    assert!(
        err.latency < S,
        "a 37 s wait past the 20 s deadline is not waited for"
    );
}

#[tokio::test(start_paused = true)]
async fn no_capacity_anywhere_waits_for_the_earliest_provider_within_the_deadline() {
    // 6 rpm = one request every 10 s; 12 rpm = one every 5 s.
    let gemini = Arc::new(FakeProvider::new("gemini", vec![], fake::ok("gemini")));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("groq")));
    let c = chain(vec![entry(&gemini, 6, 0), entry(&groq, 12, 0)], 20 * S);
    let t0 = now();
    assert_eq!(c.translate(&req(), None).await.unwrap().provider, "gemini");
    let second = c.translate(&req(), None).await.unwrap();
    assert_eq!(
        second.provider, "groq",
        "gemini has no capacity: skipped, not slept on"
    );
    assert_eq!(second.skipped[0].reason, SkipReason::NoCapacity);
    assert_eq!(now() - t0, Duration::ZERO);
    let third = c.translate(&req(), None).await.unwrap();
    assert_eq!(
        third.provider, "groq",
        "groq frees up at 5 s, before gemini at 10 s"
    );
    assert_eq!(now() - t0, 5 * S);
    assert_eq!(third.latency, 5 * S);
}

#[tokio::test(start_paused = true)]
async fn capacity_free_only_after_the_deadline_fails_without_waiting() {
    let gemini = Arc::new(FakeProvider::new("gemini", vec![], fake::ok("gemini")));
    let c = chain(vec![entry(&gemini, 1, 0)], 20 * S); // one request a minute
    c.translate(&req(), None).await.unwrap();
    let t0 = now();
    let err = c.translate(&req(), None).await.unwrap_err();
    assert_eq!(err.skipped[0].reason, SkipReason::NoCapacity);
    assert_eq!(err.skipped[0].retry_after, Some(60 * S));
    assert_eq!(now(), t0, "no sleep when the wait would pass the deadline");
    assert_eq!(gemini.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_provider_cannot_hold_the_line_past_its_deadline() {
    let hung = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        Scripted {
            latency: 3600 * S,
            result: Ok("{\"options\": [\"late\"]}".into()),
        },
    ));
    let c = chain(vec![entry(&hung, 0, 0)], 20 * S);
    let t0 = now();
    let err = c.translate(&req(), None).await.unwrap_err();
    assert_eq!(now() - t0, 20 * S);
    assert_eq!(err.skipped[0].reason, SkipReason::Transient);
    assert_eq!(hung.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_the_named_provider_is_used() {
    let gemini = Arc::new(FakeProvider::new("gemini", vec![], fake::ok("gemini")));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("groq")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    let t = c.translate(&req(), Some("groq")).await.unwrap();
    assert_eq!(t.provider, "groq");
    assert!(t.skipped.is_empty());
    assert!(gemini.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unusable_reply_is_a_refusal_and_falls_through() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        Scripted {
            latency: Duration::ZERO,
            result: Ok("{\"options\": []}".into()),
        },
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("groq")));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.provider, "groq");
    assert_eq!(t.skipped[0].reason, SkipReason::Refused);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_does_not_leave_the_breaker_half_open() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![
            fake::limited(5),
            Scripted {
                latency: 3600 * S,
                result: Ok("{\"options\":[\"x\"]}".into()),
            },
        ],
        fake::ok("gemini"),
    ));
    let c = chain(vec![entry(&gemini, 0, 0)], 20 * S);
    c.translate(&req(), None).await.unwrap_err();
    tokio::time::sleep(5 * S).await;
    // The probe hangs; the line is dropped (as on shutdown) before it answers.
    let _ = tokio::time::timeout(S, c.translate(&req(), None)).await;
    assert!(matches!(
        c.entry("gemini").unwrap().breaker_state(),
        State::Open { .. }
    ));
    assert_eq!(c.translate(&req(), None).await.unwrap().provider, "gemini");
}

// ------------------------------------------------------------------ properties

/// A provider that checks, at each call, what the chain's breaker says about it.
struct Monitored {
    inner: FakeProvider,
    chain: Arc<OnceLock<Arc<Chain>>>,
    probes_in_flight: AtomicUsize,
    violations: std::sync::Mutex<Vec<String>>,
}

impl Provider for Monitored {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        "fake"
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> crate::clock::BoxFuture<'a, Result<String, ProviderFailure>> {
        let state = self
            .chain
            .get()
            .and_then(|c| c.entry(self.name()).map(|e| e.breaker_state()));
        let is_probe = matches!(state, Some(State::HalfOpen));
        match &state {
            Some(State::Open { .. }) | Some(State::Disabled { .. }) => self
                .violations
                .lock()
                .unwrap()
                .push(format!("request while {state:?}")),
            _ => {}
        }
        if is_probe && self.probes_in_flight.fetch_add(1, Ordering::SeqCst) > 0 {
            self.violations
                .lock()
                .unwrap()
                .push("two probes in flight".into());
        }
        let fut = self.inner.complete(prompt);
        Box::pin(async move {
            let guard = ProbeCount {
                count: &self.probes_in_flight,
                active: is_probe,
            };
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

struct ProbeCount<'a> {
    count: &'a AtomicUsize,
    active: bool,
}

impl Drop for ProbeCount<'_> {
    fn drop(&mut self) {
        if self.active {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn scripted(kind: u8, latency_ms: u64) -> Scripted {
    let mut s = match kind % 8 {
        0..=2 => fake::ok("fine"),
        3 => fake::limited(u64::from(kind % 40)),
        4 | 5 => fake::fail(FailureClass::Transient),
        6 => fake::fail(FailureClass::Refused),
        _ => fake::fail(FailureClass::BadRequest),
    };
    s.latency = Duration::from_millis(latency_ms);
    s
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    #[test]
    fn never_a_request_while_open_never_two_probes_never_past_the_deadline(
        scripts in proptest::collection::vec(
            proptest::collection::vec((proptest::prelude::any::<u8>(), 0u64..30_000), 1..40), 2..=3),
        starts in proptest::collection::vec(0u64..120_000, 1..30),
        unauthorized_at in proptest::option::of(0usize..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let cell: Arc<OnceLock<Arc<Chain>>> = Arc::new(OnceLock::new());
            let mut monitors = Vec::new();
            let mut entries = Vec::new();
            for (i, script) in scripts.iter().enumerate() {
                let mut steps: Vec<Scripted> = script.iter().map(|(k, l)| scripted(*k, *l)).collect();
                if let (0, Some(at)) = (i, unauthorized_at)
                    && at < steps.len() { steps[at] = fake::fail(FailureClass::Unauthorized); }
                let m = Arc::new(Monitored {
                    inner: FakeProvider::new(&format!("p{i}"), steps, fake::ok("fine")),
                    chain: cell.clone(),
                    probes_in_flight: AtomicUsize::new(0),
                    violations: std::sync::Mutex::new(Vec::new()),
                });
                let clock: Arc<dyn Clock> = Arc::new(TokioClock);
                entries.push(ChainEntry::new(m.clone(), BreakerConfig { failures_to_open: 2, open: 5 * S, max_open: 40 * S }, RateLimit::new(30, 0, clock), String::new()));
                monitors.push(m);
            }
            let deadline = 20 * S;
            let c = Arc::new(chain(entries, deadline));
            let _ = cell.set(c.clone());
            let t0 = now();
            let mut lines = Vec::new();
            for start in starts {
                let c = c.clone();
                lines.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(start)).await;
                    let begun = now();
                    let r = c.translate(&req(), None).await;
                    (now() - begun, r.is_ok())
                }));
            }
            for l in lines {
                let (took, _) = l.await.unwrap();
                proptest::prop_assert!(took <= deadline, "a line took {took:?}");
            }
            for m in &monitors {
                let v = m.violations.lock().unwrap();
                proptest::prop_assert!(v.is_empty(), "{}: {:?}", m.name(), *v);
            }
            let _ = t0;
            Ok(())
        })?;
    }
}

#[test]
fn rate_limit_never_allows_more_than_rpm_in_any_minute_window() {
    let clock = crate::clock::ManualClock::new();
    let limit = RateLimit::new(10, 0, Arc::new(clock.clone()));
    let start = clock.now();
    let mut sent = Vec::new();
    // Ask every 100 ms for ten minutes.
    for _ in 0..6000 {
        if limit.try_acquire().is_ok() {
            sent.push(clock.now() - start);
        }
        clock.advance(Duration::from_millis(100));
    }
    assert_eq!(sent.len(), 100, "10 a minute for 10 minutes");
    for (i, t) in sent.iter().enumerate() {
        let in_window = sent[i..].iter().take_while(|u| **u < *t + 60 * S).count();
        assert!(
            in_window <= 10,
            "{in_window} requests in the minute from {t:?}"
        );
    }
}

#[test]
fn rate_limit_says_when_the_next_request_is_free_and_honours_the_daily_cap() {
    let clock = crate::clock::ManualClock::new();
    let limit = RateLimit::new(30, 3, Arc::new(clock.clone()));
    let t0 = clock.now();
    assert_eq!(limit.day_remaining(), Some(3));
    assert!(limit.try_acquire().is_ok());
    assert_eq!(limit.try_acquire(), Err(t0 + 2 * S));
    clock.advance(2 * S);
    assert!(limit.try_acquire().is_ok());
    clock.advance(2 * S);
    assert!(limit.try_acquire().is_ok());
    clock.advance(2 * S);
    assert_eq!(limit.day_remaining(), Some(0));
    let Err(free) = limit.try_acquire() else {
        panic!("the fourth request of the day must wait")
    };
    assert_eq!(
        free - t0,
        Duration::from_secs(86_400 / 3),
        "one day-cell refills every 8 h"
    );
}

#[tokio::test(start_paused = true)]
async fn every_request_is_recorded_with_its_outcome_latency_and_breaker_effect() {
    let mut slow = fake::ok("late answer");
    slow.latency = 2 * S;
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![fake::limited(30)],
        fake::ok("x"),
    ));
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![fake::fail(FailureClass::Transient), slow],
        fake::ok("y"),
    ));
    let c = chain(vec![entry(&gemini, 0, 0), entry(&groq, 0, 0)], 20 * S);
    let t = c.translate(&req(), None).await.unwrap();
    let got: Vec<(&str, &str, u64, bool)> = t
        .attempts
        .iter()
        .map(|a| {
            (
                a.provider.as_str(),
                a.outcome,
                a.latency_ms,
                a.opened_breaker,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("gemini", "rate_limited", 0, true),
            ("groq", "transient", 0, false),
            ("groq", "ok", 2000, false)
        ]
    );
}

#[test]
fn the_daily_budget_refills_one_request_every_day_over_rpd() {
    let clock = crate::clock::ManualClock::new();
    let limit = RateLimit::new(0, 4, Arc::new(clock.clone()));
    for left in [3, 2, 1, 0] {
        assert!(limit.try_acquire().is_ok());
        assert_eq!(limit.day_remaining(), Some(left));
    }
    clock.advance(Duration::from_secs(6 * 3600)); // a quarter of a day: one back
    assert_eq!(limit.day_remaining(), Some(1));
    clock.advance(Duration::from_secs(48 * 3600));
    assert_eq!(limit.day_remaining(), Some(4));
    assert_eq!(RateLimit::new(10, 0, Arc::new(clock)).day_remaining(), None);
}

// tokio's paused time and a ManualClock, which differ on purpose: the line's deadline is the
// Clock's, so a request is cut off when the ManualClock reaches it, however long it takes in
// tokio's time, and not before.
#[tokio::test(start_paused = true)]
async fn the_request_deadline_is_kept_in_the_clocks_time() {
    let clock = crate::clock::ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let slow = |secs| Scripted {
        latency: secs * S,
        result: Ok("{\"options\": [\"late\"]}".into()),
    };
    let provider = Arc::new(FakeProvider::new("gemini", vec![slow(30)], slow(3600)));
    let entry = ChainEntry::new(
        provider.clone(),
        breaker(),
        RateLimit::new(0, 0, shared.clone()),
        String::new(),
    );
    let c = Chain::with_seed(
        vec![entry],
        shared,
        ChainConfig {
            deadline: 20 * S,
            retry_base: Duration::from_millis(500),
            reply_checks: true,
        },
        7,
    );

    // 30 s of tokio's time, none of the Clock's: answered.
    let t0 = clock.now();
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.options, ["late"]);
    assert_eq!(clock.now(), t0);

    // The Clock moves 20 s while the request hangs: cut off then, with no tokio time passing.
    let tokio_start = now();
    let request = req();
    let (result, ()) = tokio::join!(c.translate(&request, None), async {
        while provider.calls().len() < 2 {
            tokio::task::yield_now().await;
        }
        clock.advance(20 * S);
    });
    let err = result.unwrap_err();
    assert_eq!(now(), tokio_start);
    assert_eq!(err.latency, 20 * S);
    assert_eq!(err.skipped[0].reason, SkipReason::Transient);
    assert_eq!(
        err.skipped[0].detail,
        "no answer before the line's deadline"
    );
    assert_eq!(err.attempts[0].latency_ms, 20_000);
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_an_unchanged_providers_breaker_and_budget_and_a_changed_one_starts_fresh() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        fake::fail(FailureClass::Unauthorized),
    ));
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("ok")));
    let old = chain(
        vec![
            entry(&gemini, 0, 0).with_settings_id(1),
            entry(&groq, 0, 10).with_settings_id(2),
        ],
        20 * S,
    );
    old.translate(&req(), None).await.unwrap();
    assert!(matches!(
        old.entry("gemini").unwrap().breaker_state(),
        State::Disabled { .. }
    ));
    assert_eq!(old.entry("groq").unwrap().day_remaining(), Some(9));

    let same = chain(
        vec![
            entry(&gemini, 0, 0).with_settings_id(1),
            entry(&groq, 0, 10).with_settings_id(2),
        ],
        20 * S,
    );
    assert_eq!(same.keep_state_of(&old), ["gemini", "groq"]);
    assert!(matches!(
        same.entry("gemini").unwrap().breaker_state(),
        State::Disabled { .. }
    ));
    assert_eq!(same.entry("groq").unwrap().day_remaining(), Some(9));

    // Changed settings (a new key, say), or none known: fresh state.
    let changed = chain(
        vec![
            entry(&gemini, 0, 0).with_settings_id(3),
            entry(&groq, 0, 10),
        ],
        20 * S,
    );
    assert!(changed.keep_state_of(&same).is_empty());
    assert_eq!(
        changed.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
    assert_eq!(changed.entry("groq").unwrap().day_remaining(), Some(10));
}

#[tokio::test(start_paused = true)]
async fn requests_made_before_the_start_are_taken_from_the_daily_budget() {
    let groq = Arc::new(FakeProvider::new("groq", vec![], fake::ok("ok")));
    let c = chain(vec![entry(&groq, 0, 10)], 20 * S);
    c.entry("groq").unwrap().spend_day(3);
    assert_eq!(c.entry("groq").unwrap().day_remaining(), Some(7));
    c.entry("groq").unwrap().spend_day(50);
    assert_eq!(c.entry("groq").unwrap().day_remaining(), Some(0));
    let f = c.translate(&req(), None).await.unwrap_err();
    assert_eq!(
        groq.calls().len(),
        0,
        "the spent budget sends nothing: {f:?}"
    );
}

fn after(ms: u64, result: Scripted) -> Scripted {
    Scripted {
        latency: Duration::from_millis(ms),
        ..result
    }
}

/// One hedging case: gemini (hedged after `hedge_ms`, 0 = off) answers `primary`, groq
/// (with `groq_rpd` requests a day, 0 = no cap) answers `fallback`.
struct HedgeCase {
    name: &'static str,
    hedge_ms: u64,
    deadline: Duration,
    groq_rpd: u32,
    primary: Scripted,
    fallback: Scripted,
    /// The provider whose answer is shown, or None when the line fails.
    shown: Option<&'static str>,
    /// Requests each provider got.
    calls: (usize, usize),
    /// The attempt rows, in the order sent: (provider, outcome, latency in ms).
    attempts: &'static [(&'static str, &'static str, u64)],
    /// When the line was done, after it began.
    latency_ms: u64,
}

#[tokio::test(start_paused = true)]
async fn a_hedge_asks_the_next_provider_once_the_first_is_late_and_the_first_usable_answer_wins() {
    let ok = fake::ok;
    let fail = fake::fail;
    let cases = [
        HedgeCase {
            name: "slow primary, fast fallback: the fallback's answer, the primary cancelled",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(3000, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: Some("groq"),
            calls: (1, 1),
            attempts: &[("gemini", "cancelled", 600), ("groq", "ok", 100)],
            latency_ms: 600,
        },
        HedgeCase {
            name: "hedging off: only the primary is asked",
            hedge_ms: 0,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(3000, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: Some("gemini"),
            calls: (1, 0),
            attempts: &[("gemini", "ok", 3000)],
            latency_ms: 3000,
        },
        HedgeCase {
            name: "the primary answers before the hedge time: no hedge",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(400, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: Some("gemini"),
            calls: (1, 0),
            attempts: &[("gemini", "ok", 400)],
            latency_ms: 400,
        },
        HedgeCase {
            name: "the primary answers first after all: the hedge is cancelled",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(700, ok("gemini")),
            fallback: after(1000, ok("groq")),
            shown: Some("gemini"),
            calls: (1, 1),
            attempts: &[("gemini", "ok", 700), ("groq", "cancelled", 200)],
            latency_ms: 700,
        },
        HedgeCase {
            name: "the primary fails while the hedge runs: the hedge's answer, no retry",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(800, fail(FailureClass::Transient)),
            fallback: after(1000, ok("groq")),
            shown: Some("groq"),
            calls: (1, 1),
            attempts: &[("gemini", "transient", 800), ("groq", "ok", 1000)],
            latency_ms: 1500,
        },
        HedgeCase {
            name: "the hedge's reply fails the checks: the primary's answer",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 0,
            primary: after(3000, ok("gemini")),
            fallback: after(100, fake::fail(FailureClass::Refused)),
            shown: Some("gemini"),
            calls: (1, 1),
            attempts: &[("gemini", "ok", 3000), ("groq", "refused", 100)],
            latency_ms: 3000,
        },
        HedgeCase {
            name: "the hedge time is the deadline: never hedged past it",
            hedge_ms: 2000,
            deadline: 2 * S,
            groq_rpd: 0,
            primary: after(3000, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: None,
            calls: (1, 0),
            attempts: &[("gemini", "transient", 2000)],
            latency_ms: 2000,
        },
        HedgeCase {
            name: "the fallback's day budget has one request left: kept for the next line",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 1,
            primary: after(3000, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: Some("gemini"),
            calls: (1, 0),
            attempts: &[("gemini", "ok", 3000)],
            latency_ms: 3000,
        },
        HedgeCase {
            name: "two left in the fallback's day budget: one may be spent on a hedge",
            hedge_ms: 500,
            deadline: 20 * S,
            groq_rpd: 2,
            primary: after(3000, ok("gemini")),
            fallback: after(100, ok("groq")),
            shown: Some("groq"),
            calls: (1, 1),
            attempts: &[("gemini", "cancelled", 600), ("groq", "ok", 100)],
            latency_ms: 600,
        },
    ];
    for case in cases {
        let gemini = Arc::new(FakeProvider::new("gemini", vec![], case.primary));
        let groq = Arc::new(FakeProvider::new("groq", vec![], case.fallback));
        let c = chain(
            vec![
                entry(&gemini, 0, 0).with_hedge_after(Duration::from_millis(case.hedge_ms)),
                entry(&groq, 0, case.groq_rpd),
            ],
            case.deadline,
        );
        let t0 = now();
        let result = c.translate(&req(), None).await;
        let name = case.name;
        let (shown, attempts, latency) = match &result {
            Ok(t) => (Some(t.provider.as_str()), &t.attempts, t.latency),
            Err(f) => (None, &f.attempts, f.latency),
        };
        assert_eq!(shown, case.shown, "{name}: {result:?}");
        assert_eq!(
            (gemini.calls().len(), groq.calls().len()),
            case.calls,
            "{name}"
        );
        let rows: Vec<(&str, &str, u64)> = attempts
            .iter()
            .map(|a| (a.provider.as_str(), a.outcome, a.latency_ms))
            .collect();
        assert_eq!(rows, case.attempts, "{name}");
        assert_eq!(latency, Duration::from_millis(case.latency_ms), "{name}");
        assert_eq!(
            now() - t0,
            latency,
            "{name}: the line ends when it is decided"
        );
        if let Some(hedged) = groq.calls().first() {
            assert_eq!(*hedged - t0, Duration::from_millis(case.hedge_ms), "{name}");
        }
        if let Ok(t) = &result {
            assert!(t.skipped.iter().all(|s| s.provider != t.provider), "{name}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_never_counts_against_the_breaker() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        after(3000, fake::ok("gemini")),
    ));
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![],
        after(100, fake::ok("groq")),
    ));
    let c = chain(
        vec![
            entry(&gemini, 0, 0).with_hedge_after(Duration::from_millis(500)),
            entry(&groq, 0, 0),
        ],
        20 * S,
    );
    // More cancellations than `failures_to_open`: the breaker stays closed, not one failure.
    for _ in 0..5 {
        let t = c.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, "groq");
        assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    }
    assert_eq!(
        c.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
    assert_eq!(gemini.calls().len(), 5, "the primary is still asked first");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_goes_to_a_provider_whose_breaker_is_not_closed() {
    // groq's first request is a 429 (open for 10 s); then it is fast.
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![fake::limited(10)],
        after(100, fake::ok("groq")),
    ));
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![after(1, fake::fail(FailureClass::Refused))],
        after(3000, fake::ok("gemini")),
    ));
    let c = chain(
        vec![
            entry(&gemini, 0, 0).with_hedge_after(Duration::from_millis(500)),
            entry(&groq, 0, 0),
        ],
        20 * S,
    );
    // Line 1: gemini refuses, groq is asked and opens.
    c.translate(&req(), None).await.unwrap_err();
    assert!(matches!(
        c.entry("groq").unwrap().breaker_state(),
        State::Open { .. }
    ));
    // Line 2, groq open: no hedge; gemini's slow answer.
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!((t.provider.as_str(), groq.calls().len()), ("gemini", 1));
    // Line 3, groq's open period over: its single probe is not spent on a hedge either.
    tokio::time::sleep(10 * S).await;
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!((t.provider.as_str(), groq.calls().len()), ("gemini", 1));
}

#[tokio::test(start_paused = true)]
async fn a_primary_probe_cancelled_by_a_winning_hedge_leaves_its_breaker_ready_to_probe() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![fake::limited(5), after(3000, fake::ok("late"))],
        fake::ok("gemini"),
    ));
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![],
        after(100, fake::ok("groq")),
    ));
    let c = chain(
        vec![
            entry(&gemini, 0, 0).with_hedge_after(Duration::from_millis(500)),
            entry(&groq, 0, 0),
        ],
        20 * S,
    );
    c.translate(&req(), None).await.unwrap(); // gemini 429, groq answers
    tokio::time::sleep(5 * S).await;
    let t = c.translate(&req(), None).await.unwrap(); // gemini's probe is slow: hedged
    assert_eq!(t.provider, "groq");
    assert!(matches!(
        c.entry("gemini").unwrap().breaker_state(),
        State::Open { .. }
    ));
    let t = c.translate(&req(), None).await.unwrap();
    assert_eq!(t.provider, "gemini", "the next line probes gemini at once");
}

#[tokio::test(start_paused = true)]
async fn a_prefetch_batch_is_never_hedged() {
    let gemini = Arc::new(FakeProvider::new(
        "gemini",
        vec![],
        after(3000, fake::ok("gemini")),
    ));
    let groq = Arc::new(FakeProvider::new(
        "groq",
        vec![],
        after(100, fake::ok("groq")),
    ));
    let c = chain(
        vec![
            entry(&gemini, 0, 0).with_hedge_after(Duration::from_millis(500)),
            entry(&groq, 0, 0),
        ],
        20 * S,
    );
    let a = c.translate_batch(&[req(), req()], None).await.unwrap();
    assert_eq!(a.provider, "gemini");
    assert_eq!((gemini.calls().len(), groq.calls().len()), (1, 0));
}
