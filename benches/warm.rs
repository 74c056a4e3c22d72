//! The first line after an idle spell, warm vs cold, against a loopback HTTPS provider with
//! real TLS (rustls, a test CA trusted through `SSL_CERT_FILE`) that closes a connection left
//! idle past its keep-alive timeout. The idle spell is scaled down: the server's keep-alive
//! timeout is 1 s and the spell 1.5 s, standing for a real server's 60-75 s and the issue's 5
//! minutes (what matters is only that the spell outlasts the server's timeout). Cold: nothing
//! runs during the spell, so the line finds its connection closed. Warm: `core::warm::keep_warm`
//! runs (every 0.4 s, below the server's timeout) as the daemon runs it. Rounds interleave the
//! two. Prints, per mode, the TLS handshakes the line itself waited for, its latency, and the
//! requests the server saw (translations vs warming `GET /models`).
//!
//! cargo bench --bench warm            (BENCH_ROUNDS=N for more than 20 rounds)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic

#[path = "../tests/support/counting.rs"]
mod counting;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use yaku::adapters::provider::{Settings, openai::OpenAi};
use yaku::core::breaker::BreakerConfig;
use yaku::core::chain::{Chain, ChainConfig, ChainEntry};
use yaku::core::clock::{Clock, TokioClock};
use yaku::core::daemon::DaemonCounts;
use yaku::core::prompt::{Prompt, TranslationRequest};
use yaku::core::provider::Provider;
use yaku::core::ratelimit::RateLimit;
use yaku::core::warm::{WarmConfig, keep_warm};

const SERVER_IDLE: Duration = Duration::from_secs(1);
const SPELL: Duration = Duration::from_millis(1500);
const WARM_EVERY: Duration = Duration::from_millis(400);

const REPLY: &str = r#"{"id":"bench","object":"chat.completion","created":1795767544,"model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":"{\"options\": [\"Good morning, senpai. You're early again today.\"]}"},"finish_reason":"stop"}]}"#;

struct Sample {
    latency: Duration,
    handshakes: usize,
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ca = counting::TestCa::new(dir.path());
    // Before any thread starts: the client reads it when it is built.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca.pem_path) };
    let server =
        counting::CountingProvider::start(Some(&ca), SERVER_IDLE, Arc::new(|_| REPLY.into()));
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prompt = Prompt::build(&TranslationRequest {
        text: "おはよう、先輩。今日も早いですね。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 1,
        ..Default::default()
    });
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let (mut posts, mut warms) = ([0usize; 2], [0usize; 2]);
    for _ in 0..rounds {
        for keep in [false, true] {
            let (p0, w0) = (server.posts(), server.warms().len());
            let sample = runtime.block_on(round(&server, &prompt, keep));
            let i = usize::from(keep);
            posts[i] += server.posts() - p0;
            warms[i] += server.warms().len() - w0;
            if keep { &mut warm } else { &mut cold }.push(sample);
        }
    }
    println!(
        "first line after a {:.1} s idle spell (server keep-alive {:.0} s), loopback HTTPS, {rounds} rounds each",
        SPELL.as_secs_f64(),
        SERVER_IDLE.as_secs_f64()
    );
    println!(
        "| mode | handshakes on the line's path (per line) | p50 | p95 | max | translation requests | warming GETs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, samples, i) in [("cold", &mut cold, 0), ("warm", &mut warm, 1)] {
        let handshakes: usize = samples.iter().map(|s| s.handshakes).sum();
        let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "| {name} | {:.2} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
            handshakes as f64 / samples.len() as f64,
            ms(pct(0.5)),
            ms(pct(0.95)),
            ms(*lat.last().unwrap()),
            posts[i],
            warms[i],
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One round: a line (opening the connection, as the last line before a break), the idle
/// spell with or without warming, then the measured first line after it.
async fn round(server: &counting::CountingProvider, prompt: &Prompt, keep: bool) -> Sample {
    let settings = Settings {
        name: "bench".into(),
        model: "test-model".into(),
        base_url: server.url(),
        api_key: Some("gsk_bench_0000000000000000".into()),
        timeout: Duration::from_secs(10),
        extra: serde_json::Value::Null,
        json_mode: true,
    };
    // A fresh client each round: no connection carries over from the last round.
    let provider: Arc<dyn Provider> = Arc::new(OpenAi::new(settings).unwrap());
    provider.complete(prompt).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let entry = ChainEntry::new(
        provider.clone(),
        BreakerConfig::default(),
        RateLimit::new(0, 0, clock.clone()),
        String::new(),
    );
    let chain = Arc::new(Chain::new(
        vec![entry],
        clock.clone(),
        ChainConfig::default(),
    ));
    let (_chains, chains_rx) = tokio::sync::watch::channel(chain);
    let (_counts, counts_rx) = tokio::sync::watch::channel(DaemonCounts::default());
    let warming = keep.then(|| {
        tokio::spawn(keep_warm(
            clock,
            WarmConfig {
                every: WARM_EVERY,
                idle_after: Duration::from_secs(3600),
            },
            chains_rx,
            counts_rx,
            Arc::new(AtomicBool::new(false)),
        ))
    });
    tokio::time::sleep(SPELL).await;
    let before = server.handshakes();
    let started = Instant::now();
    provider.complete(prompt).await.unwrap();
    let latency = started.elapsed();
    let handshakes = server.handshakes() - before;
    if let Some(task) = warming {
        task.abort();
    }
    Sample {
        latency,
        handshakes,
    }
}
