use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::breaker::BreakerConfig;
use crate::chain::{ChainConfig, ChainEntry};
use crate::clock::{BoxFuture, Clock, ManualClock};
use crate::fake::MemStore;
use crate::gates::GateConfig;
use crate::prompt::Prompt;
use crate::provider::{Budget, Provider, ProviderFailure, Reply};
use crate::ratelimit::RateLimit;

/// How the batch provider misbehaves on a reply with more than one line.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    DropLast,
    Extra,
    SwapAndDrop,
    Plain,
}

/// Answers by reading the request: `EN(line)` for each line, in order (or a fault).
struct Reader {
    fault: Fault,
    /// Reports a spent request budget for the first `spent` replies.
    spent: Mutex<u32>,
    /// Answers the first `limited` requests with a 429 asking for 10 s.
    limited: Mutex<u32>,
    calls: Mutex<Vec<(Instant, usize)>>,
    clock: Arc<dyn Clock>,
}

impl Reader {
    fn new(fault: Fault, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            fault,
            spent: Mutex::new(0),
            limited: Mutex::new(0),
            calls: Mutex::new(Vec::new()),
            clock,
        })
    }
    fn sizes(&self) -> Vec<usize> {
        self.calls.lock().unwrap().iter().map(|c| c.1).collect()
    }
}

/// The fake translation of a line: its bytes in hex, so each line's is its own.
fn en(line: &str) -> String {
    let hex: String = line.bytes().map(|b| format!("{b:02x}")).collect();
    format!("Line {hex}")
}

fn lines_of(prompt: &Prompt) -> Vec<String> {
    let json = prompt.user.lines().skip(1).collect::<Vec<_>>().join("\n");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    match v.get("lines") {
        Some(l) => l
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        None => vec![v["line"].as_str().unwrap().to_string()],
    }
}

impl Provider for Reader {
    fn name(&self) -> &str {
        "reader"
    }
    fn model(&self) -> &str {
        "m"
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        Box::pin(async move { self.complete_reply(prompt).await.map(|r| r.text) })
    }
    fn complete_reply<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<Reply, ProviderFailure>> {
        Box::pin(async move {
            let lines = lines_of(prompt);
            self.calls
                .lock()
                .unwrap()
                .push((self.clock.now(), lines.len()));
            {
                let mut limited = self.limited.lock().unwrap();
                if *limited > 0 {
                    *limited -= 1;
                    return Err(ProviderFailure::rate_limited(
                        Some(Duration::from_secs(10)),
                        crate::provider::QuotaScope::Short,
                        "429",
                    ));
                }
            }
            let en: Vec<String> = lines.iter().map(|l| en(l)).collect();
            let text = if !prompt.user.contains("\"lines\"") {
                serde_json::json!({ "options": [en[0]] }).to_string()
            } else {
                let mut en = en;
                match self.fault {
                    Fault::None => {}
                    Fault::DropLast => {
                        en.pop();
                    }
                    Fault::Extra => en.push("Extra line".into()),
                    Fault::SwapAndDrop => {
                        en.swap(0, 1);
                        en.pop();
                    }
                    Fault::Plain => {
                        return Ok(Reply::text(en.join("\n")));
                    }
                }
                let entries: Vec<_> = en
                    .iter()
                    .map(|t| serde_json::json!({ "options": [t] }))
                    .collect();
                serde_json::json!({ "translations": entries }).to_string()
            };
            let mut spent = self.spent.lock().unwrap();
            let budget = if *spent > 0 {
                *spent -= 1;
                Budget {
                    requests_remaining: Some(0),
                    requests_reset: Some(Duration::from_secs(30)),
                    ..Budget::default()
                }
            } else {
                Budget::default()
            };
            Ok(Reply { text, budget })
        })
    }
}

fn template() -> Template {
    Template {
        request: TranslationRequest {
            source_language: "Japanese".into(),
            target_language: "English".into(),
            options: 1,
            ..Default::default()
        },
        context_lines: 3,
        glossary: Glossary::default(),
        collapse: false,
    }
}

fn script(n: usize) -> Vec<ScriptLine> {
    (0..n)
        .map(|i| ScriptLine {
            speaker: None,
            text: format!("{i}番目の台詞です"),
        })
        .collect()
}

fn gates() -> Gates {
    Gates::new(GateConfig::default()).unwrap()
}

struct Rig {
    clock: Arc<ManualClock>,
    reader: Arc<Reader>,
    chain: Chain,
    store: MemStore,
}

