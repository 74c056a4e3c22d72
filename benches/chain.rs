//! One translation through the whole chain (prompt, breaker, rate limit, Gemini adapter, reply
//! parsing) against a zero-latency loopback server, next to the same request made directly
//! with reqwest. The difference is what the chain adds. Besides criterion's report, prints
//! p50/p99 of both over interleaved runs, since the target is stated at p99.
//!
//! cargo bench --bench chain
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use yaku::adapters::provider::{Settings, gemini::Gemini};
use yaku::core::breaker::BreakerConfig;
use yaku::core::chain::{Chain, ChainConfig, ChainEntry};
use yaku::core::clock::{Clock, TokioClock};
use yaku::core::prompt::{Prompt, TranslationRequest};
use yaku::core::ratelimit::RateLimit;

const REPLY: &str = r#"{"candidates":[{"content":{"parts":[{"text":"{\"options\": [\"Good morning, senpai. You're early again today.\", \"Morning, senpai! You're here early as usual.\", \"Good morning, senpai. Early as always, I see.\"]}"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":64,"candidatesTokenCount":41,"totalTokenCount":105},"modelVersion":"gemini-bench","responseId":"bench"}"#;

/// A keep-alive HTTP/1.1 server that answers every request at once with `REPLY`.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            sock.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(16 * 1024);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{REPLY}",
                    REPLY.len()
                );
                loop {
                    // Read one request: headers, then content-length bytes of body.
                    let (head_end, body_len) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, len);
                        }
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + body_len {
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + body_len);
                    if sock.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn settings(url: &str) -> Settings {
    Settings {
        name: "gemini".into(),
        model: "gemini-bench".into(),
        base_url: url.into(),
        api_key: Some("bench-key".into()),
        timeout: Duration::from_secs(5),
        extra: serde_json::json!({ "thinkingConfig": { "thinkingLevel": "minimal" } }),
        json_mode: true,
    }
}

fn request() -> TranslationRequest {
    TranslationRequest {
        text: "おはよう、先輩。今日も早いですね。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        instructions: String::new(),
        ..Default::default()
    }
}

struct Setup {
    chain: Chain,
    client: reqwest::Client,
    url: String,
    body: serde_json::Value,
}

fn setup(url: &str) -> Setup {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let gemini = Gemini::new(settings(url)).unwrap();
    let body = gemini.body(&Prompt::build(&request()));
    let entry = ChainEntry::new(
        Arc::new(gemini),
        BreakerConfig::default(),
        RateLimit::new(0, 0, clock.clone()),
        String::new(),
    );
    let chain = Chain::new(
        vec![entry],
        clock,
        ChainConfig {
            deadline: Duration::from_secs(20),
            ..ChainConfig::default()
        },
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Setup {
        chain,
        client,
        url: format!("{url}/models/gemini-bench:generateContent"),
        body,
    }
}

async fn direct(s: &Setup) {
    let resp = s
        .client
        .post(&s.url)
        .header("x-goog-api-key", "bench-key")
        .json(&s.body)
        .send()
        .await
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() > 100);
}

async fn through_chain(s: &Setup) {
    let t = s.chain.translate(&request(), None).await.unwrap();
    assert_eq!(t.options.len(), 3);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(serve());
    let s = setup(&url);
    let mut g = c.benchmark_group("translate_one_line");
    g.bench_function("direct_reqwest", |b| b.to_async(&rt).iter(|| direct(&s)));
    g.bench_function("chain", |b| b.to_async(&rt).iter(|| through_chain(&s)));
    g.finish();
}

fn percentiles() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(serve());
    let s = setup(&url);
    let n = 5000;
    let (mut d, mut ch) = (Vec::with_capacity(n), Vec::with_capacity(n));
    rt.block_on(async {
        for _ in 0..200 {
            direct(&s).await;
            through_chain(&s).await;
        }
        for _ in 0..n {
            let t = Instant::now();
            direct(&s).await;
            d.push(t.elapsed());
            let t = Instant::now();
            through_chain(&s).await;
            ch.push(t.elapsed());
        }
    });
    d.sort();
    ch.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\npercentiles over {n} interleaved requests each (µs):");
    println!(
        "  direct reqwest: p50 {:8.1}  p99 {:8.1}",
        us(p(&d, 0.5)),
        us(p(&d, 0.99))
    );
    println!(
        "  through chain:  p50 {:8.1}  p99 {:8.1}",
        us(p(&ch, 0.5)),
        us(p(&ch, 0.99))
    );
    println!(
        "  chain adds:     p50 {:8.1}  p99 {:8.1}",
        us(p(&ch, 0.5)) - us(p(&d, 0.5)),
        us(p(&ch, 0.99)) - us(p(&d, 0.99))
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --all-targets` runs benches once as a smoke test, without --bench.
    if std::env::args().any(|a| a == "--bench") {
        percentiles();
    }
}
