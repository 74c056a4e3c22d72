//! `yaku prefetch` through the real binary against loopback providers that answer batches by
//! reading the request, in both wire formats: batches, split retries on a reply that does not
//! match, the provider's reported budget, resuming after a kill, GalTransl JSON, --dry-run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Wire {
    Gemini,
    OpenAi,
}

/// How multi-line replies go wrong.
const OK: u32 = 0;
const DROP_LAST: u32 = 1;
const EXTRA: u32 = 2;
const SWAP_AND_DROP: u32 = 3;
const PLAIN: u32 = 4;

/// The fake translation of a line: its bytes in hex, so each line's is its own.
fn en(line: &str) -> String {
    let hex: String = line.bytes().map(|b| format!("{b:02x}")).collect();
    format!("Line {hex}")
}

/// One request as the server saw it: when it came, its lines and its context.
type Seen1 = (Instant, Vec<String>, Vec<String>);

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Seen1>>,
}

impl Seen {
    fn sizes(&self) -> Vec<usize> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.1.len())
            .collect()
    }
    fn lines(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.1.clone())
            .collect()
    }
}

fn user_text(wire: Wire, body: &Value) -> String {
    match wire {
        Wire::Gemini => body.pointer("/contents/0/parts/0/text"),
        Wire::OpenAi => body.pointer("/messages/1/content"),
    }
    .and_then(Value::as_str)
    .unwrap()
    .to_string()
}

async fn server(
    wire: Wire,
    fault: Arc<AtomicU32>,
    seen: Arc<Seen>,
    spent_once: bool,
) -> MockServer {
    let server = MockServer::start().await;
    let first = Arc::new(AtomicU32::new(u32::from(spent_once)));
    Mock::given(method("POST"))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let user = user_text(wire, &body);
            let object: Value =
                serde_json::from_str(&user.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            let context = strings(&object["context"]);
            let (lines, text) = match object.get("lines") {
                Some(l) => {
                    let lines = strings(l);
                    let mut out: Vec<String> = lines.iter().map(|l| en(l)).collect();
                    let text = match fault.load(Ordering::SeqCst) {
                        PLAIN => out.join("\n"),
                        f => {
                            match f {
                                DROP_LAST => {
                                    out.pop();
                                }
                                EXTRA => out.push("One line too many".into()),
                                SWAP_AND_DROP => {
                                    out.swap(0, 1);
                                    out.pop();
                                }
                                _ => {}
                            }
                            let entries: Vec<Value> =
                                out.iter().map(|t| json!({ "options": [t] })).collect();
                            json!({ "translations": entries }).to_string()
                        }
                    };
                    (lines, text)
                }
                None => {
                    let line = object["line"].as_str().unwrap().to_string();
                    let text = json!({ "options": [en(&line)] }).to_string();
                    (vec![line], text)
                }
            };
            seen.requests
                .lock()
                .unwrap()
                .push((Instant::now(), lines, context));
            let reply = match wire {
                Wire::Gemini => json!({
                    "candidates": [{ "content": { "parts": [{ "text": text }], "role": "model" },
                                     "finishReason": "STOP", "index": 0 }]
                }),
                Wire::OpenAi => json!({
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
                                  "finish_reason": "stop" }]
                }),
            };
            let mut t = ResponseTemplate::new(200).set_body_json(reply);
            if first.swap(0, Ordering::SeqCst) == 1 {
                t = t
                    .insert_header("x-ratelimit-remaining-requests", "0")
                    .insert_header("x-ratelimit-reset-requests", "2s");
            }
            t
        })
        .mount(&server)
        .await;
    server
}

fn config(wire: Wire, url: &str, extra: &str) -> String {
    let (name, kind, model) = match wire {
        Wire::Gemini => ("gemini", "gemini", "gemini-test"),
        Wire::OpenAi => ("groq", "openai", "openai/gpt-oss-120b"),
    };
    let extra = if extra.contains("requests_per_minute") {
        extra.to_string()
    } else {
        format!("requests_per_minute = 6000\n{extra}")
    };
    format!(
        r#"
[translation]
deadline_secs = 10
options = 1
context_lines = 2

[[providers]]
name = "{name}"
kind = "{kind}"
model = "{model}"
base_url = "{url}"
api_key_env = "YAKU_TEST_KEY"
timeout_secs = 5
{extra}
"#
    )
}

