//! The SQLite store on real files: a cache hit among 10,000 entries, one history write
//! (begin + finish with two attempts), and the reads behind `yaku history -n 20` and
//! `yaku stats` on a 100,000-line history — also with the open those commands pay first
//! (integrity check included), since their target (≤ 50 ms) is for the whole command.
//!
//! cargo bench --bench store
#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use yaku::adapters::store::{Options, SqliteStore};
use yaku::core::store::{AttemptRecord, CachedAnswer, Finished, Source, Status, Store};

const HISTORY_LINES: u64 = 100_000;
const CACHE_ENTRIES: usize = 10_000;

const TEXT: &str = "おはよう、先輩。今日も早いですね。昨日の約束、覚えていますか？";
const OPTIONS: [&str; 3] = [
    "Good morning, senpai. You're early again today. Do you remember yesterday's promise?",
    "Morning, senpai! Early as always. You remember what we promised yesterday, right?",
    "Good morning, senpai. Early again, I see. Do you recall our promise from yesterday?",
];

fn attempt(provider: &str, outcome: &'static str, latency_ms: u64) -> AttemptRecord {
    AttemptRecord {
        provider: provider.into(),
        outcome,
        latency_ms,
        opened_breaker: false,
    }
}

fn translated(provider: &str, latency_ms: u64) -> Finished {
    Finished {
        status: Status::Translated,
        provider: Some(provider.into()),
        model: Some(format!("{provider}-model")),
        options: OPTIONS.iter().map(|s| s.to_string()).collect(),
        latency_ms: Some(latency_ms),
        error: None,
    }
}

/// One line the way a reading session produces them: mostly Gemini, some fallbacks to Groq,
/// cache hits, failures and skips.
fn record_line(store: &SqliteStore, i: u64, at: SystemTime) {
    let id = store
        .begin(&format!("{TEXT}{i}"), Source::Clipboard, at)
        .unwrap();
    let latency = 200 + (i * 7919) % 1800;
    match i % 100 {
        0..=84 => store
            .finish(
                id,
                &translated("gemini", latency),
                &[attempt("gemini", "ok", latency)],
            )
            .unwrap(),
        85..=89 => store
            .finish(
                id,
                &translated("groq", latency + 40),
                &[
                    attempt("gemini", "rate_limited", 40),
                    attempt("groq", "ok", latency),
                ],
            )
            .unwrap(),
        90..=94 => {
            let cached = Finished {
                status: Status::Cached,
                ..translated("gemini", 0)
            };
            store.finish(id, &cached, &[]).unwrap();
        }
        95..=97 => {
            let failed = Finished {
                status: Status::Failed,
                provider: None,
                model: None,
                options: vec![],
                latency_ms: Some(3000),
                error: Some("gemini: transient; groq: rate limited for 37 s".into()),
            };
            let attempts = [
                attempt("gemini", "transient", 1500),
                attempt("groq", "rate_limited", 30),
            ];
            store.finish(id, &failed, &attempts).unwrap();
        }
        _ => {
            let skipped = Finished {
                status: Status::Superseded,
                provider: None,
                model: None,
                options: vec![],
                latency_ms: None,
                error: None,
            };
            store.finish(id, &skipped, &[]).unwrap();
        }
    }
}

/// A history of `n` lines, one every 20 s up to now, written through the public API.
fn build_history(path: &Path, n: u64) {
    let (store, _) = SqliteStore::open(path).unwrap();
    let now = SystemTime::now();
    let started = Instant::now();
    for i in 0..n {
        let at = now - Duration::from_secs(20 * (n - i));
        record_line(&store, i, at);
    }
    eprintln!(
        "built a {n}-line history in {:.1} s ({:.0} µs per begin + finish), {:.1} MiB",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e6 / n as f64,
        std::fs::metadata(path).unwrap().len() as f64 / (1 << 20) as f64
            + std::fs::metadata(path.with_extension("db-wal")).map_or(0.0, |m| m.len() as f64)
                / (1 << 20) as f64,
    );
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();

    // Cache: a hit among 10,000 entries (a lookup also counts the hit: one write).
    let cache_path = dir.path().join("cache.db");
    let (cache, _) = SqliteStore::open(&cache_path).unwrap();
    for k in 0..CACHE_ENTRIES {
        let answer = CachedAnswer {
            options: OPTIONS.iter().map(|s| s.to_string()).collect(),
            provider: "gemini".into(),
            model: "gemini-model".into(),
        };
        cache
            .cache_put(&format!("ja>en:v1:{TEXT}{k}"), &answer)
            .unwrap();
    }
    let keys: Vec<String> = (0..CACHE_ENTRIES)
        .map(|k| format!("ja>en:v1:{TEXT}{}", (k * 7919) % CACHE_ENTRIES))
        .collect();
    let mut next = 0;
    c.bench_function("cache_get hit, 10k entries", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            black_box(cache.cache_get(&keys[next]).unwrap().unwrap());
        })
    });
    c.bench_function("cache_get miss, 10k entries", |b| {
        b.iter(|| black_box(cache.cache_get("ja>en:v1:not there").unwrap()))
    });

    // One history write: begin + finish with two attempts, as the daemon does per line.
    let write_path = dir.path().join("write.db");
    let (writes, _) = SqliteStore::open(&write_path).unwrap();
    let mut i = 85; // a fallback line: two attempts
    c.bench_function("history write (begin + finish, 2 attempts)", |b| {
        b.iter(|| {
            record_line(
                &writes,
                i,
                UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i),
            );
            i += 100;
        })
    });

    // The commands' reads on a 100,000-line history.
    let big = dir.path().join("yaku.db");
    build_history(&big, HISTORY_LINES);
    let command = Options::command();
    let (store, _) = SqliteStore::open_with(&big, &command).unwrap();
    c.bench_function("history(20), 100k lines", |b| {
        b.iter(|| black_box(store.history(20, None).unwrap()))
    });
    c.bench_function("stats(None), 100k lines", |b| {
        b.iter(|| black_box(store.stats(None).unwrap()))
    });
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    c.bench_function("stats(last 24 h), 100k lines", |b| {
        b.iter(|| black_box(store.stats(Some(day_ago)).unwrap()))
    });
    c.bench_function("history(20, grep with no match), 100k lines", |b| {
        b.iter(|| black_box(store.history(20, Some("zebra")).unwrap()))
    });

    c.bench_function("history(20, grep matching recent lines), 100k lines", |b| {
        b.iter(|| black_box(store.history(20, Some("REMEMBER")).unwrap()))
    });

    // What `yaku history -n 20` and `yaku stats` pay in the store: open, then the read.
    c.bench_function("open (command) + history(20), 100k lines", |b| {
        b.iter(|| {
            let (s, _) = SqliteStore::open_with(&big, &command).unwrap();
            black_box(s.history(20, None).unwrap())
        })
    });
    c.bench_function("open (command) + stats(None), 100k lines", |b| {
        b.iter(|| {
            let (s, _) = SqliteStore::open_with(&big, &command).unwrap();
            black_box(s.stats(None).unwrap())
        })
    });
    // The daemon's open checks the whole file: paid once at start.
    let daemon = Options {
        recover_pending: false, // nothing is pending; keeps the iterations alike
        ..Options::default()
    };
    c.bench_function("open (daemon, quick_check), 100k lines", |b| {
        b.iter(|| black_box(SqliteStore::open_with(&big, &daemon).unwrap()))
    });
}

criterion_group! {
    name = store;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(store);
