//! Look-ahead's policy as tables, and the chain's spare try with fake providers in paused time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::breaker::BreakerConfig;
use crate::chain::{Chain, ChainConfig, ChainEntry};
use crate::clock::{Clock, TokioClock};
use crate::fake::{self, FakeProvider, request};
use crate::gates::GateConfig;
use crate::prompt::TranslationRequest;
use crate::provider::FailureClass;
use crate::ratelimit::RateLimit;

fn script(lines: &[&str]) -> Script {
    let raw: Vec<ScriptLine> = lines
        .iter()
        .map(|t| ScriptLine {
            speaker: None,
            text: t.to_string(),
        })
        .collect();
    let mut gates = Gates::new(GateConfig::default()).unwrap();
    Script::new("script.txt", &raw, &mut gates, true)
}

const LINES: [&str; 12] = [
    "おはよう。",
    "今日は晴れだね。",
    "うん。",
    "学校に行こう。",
    "うん。",
    "先生が来た。",
    "授業が始まる。",
    "眠いなあ。",
    "お昼だ！",
    "うん。",
    "帰ろうか。",
    "また明日。",
];

fn settings(lines: usize, share: f64, shares: Vec<DailyShare>) -> LookaheadSettings {
    LookaheadSettings {
        script: Arc::new(script(&LINES)),
        lines,
        daily_share: share,
        shares,
    }
}

#[test]
fn a_copied_line_finds_its_place_and_a_repeat_resolves_after_the_last_match_table() {
    let s = script(&LINES);
    // (copied, previous match, expected position)
    let cases: &[(&str, Option<usize>, Option<usize>)] = &[
        ("おはよう。", None, Some(0)),
        ("学校に行こう。", None, Some(3)),
        ("うん。", None, Some(2)),
        ("うん。", Some(3), Some(4)),
        ("うん。", Some(4), Some(9)),
        ("うん。", Some(9), Some(2)),
        ("おはよう。", Some(5), Some(0)),
        ("先生が来た。", Some(11), Some(5)),
        ("台本にない行。", Some(3), None),
        ("", None, None),
    ];
    for (text, last, want) in cases {
        assert_eq!(s.locate(text, *last), *want, "{text} after {last:?}");
    }
}

#[test]
fn script_lines_are_cleaned_as_copied_lines_and_gated_ones_left_out() {
    let s = script(&[
        "  おはよう。  ",
        "おおおはははよよよううう",
        "https://example.com",
        "abc",
        "……",
        "おはよう。",
    ]);
    let texts: Vec<&str> = s.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        ["おはよう。", "おはよう", "おはよう。"],
        "trimmed, collapsed, gated, repeats kept"
    );
}

#[test]
fn the_next_uncached_lines_go_in_one_batch_and_cached_ones_are_skipped_table() {
    // (position copied, cached texts, expected batch)
    type Case<'a> = (&'a str, &'a [&'a str], Option<&'a [usize]>);
    let cases: &[Case] = &[
        ("おはよう。", &[], Some(&[1, 2, 3, 5, 6])),
        (
            "おはよう。",
            &["今日は晴れだね。", "学校に行こう。"],
            Some(&[2, 5, 6, 7, 8]),
        ),
        (
            "おはよう。",
            &[
                "今日は晴れだね。",
                "うん。",
                "学校に行こう。",
                "授業が始まる。",
            ],
            Some(&[5, 7, 8, 10, 11]),
        ),
        (
            "眠いなあ。",
            &["お昼だ！", "うん。", "帰ろうか。", "また明日。"],
            None,
        ),
        ("また明日。", &[], None),
        ("台本にない行。", &[], None),
    ];
    for (copied, cached, want) in cases {
        let mut la = Lookahead::new(settings(5, 0.5, Vec::new()));
        la.copied(copied, false);
        let got = la.plan(&mut |t| cached.contains(&t));
        assert_eq!(got.as_deref(), *want, "{copied} with {cached:?} cached");
    }
}

#[test]
fn nothing_is_planned_while_a_batch_is_in_flight_nor_again_before_the_next_copy() {
    let mut la = Lookahead::new(settings(2, 0.5, Vec::new()));
    la.copied("おはよう。", false);
    assert_eq!(la.plan(&mut |_| false), Some(vec![1, 2]));
    la.copied("今日は晴れだね。", true);
    assert_eq!(la.plan(&mut |_| false), None, "a batch is in flight");
    assert!(la.status().in_flight);
    la.done(&[1, 2]);
    assert_eq!(
        la.plan(&mut |_| false),
        Some(vec![3, 5]),
        "after the batch: from the new position, うん。 ready at each of its places"
    );
    la.done(&[]);
    assert_eq!(
        la.plan(&mut |_| false),
        None,
        "a failed batch is not sent again before the next copy"
    );
    la.copied("今日は晴れだね。", true);
    assert_eq!(
        la.plan(&mut |_| false),
        Some(vec![3, 5]),
        "the next copy asks for its lines again"
    );
    la.done(&[3, 5]);
    la.copied("今日は晴れだね。", true);
    assert_eq!(la.plan(&mut |_| false), None, "same position, all ready");
    let st = la.status();
    assert_eq!(
        (
            st.position,
            st.lines,
            st.ahead,
            st.ready_ahead,
            st.in_flight
        ),
        (Some(1), 12, 2, 2, false)
    );
}

