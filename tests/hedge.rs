//! Hedged requests through the real binary (`yaku translate`) against loopback providers that
//! speak the real wire formats, count their requests and see a client close its connection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use yaku::adapters::provider::{Settings, gemini::Gemini, openai::OpenAi};
use yaku::core::breaker::{BreakerConfig, State};
use yaku::core::chain::{Chain, ChainConfig, ChainEntry};
use yaku::core::clock::{Clock, TokioClock};
use yaku::core::prompt::TranslationRequest;
use yaku::core::ratelimit::RateLimit;

/// A provider on loopback that answers each request after `delay`, unless the client closes
/// the connection first (which it counts as a drop).
struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    dropped: Arc<Notify>,
}

impl Server {
    /// `body` is the JSON reply: Gemini's when the path asks for `:generateContent`.
    async fn start(delay: Duration, body: Value) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(Notify::new());
        let (r, d, n) = (requests.clone(), drops.clone(), dropped.clone());
        let body = body.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (r, d, n, body) = (r.clone(), d.clone(), n.clone(), body.clone());
                tokio::spawn(async move {
                    // One request per connection is all yaku translate sends here.
                    if read_request(&mut sock).await.is_none() {
                        return;
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let mut probe = [0u8; 1];
                    tokio::select! {
                        // The client closed (or reset) the connection before the answer.
                        _ = sock.read(&mut probe) => {
                            d.fetch_add(1, Ordering::SeqCst);
                            n.notify_one();
                        }
                        () = tokio::time::sleep(delay) => {
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = sock.write_all(reply.as_bytes()).await;
                            let _ = sock.flush().await;
                            // Keep the connection open until the client is done with it.
                            let _ = sock.read(&mut probe).await;
                        }
                    }
                });
            }
        });
        Server {
            url,
            requests,
            drops,
            dropped,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (headers and a `content-length` body); None when the client
/// went away first.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

fn config(gemini: &str, groq: &str, hedge_after_ms: u64) -> String {
    format!(
        r#"
[translation]
deadline_secs = 20

[[providers]]
name = "gemini"
kind = "gemini"
model = "gemini-test"
base_url = "{gemini}"
api_key_env = "YAKU_TEST_GEMINI_KEY"
requests_per_minute = 600
timeout_secs = 15
hedge_after_ms = {hedge_after_ms}

[[providers]]
name = "groq"
kind = "openai"
model = "openai/gpt-oss-120b"
base_url = "{groq}"
api_key_env = "YAKU_TEST_GROQ_KEY"
requests_per_minute = 600
timeout_secs = 15
"#
    )
}

const KEYS: [(&str, &str); 2] = [
    ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
    ("YAKU_TEST_GROQ_KEY", FAKE_KEY),
];

async fn translate(cfg: &str) -> Value {
    let out = yaku(
        &["translate", "--json", "--config", cfg, "おはよう、先輩。"],
        &KEYS,
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn provider_stats(cfg: &str, name: &str) -> Value {
    let out = yaku(&["stats", "--json", "--config", cfg], &KEYS, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_primary_is_hedged_to_the_fast_fallback_whose_answer_is_shown_and_the_primary_request_is_cancelled()
 {
    let gemini = Server::start(Duration::from_secs(3), gemini_ok(&["From gemini."])).await;
    let groq = Server::start(Duration::from_millis(100), openai_ok(&["From groq."])).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &config(&gemini.url, &groq.url, 300), 0o600);
    let cfg = cfg.to_str().unwrap();

    let started = std::time::Instant::now();
    let t = translate(cfg).await;
    assert_eq!(t["provider"], "groq", "{t}");
    assert_eq!(t["best"], "From groq.");
    assert_eq!(
        t["skipped"],
        Value::Array(vec![]),
        "a cancelled primary is not a skip"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the line did not wait for the slow primary: {:?}",
        started.elapsed()
    );
    // The dropped request closes its connection: the primary's server sees it go.
    tokio::time::timeout(Duration::from_secs(10), async {
        while gemini.drops() == 0 {
            gemini.dropped.notified().await;
        }
    })
    .await
    .expect("the primary's server never saw its request cancelled");
    assert_eq!((gemini.requests(), groq.requests()), (1, 1));

    let g = provider_stats(cfg, "gemini").await;
    assert_eq!(
        (&g["requests"], &g["cancelled"], &g["ok"], &g["transient"]),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(0),
            &Value::from(0)
        ),
        "{g}"
    );
    assert_eq!(g["breaker_opens"], 0);
    let q = provider_stats(cfg, "groq").await;
    // The line was asked of gemini first: groq served it as a fallback.
    assert_eq!(
        (&q["ok"], &q["lines_served"], &q["lines_fallback"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{q}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hedging_off_the_slow_primary_answers_and_the_fallback_gets_no_request() {
    let gemini = Server::start(Duration::from_millis(1500), gemini_ok(&["From gemini."])).await;
    let groq = Server::start(Duration::from_millis(100), openai_ok(&["From groq."])).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &config(&gemini.url, &groq.url, 0), 0o600);
    let cfg = cfg.to_str().unwrap();

    let t = translate(cfg).await;
    assert_eq!(t["provider"], "gemini", "{t}");
    assert_eq!(t["best"], "From gemini.");
    assert_eq!((gemini.requests(), groq.requests()), (1, 0));
    assert_eq!(gemini.drops(), 0);
    let g = provider_stats(cfg, "gemini").await;
    assert_eq!(
        (&g["ok"], &g["cancelled"]),
        (&Value::from(1), &Value::from(0)),
        "{g}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_answers_before_the_hedge_time_sends_nothing_to_the_fallback() {
    let gemini = Server::start(Duration::from_millis(50), gemini_ok(&["From gemini."])).await;
    let groq = Server::start(Duration::from_millis(50), openai_ok(&["From groq."])).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &config(&gemini.url, &groq.url, 5000), 0o600);
    let t = translate(cfg.to_str().unwrap()).await;
    assert_eq!(t["provider"], "gemini", "{t}");
    assert_eq!((gemini.requests(), groq.requests()), (1, 0));
}

fn settings(name: &str, model: &str, url: &str) -> Settings {
    Settings {
        name: name.into(),
        model: model.into(),
        base_url: url.into(),
        api_key: Some(FAKE_KEY.into()),
        timeout: Duration::from_secs(15),
        extra: serde_json::json!({}),
        json_mode: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_request_is_cancelled_at_once_while_the_process_and_its_clients_live_on() {
    let gemini = Server::start(Duration::from_secs(30), gemini_ok(&["From gemini."])).await;
    let groq = Server::start(Duration::from_millis(100), openai_ok(&["From groq."])).await;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let entries = vec![
        ChainEntry::new(
            Arc::new(Gemini::new(settings("gemini", "gemini-test", &gemini.url)).unwrap()),
            BreakerConfig::default(),
            RateLimit::new(0, 0, clock.clone()),
            String::new(),
        )
        .with_hedge_after(Duration::from_millis(200)),
        ChainEntry::new(
            Arc::new(OpenAi::new(settings("groq", "openai/gpt-oss-120b", &groq.url)).unwrap()),
            BreakerConfig::default(),
            RateLimit::new(0, 0, clock.clone()),
            String::new(),
        ),
    ];
    let chain = Chain::new(entries, clock, ChainConfig::default());
    let req = TranslationRequest {
        text: "おはよう、先輩。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        ..Default::default()
    };
    let t = chain.translate(&req, None).await.unwrap();
    assert_eq!(
        (t.provider.as_str(), t.options[0].as_str()),
        ("groq", "From groq.")
    );
    let rows: Vec<(&str, &str)> = t
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome))
        .collect();
    assert_eq!(rows, [("gemini", "cancelled"), ("groq", "ok")]);
    // The chain (and gemini's HTTP client with its pool) is still alive: the close the
    // server sees is the cancellation, not the end of the process.
    tokio::time::timeout(Duration::from_secs(10), async {
        while gemini.drops() == 0 {
            gemini.dropped.notified().await;
        }
    })
    .await
    .expect("the primary's server never saw its request cancelled");
    assert_eq!((gemini.requests(), groq.requests()), (1, 1));
    assert_eq!(
        chain.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
    drop(chain);
}