fn rig(fault: Fault, limit: impl FnOnce(Arc<dyn Clock>) -> RateLimit) -> Rig {
    let clock = Arc::new(ManualClock::new());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let reader = Reader::new(fault, dyn_clock.clone());
    let entry = ChainEntry::new(
        reader.clone(),
        BreakerConfig::default(),
        limit(dyn_clock.clone()),
        String::new(),
    );
    let chain = Chain::with_seed(vec![entry], dyn_clock, ChainConfig::default(), 7);
    Rig {
        clock,
        reader,
        chain,
        store: MemStore::default(),
    }
}

fn limits(batch: usize) -> RunLimits {
    RunLimits {
        batch,
        max_requests: None,
        max_failures: 3,
        max_wait: Duration::from_secs(3600),
    }
}

async fn go(r: &Rig, items: &[Item], batch: usize) -> Summary {
    run(
        &r.chain,
        r.clock.as_ref(),
        &r.store,
        items,
        None,
        limits(batch),
        &mut |_| {},
    )
    .await
}

/// Every item's cache entry holds its own line's translation.
fn assert_aligned(r: &Rig, items: &[Item]) {
    let cache = r.store.cache.lock().unwrap();
    for item in items {
        let answer = cache
            .get(&item.key)
            .unwrap_or_else(|| panic!("{} not cached", item.request.text));
        assert_eq!(answer.options, [en(&item.request.text)]);
    }
}

#[tokio::test]
async fn hundred_lines_in_batches_of_ten_take_ten_requests_each_line_under_its_own_key() {
    let r = rig(Fault::None, |c| RateLimit::new(0, 0, c));
    let items = prepare(&script(100), &mut gates(), &template()).items;
    let s = go(&r, &items, 10).await;
    assert_eq!(r.reader.sizes(), vec![10; 10]);
    assert_eq!(
        (s.translated, s.failed, s.requests, s.splits),
        (100, 0, 10, 0)
    );
    assert_aligned(&r, &items);
    assert_eq!(r.store.statuses().len(), 100, "a history row per line");
}

#[tokio::test]
async fn mismatched_batch_replies_are_split_and_retried_never_misaligned() {
    for fault in [
        Fault::DropLast,
        Fault::Extra,
        Fault::SwapAndDrop,
        Fault::Plain,
    ] {
        let r = rig(fault, |c| RateLimit::new(0, 0, c));
        let items = prepare(&script(8), &mut gates(), &template()).items;
        let s = go(&r, &items, 4).await;
        assert_eq!(s.translated, 8);
        assert_aligned(&r, &items);
        // Every multi-line reply is wrong, so each batch halves down to single lines.
        assert_eq!(r.reader.sizes(), [4, 2, 1, 1, 2, 1, 1, 4, 2, 1, 1, 2, 1, 1]);
        assert_eq!(s.splits, 6);
    }
}

#[tokio::test]
async fn a_second_run_asks_only_for_lines_not_cached_yet() {
    let r = rig(Fault::None, |c| RateLimit::new(0, 0, c));
    let items = prepare(&script(30), &mut gates(), &template()).items;
    let first = RunLimits {
        max_requests: Some(2),
        ..limits(10)
    };
    let s = run(
        &r.chain,
        r.clock.as_ref(),
        &r.store,
        &items,
        None,
        first,
        &mut |_| {},
    )
    .await;
    assert_eq!((s.translated, s.stopped), (20, Some(Stopped::Limit)));
    let s = go(&r, &items, 10).await;
    assert_eq!((s.cached, s.todo, s.translated), (20, 10, 10));
    assert_eq!(r.reader.sizes(), [10, 10, 10], "no line sent twice");
    assert_aligned(&r, &items);
}

#[tokio::test]
async fn requests_are_paced_at_the_requests_per_minute_on_the_clock() {
    let r = rig(Fault::None, |c| RateLimit::new(2, 0, c));
    let items = prepare(&script(50), &mut gates(), &template()).items;
    let start = r.clock.now();
    let s = go(&r, &items, 10).await;
    assert_eq!(s.translated, 50);
    let at: Vec<u64> = r
        .reader
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.duration_since(start).as_secs())
        .collect();
    assert_eq!(
        at,
        [0, 30, 60, 90, 120],
        "one request every 30 s at 2 per minute"
    );
}