fn share(provider: &str, per_day: u32, spent: u32, day: SystemTime) -> DailyShare {
    DailyShare {
        provider: provider.into(),
        per_day,
        reset: DailyReset::UtcMidnight,
        spent,
        day: DailyReset::UtcMidnight.day_start(day),
    }
}

#[test]
fn look_ahead_stays_within_its_daily_share_and_off_the_last_request_table() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 3600);
    // (per_day, share, spent, day_remaining, allowed)
    let cases: &[(u32, f64, u32, Option<u32>, bool)] = &[
        (100, 0.5, 0, Some(100), true),
        (100, 0.5, 49, Some(51), true),
        (100, 0.5, 50, Some(50), false),
        (100, 0.0, 0, Some(100), false),
        (100, 1.0, 99, Some(1), false),
        (100, 1.0, 10, Some(2), true),
        (100, 1.0, 10, Some(1), false),
        (100, 1.0, 10, Some(0), false),
        (3, 0.5, 0, Some(3), true),
        (1, 0.5, 0, Some(1), false),
        (0, 0.5, 0, None, true),
    ];
    for &(per_day, s, spent, remaining, want) in cases {
        let mut la = Lookahead::new(settings(5, s, vec![share("gemini", per_day, spent, now)]));
        let a = la.allowance(now);
        assert_eq!(
            a.allows("gemini", remaining),
            want,
            "{per_day}/day, share {s}, {spent} spent, {remaining:?} left"
        );
    }
    let mut la = Lookahead::new(settings(5, 0.5, vec![share("gemini", 10, 4, now)]));
    assert!(la.allowance(now).allows("gemini", Some(10)));
    la.spent("gemini", 1);
    assert!(
        !la.allowance(now).allows("gemini", Some(10)),
        "5 of 10 spent"
    );
    let tomorrow = now + Duration::from_secs(86_400);
    assert!(
        la.allowance(tomorrow).allows("gemini", Some(10)),
        "a new budget day starts a new share"
    );
    assert!(la.allowance(tomorrow).allows("groq", None), "no daily cap");
}

fn batch_reply(n: usize) -> fake::Scripted {
    let entries: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "options": [format!("Line {i}.")] }))
        .collect();
    fake::Scripted {
        latency: Duration::from_millis(200),
        result: Ok(serde_json::json!({ "translations": entries }).to_string()),
    }
}

fn entry(p: &Arc<FakeProvider>, rpm: u32, failures_to_open: u32) -> ChainEntry {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    ChainEntry::new(
        p.clone(),
        BreakerConfig {
            failures_to_open,
            open: Duration::from_secs(30),
            max_open: Duration::from_secs(900),
        },
        RateLimit::new(rpm, 0, clock),
        String::new(),
    )
}

fn chain(entries: Vec<ChainEntry>) -> Chain {
    Chain::with_seed(entries, Arc::new(TokioClock), ChainConfig::default(), 7)
}