fn script(n: usize) -> String {
    (0..n).map(|i| format!("{i}番目の台詞です。\n\n")).collect()
}

struct Rig {
    dir: tempfile::TempDir,
    cfg: String,
    seen: Arc<Seen>,
    fault: Arc<AtomicU32>,
    _server: MockServer,
}

async fn rig(wire: Wire, extra: &str, spent_once: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let fault = Arc::new(AtomicU32::new(OK));
    let server = server(wire, fault.clone(), seen.clone(), spent_once).await;
    let cfg = write_config(dir.path(), &config(wire, &server.uri(), extra), 0o600);
    Rig {
        cfg: cfg.to_str().unwrap().to_string(),
        dir,
        seen,
        fault,
        _server: server,
    }
}

impl Rig {
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
    async fn yaku(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--config", &self.cfg]);
        yaku(&all, &[("YAKU_TEST_KEY", FAKE_KEY)], None).await
    }
    /// The cached translation of `line`, through `yaku translate` (a hit sends nothing).
    async fn cached(&self, line: &str) -> String {
        let before = self.seen.sizes().len();
        let out = self.yaku(&["translate", "--json", line]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            self.seen.sizes().len(),
            before,
            "{line}: a cache hit, no request"
        );
        let v: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        v["best"].as_str().unwrap().to_string()
    }
    async fn summary(&self, args: &[&str]) -> Value {
        let mut all = vec!["prefetch", "--json"];
        all.extend(args);
        let out = self.yaku(&all).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_str(&text(&out.stdout)).unwrap()
    }
}

#[tokio::test]
async fn a_hundred_line_script_in_batches_of_ten_is_ten_requests_and_every_copy_a_hit() {
    for wire in [Wire::Gemini, Wire::OpenAi] {
        let r = rig(wire, "", false).await;
        let file = r.write("script.txt", &script(100));
        let s = r.summary(&[&file, "--batch", "10"]).await;
        assert_eq!(r.seen.sizes(), vec![10; 10], "{wire:?}");
        assert_eq!(
            (s["translated"].as_u64(), s["requests"].as_u64()),
            (Some(100), Some(10))
        );
        for i in [0, 37, 99] {
            let line = format!("{i}番目の台詞です。");
            assert_eq!(r.cached(&line).await, en(&line), "{wire:?} line {i}");
        }
        // The history counts the prefetch's requests apart from live ones.
        let out = r.yaku(&["stats", "--json"]).await;
        let stats: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        let p = &stats["providers"][0];
        assert_eq!(p["requests"], 10, "{stats}");
        assert_eq!(p["prefetch_requests"], 10, "{stats}");
    }
}

#[tokio::test]
async fn batch_replies_with_a_wrong_count_or_shape_are_split_never_misaligned() {
    for (wire, fault) in [
        (Wire::OpenAi, DROP_LAST),
        (Wire::Gemini, EXTRA),
        (Wire::OpenAi, SWAP_AND_DROP),
        (Wire::Gemini, PLAIN),
    ] {
        let r = rig(wire, "", false).await;
        r.fault.store(fault, Ordering::SeqCst);
        let file = r.write("script.txt", &script(8));
        let s = r.summary(&[&file, "--batch", "4"]).await;
        assert_eq!(s["translated"], 8, "{wire:?} {fault}: {s}");
        assert_eq!(
            r.seen.sizes(),
            [4, 2, 1, 1, 2, 1, 1, 4, 2, 1, 1, 2, 1, 1],
            "{wire:?} {fault}: halves down to single lines"
        );
        for i in 0..8 {
            let line = format!("{i}番目の台詞です。");
            assert_eq!(
                r.cached(&line).await,
                en(&line),
                "{wire:?} {fault} line {i}"
            );
        }
    }
}

#[tokio::test]
async fn a_reported_zero_remaining_holds_the_next_request_until_the_reset() {
    let r = rig(Wire::OpenAi, "", true).await;
    let file = r.write("script.txt", &script(20));
    r.summary(&[&file]).await;
    let at: Vec<Instant> = r
        .seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    assert!(
        gap >= Duration::from_millis(1900),
        "the reset (2 s) was waited for: {gap:?}"
    );
}