#[tokio::test]
async fn tokens_per_minute_spaces_requests_by_their_estimated_size() {
    let items = prepare(&script(40), &mut gates(), &template()).items;
    let cost = build_batch_cost(&items[0..10]);
    // A budget of about three batches a minute.
    let tpm = cost * 3;
    let r = rig(Fault::None, |c| {
        RateLimit::new(0, 0, c).with_tokens_per_minute(tpm)
    });
    let start = r.clock.now();
    go(&r, &items, 10).await;
    let calls = r.reader.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 4);
    // No 60-second window holds more than `tpm` estimated tokens.
    for (i, c) in calls.iter().enumerate() {
        let in_window = calls[i..]
            .iter()
            .filter(|d| d.0.duration_since(c.0) < Duration::from_secs(60))
            .count() as u32;
        assert!(
            in_window * cost <= tpm + cost / 10,
            "window at {:?}: {in_window}",
            c.0.duration_since(start)
        );
    }
    assert!(calls[3].0.duration_since(start) >= Duration::from_secs(60));
}

fn build_batch_cost(items: &[Item]) -> u32 {
    let reqs: Vec<TranslationRequest> = items.iter().map(|i| i.request.clone()).collect();
    crate::prompt::build_batch(&reqs).estimated_tokens()
}

#[tokio::test]
async fn a_reported_zero_remaining_holds_requests_until_the_reported_reset() {
    let r = rig(Fault::None, |c| RateLimit::new(0, 0, c));
    *r.reader.spent.lock().unwrap() = 1;
    let items = prepare(&script(20), &mut gates(), &template()).items;
    let start = r.clock.now();
    let s = go(&r, &items, 10).await;
    assert_eq!(s.translated, 20);
    let at: Vec<u64> = r
        .reader
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.duration_since(start).as_secs())
        .collect();
    assert_eq!(
        at,
        [0, 30],
        "the second request waits for the reported reset"
    );
}

#[tokio::test]
async fn a_429_mid_run_is_waited_out_and_the_batch_asked_again_whole() {
    let r = rig(Fault::None, |c| RateLimit::new(0, 0, c));
    let items = prepare(&script(20), &mut gates(), &template()).items;
    let start = r.clock.now();
    go(&r, &items, 10).await;
    let s = {
        *r.reader.limited.lock().unwrap() = 1;
        go(
            &r,
            &prepare(&script(40), &mut gates(), &template()).items,
            10,
        )
        .await
    };
    assert_eq!((s.cached, s.translated, s.failed, s.splits), (20, 20, 0, 0));
    let calls = r.reader.calls.lock().unwrap().clone();
    let at: Vec<u64> = calls
        .iter()
        .map(|c| c.0.duration_since(start).as_secs())
        .collect();
    let sizes: Vec<usize> = calls.iter().map(|c| c.1).collect();
    assert_eq!(
        sizes,
        [10, 10, 10, 10, 10],
        "the limited batch is asked again, not split: {at:?} {s:?}"
    );
    assert!(
        at[3] >= 10,
        "asked again only after the provider's 10 s: {at:?}"
    );
    assert_eq!(s.waited, Duration::from_secs(10));
}

#[test]
fn galtransl_names_go_into_the_context_and_plain_text_skips_blank_lines() {
    let json = r#"[{"name":"春香","message":"おはよう、先輩"},{"name":"","message":"ナレーションの行"},{"message":"  "}]"#;
    let lines = parse_script(json).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].speaker.as_deref(), Some("春香"));
    let items = prepare(&lines, &mut gates(), &template()).items;
    assert_eq!(items[0].request.text, "おはよう、先輩");
    assert_eq!(items[1].request.context, ["春香: おはよう、先輩"]);
    let plain = parse_script("一行目の台詞\n\n  \n二行目の台詞\n").unwrap();
    assert_eq!(plain.len(), 2);
    assert!(parse_script("[{\"name\": 1}]").is_err());
}

#[test]
fn script_lines_get_the_same_cache_key_as_a_copied_line_and_repeats_one_entry() {
    let mut lines = script(3);
    lines.push(lines[0].clone());
    lines.push(ScriptLine {
        speaker: None,
        text: "abc".into(),
    });
    let p = prepare(&lines, &mut gates(), &template());
    assert_eq!((p.items.len(), p.repeats, p.rejected), (3, 1, 1));
    let r = &template().request;
    let key = cache_key(
        &lines[1].text,
        &r.source_language,
        &r.target_language,
        1,
        "",
        &[],
    );
    assert_eq!(p.items[1].key, key);
}

#[test]
fn requests_for_rounds_up() {
    assert_eq!(requests_for(100, 10), 10);
    assert_eq!(requests_for(101, 10), 11);
    assert_eq!(requests_for(0, 10), 0);
}