fn reqs() -> Vec<TranslationRequest> {
    vec![request("学校に行こう。"), request("先生が来た。")]
}

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_spare_batch_goes_to_the_first_provider_with_a_free_cell_in_one_request() {
    let a = Arc::new(FakeProvider::new("a", vec![], batch_reply(2)));
    let b = Arc::new(FakeProvider::new("b", vec![], batch_reply(2)));
    let c = chain(vec![entry(&a, 1, 3), entry(&b, 0, 3)]);
    let got = c.spare_batch(&reqs(), DEADLINE, &|_| true).await;
    let answered = got.expect("sent").expect("answered");
    assert_eq!(answered.provider, "a");
    assert_eq!(answered.attempts.len(), 1);
    assert!(answered.value.is_ok());
    // a's one cell a minute is spent: the next try goes to b at once, never waits for a.
    let started = Instant::from(tokio::time::Instant::now());
    let got = c.spare_batch(&reqs(), DEADLINE, &|_| true).await;
    assert_eq!(got.expect("sent").expect("answered").provider, "b");
    assert!(
        Instant::from(tokio::time::Instant::now()) - started < Duration::from_secs(1),
        "no wait for a's cell"
    );
    assert_eq!((a.calls().len(), b.calls().len()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn no_spare_cell_no_allowance_or_an_open_or_half_open_breaker_sends_nothing_table() {
    // No free cell: a one-a-minute provider whose cell a live line just took.
    let p = Arc::new(FakeProvider::new("p", vec![], batch_reply(2)));
    let c = chain(vec![entry(&p, 1, 3)]);
    c.translate(&request("おはよう。"), None).await.ok();
    let before = p.calls().len();
    assert!(c.spare_batch(&reqs(), DEADLINE, &|_| true).await.is_none());
    assert_eq!(p.calls().len(), before, "no cell to spare");

    // The allowance (daily share) says no.
    let p = Arc::new(FakeProvider::new("p", vec![], batch_reply(2)));
    let c = chain(vec![entry(&p, 0, 3)]);
    assert!(c.spare_batch(&reqs(), DEADLINE, &|_| false).await.is_none());
    assert!(p.calls().is_empty(), "share used up");

    // Open, then due for its probe: look-ahead never probes.
    let p = Arc::new(FakeProvider::new(
        "p",
        vec![fake::fail(FailureClass::Transient)],
        batch_reply(2),
    ));
    let c = chain(vec![entry(&p, 0, 1)]);
    let _ = c.spare_batch(&reqs(), DEADLINE, &|_| true).await;
    assert_eq!(p.calls().len(), 1);
    assert!(
        c.spare_batch(&reqs(), DEADLINE, &|_| true).await.is_none(),
        "open"
    );
    tokio::time::advance(Duration::from_secs(40)).await;
    assert!(
        c.spare_batch(&reqs(), DEADLINE, &|_| true).await.is_none(),
        "due for a probe: left to a copied line"
    );
    assert_eq!(p.calls().len(), 1, "no probe sent by look-ahead");
    assert!(
        matches!(
            c.entries()[0].breaker_state(),
            crate::breaker::State::Open { .. }
        ),
        "still open, waiting for a live probe"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_spare_batch_is_not_retried_and_no_other_provider_is_asked() {
    let a = Arc::new(FakeProvider::new(
        "a",
        vec![fake::fail(FailureClass::Transient)],
        batch_reply(2),
    ));
    let b = Arc::new(FakeProvider::new("b", vec![], batch_reply(2)));
    let c = chain(vec![entry(&a, 0, 3), entry(&b, 0, 3)]);
    let got = c.spare_batch(&reqs(), DEADLINE, &|_| true).await;
    let failure = got.expect("sent").expect_err("failed");
    assert_eq!(failure.attempts.len(), 1);
    assert_eq!((a.calls().len(), b.calls().len()), (1, 0));
}

#[test]
fn a_batch_is_stored_as_lookahead_rows_with_its_request_counted_once() {
    let store = fake::MemStore::default();
    let items: Vec<AheadItem> = ["学校に行こう。", "先生が来た。"]
        .iter()
        .enumerate()
        .map(|(i, t)| AheadItem {
            index: 3 + i,
            request: request(t),
            key: format!("k{i}"),
            game: None,
        })
        .collect();
    let attempt = AttemptRecord {
        provider: "a".into(),
        outcome: "ok",
        latency_ms: 200,
        opened_breaker: false,
    };
    let reply = Ok(Answered {
        value: Ok(vec![
            Ok(vec!["Let's go to school.".to_string()]),
            Err(
                crate::checks::ReplyChecks::new(&request("先生が来た。"), true)
                    .options(r#"{"options": ["先生が来た。"]}"#, 1)
                    .unwrap_err(),
            ),
        ]),
        provider: "a".into(),
        model: "m".into(),
        skipped: Vec::new(),
        latency: Duration::from_millis(200),
        attempts: vec![attempt.clone()],
    });
    let done = keep(&store, &items, &reply).unwrap();
    assert_eq!(done, [3], "the refused entry stays uncached");
    assert_eq!(
        store.statuses(),
        [("学校に行こう。".to_string(), "translated")]
    );
    assert_eq!(
        store.rows.lock().unwrap()[0].2,
        std::slice::from_ref(&attempt)
    );
    assert!(store.cache.lock().unwrap().contains_key("k0"));

    let failed: Result<Answered<crate::batch::BatchReply>, ChainFailure> = Err(ChainFailure {
        skipped: Vec::new(),
        latency: Duration::from_millis(5),
        attempts: vec![attempt],
    });
    assert_eq!(keep(&store, &items, &failed).unwrap(), Vec::<usize>::new());
    assert_eq!(
        store.statuses()[1].1,
        "failed",
        "its request is still counted"
    );
}