#[tokio::test]
async fn a_killed_run_resumes_without_asking_for_any_finished_line_again() {
    // At 60 requests a minute (59 paced) a batch goes about every second.
    let r = rig(Wire::OpenAi, "requests_per_minute = 60", false).await;
    let file = r.write("script.txt", &script(100));
    let args: Vec<String> = ["prefetch", &file, "--batch", "10", "--config", &r.cfg]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cfg_dir = std::path::Path::new(&r.cfg).parent().unwrap().join("xdg");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_yaku"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", std::env::var_os("HOME").unwrap())
        .env("XDG_DATA_HOME", &cfg_dir)
        .env("XDG_STATE_HOME", &cfg_dir)
        .env("XDG_RUNTIME_DIR", &cfg_dir)
        .env("YAKU_TEST_KEY", FAKE_KEY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while r.seen.sizes().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first_run = r.seen.lines();
    let dry = r.summary(&[&file, "--dry-run"]).await;
    let todo = dry["todo"].as_u64().unwrap() as usize;
    assert!(todo < 100 && todo >= 100 - first_run.len(), "{dry}");
    let s = r.summary(&[&file, "--batch", "10"]).await;
    assert_eq!(s["cached"].as_u64().unwrap() as usize, 100 - todo);
    let second_run: Vec<String> = r.seen.lines()[first_run.len()..].to_vec();
    assert_eq!(second_run.len(), todo, "only the missing lines are asked");
    let cached_before: Vec<&String> = first_run
        .iter()
        .filter(|l| !second_run.contains(l))
        .collect();
    assert_eq!(cached_before.len(), 100 - todo, "no line translated twice");
}

#[tokio::test]
async fn galtransl_json_names_reach_the_context_as_name_colon_line() {
    let r = rig(Wire::Gemini, "", false).await;
    let file = r.write(
        "script.json",
        r#"[{"name":"春香","message":"おはよう、先輩。"},{"name":"先輩","message":"遅刻だぞ。"},{"message":"窓の外は雨だった。"}]"#,
    );
    let s = r.summary(&[&file, "--batch", "1"]).await;
    assert_eq!(s["translated"], 3);
    let reqs = r.seen.requests.lock().unwrap().clone();
    assert_eq!(
        reqs[2].2,
        ["1. 春香: おはよう、先輩。", "2. 先輩: 遅刻だぞ。"]
    );
    drop(reqs);
    assert_eq!(r.cached("遅刻だぞ。").await, en("遅刻だぞ。"));
}

#[tokio::test]
async fn dry_run_counts_lines_requests_and_days_of_the_daily_budget_and_sends_nothing() {
    let r = rig(Wire::OpenAi, "requests_per_day = 51", false).await;
    let file = r.write(
        "script.txt",
        &format!("{}短い\n{}", script(95), "0番目の台詞です。\n"),
    );
    let s = r.summary(&[&file, "--dry-run", "--batch", "10"]).await;
    assert!(r.seen.sizes().is_empty(), "nothing sent");
    assert_eq!(s["script_lines"], 97);
    assert_eq!(s["repeats"], 1);
    assert_eq!(s["todo"], 96);
    assert_eq!(s["requests"], 10);
    // One request a day is left to the daemon: 50 a day for the prefetch.
    assert_eq!(s["providers"][0]["requests_per_day"], 50);
    assert_eq!(s["providers"][0]["days"], 0.2);
}

#[tokio::test]
async fn stats_list_every_configured_provider_zeros_included() {
    let dir = tempfile::tempdir().unwrap();
    let groq = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["Good morning."])))
        .mount(&groq)
        .await;
    // Gemini is configured first but never asked.
    let cfg = write_config(
        dir.path(),
        &two_provider_config("http://127.0.0.1:9", &groq.uri()),
        0o600,
    );
    let cfg = cfg.to_str().unwrap();
    let keys = [("YAKU_TEST_GROQ_KEY", FAKE_KEY)];
    let out = yaku(&["translate", "--config", cfg, "おはよう"], &keys, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = yaku(&["stats", "--json", "--config", cfg], &[], None).await;
    let stats: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let names: Vec<&str> = stats["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gemini", "groq"], "{stats}");
    assert_eq!(stats["providers"][0]["requests"], 0);
    assert_eq!(stats["providers"][1]["requests"], 1);
    assert_eq!(stats["providers"][1]["prefetch_requests"], 0);
    let out = yaku(&["stats", "--config", cfg], &[], None).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("gemini") && table.contains("by prefetch"),
        "{table}"
    );
}
