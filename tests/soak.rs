//! A soak of the real pipeline, in-process: a `Daemon` fed through a channel (the clipboard
//! fake) with thousands of distinct Japanese lines, the real `Chain` over both real HTTP
//! adapters pointed at loopback servers that answer at random (a seeded generator, so the
//! sequence of answers is reproducible) with every outcome class and byte-level faults, the
//! real SQLite store in a temporary directory behind a `StoreHandle`, and a recording notifier.
//! The daemon's chain is rebuilt with `DaemonCommand::Reconfigure` every 250 lines (a reload),
//! which also re-enables providers that a rejected key or a missing model disabled.
//!
//! Shown at the end: every accepted line has exactly one final status in the history file (no
//! `pending` row after shutdown, one row per accepted line, statuses matching the daemon's
//! counts); no panic; from the servers' own records, no request reached a provider while its
//! breaker was open or disabled (the server reads the chain's breaker as each request arrives)
//! and no two requests to one provider were in flight at once (so never two while half-open);
//! no line outlived its deadline; and resident memory after the run is within 5 MB of what it
//! was after the first 100 lines.
//!
//! `YAKU_SOAK_LINES=20000 cargo test --release --test soak -- --nocapture` runs a longer soak
//! (the default is 2,000 lines); `YAKU_SOAK_TRACE=1` prints resident memory and the daemon's
//! counts every 500 lines. The test is alone in this binary so that the memory reading is its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hardening/mod.rs"]
mod hardening;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::json;

use hardening::faultserver::{End, Fault, FaultServer, Request, Served};
use hardening::mem;
use hardening::replies::Format;
use hardening::rig::{self, Rig};
use yaku::adapters::provider::Settings;
use yaku::adapters::provider::gemini::Gemini;
use yaku::adapters::provider::openai::OpenAi;
use yaku::adapters::store::SqliteStore;
use yaku::core::breaker::{BreakerConfig, State};
use yaku::core::chain::{Chain, ChainConfig, ChainEntry};
use yaku::core::clock::{Clock, TokioClock};
use yaku::core::daemon::{DaemonCommand, Reconfig};
use yaku::core::gates::{GateConfig, Gates};
use yaku::core::provider::Provider;
use yaku::core::ratelimit::RateLimit;
use yaku::core::store::{Opener, STORE_RETRY, Store, StoreHandle};

const DEFAULT_LINES: usize = 2000;
const RELOAD_EVERY: usize = 250;
const SEED: u64 = 20_261_127;
const PROVIDER_TIMEOUT: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(2);
const BREAKER: BreakerConfig = BreakerConfig {
    failures_to_open: 3,
    open: Duration::from_millis(50),
    max_open: Duration::from_millis(200),
};
const RSS_TOLERANCE: u64 = 5 * 1024 * 1024;
/// How long one line may take to settle before the pipeline counts as stuck.
const STUCK: Duration = Duration::from_secs(30);

/// What a fake provider does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Fenced,
    RateLimited,
    ServerError,
    BadRequest,
    Refusal,
    Unauthorized,
    ModelMissing,
    NoHeaders,
    Trickle,
    CutShort,
    Reset,
    Huge,
    ChunkedFast,
    ChunkedSlow,
    Http10,
    Http10Cut,
}

/// Out of 1000. Faults that cost a timeout are rare so that the soak stays fast.
const WEIGHTS: &[(Outcome, u32)] = &[
    (Outcome::Ok, 566),
    (Outcome::Fenced, 100),
    (Outcome::RateLimited, 50),
    (Outcome::ServerError, 80),
    (Outcome::BadRequest, 30),
    (Outcome::Refusal, 40),
    (Outcome::Unauthorized, 4),
    (Outcome::ModelMissing, 4),
    (Outcome::NoHeaders, 4),
    (Outcome::Trickle, 2),
    (Outcome::CutShort, 30),
    (Outcome::Reset, 30),
    (Outcome::Huge, 15),
    (Outcome::ChunkedFast, 10),
    (Outcome::ChunkedSlow, 2),
    (Outcome::Http10, 20),
    (Outcome::Http10Cut, 13),
];

/// A small LCG: reproducible without a dev-dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

/// A request the server is still handling, and the requests to the same provider from the
/// same chain that arrived meanwhile (with the breaker state each found).
struct Live {
    generation: u32,
    later: Vec<(u64, Instant, Option<Breaker>)>,
}

/// A breaker state without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Breaker {
    Closed,
    Open,
    HalfOpen,
    Disabled,
}

impl From<State> for Breaker {
    fn from(s: State) -> Self {
        match s {
            State::Closed { .. } => Breaker::Closed,
            State::Open { .. } => Breaker::Open,
            State::HalfOpen => Breaker::HalfOpen,
            State::Disabled { .. } => Breaker::Disabled,
        }
    }
}

/// One fake provider: its wire format, its random answers, and what it checks as requests
/// arrive and end (online, so that a long soak keeps no per-request records).
struct Side {
    format: Format,
    name: &'static str,
    chains: Arc<Mutex<HashMap<String, Weak<Chain>>>>,
    rng: Mutex<Lcg>,
    /// Whether this provider answers with a rejected key or a missing model now and then.
    disables: bool,
    live: Mutex<HashMap<u64, Live>>,
    seen: Mutex<BTreeMap<Outcome, usize>>,
    /// Breaker states found at arrival, by how often.
    states: Mutex<BTreeMap<Option<Breaker>, usize>>,
    requests: AtomicU64,
    violations: Mutex<Vec<String>>,
}

impl Side {
    fn violation(&self, what: String) {
        let mut v = self.violations.lock().unwrap();
        if v.len() < 100 {
            v.push(what);
        }
    }

    /// A request ended: any request to this provider from the same chain that arrived before
    /// its reply was (about to be) written, while its client still waited, overlapped it.
    fn ended(&self, s: &Served) {
        let Some(live) = self.live.lock().unwrap().remove(&s.id) else {
            return;
        };
        let waiting = !matches!(s.end, Some(End::ClientGone) | Some(End::Abandoned));
        for (later, arrived, state) in live.later {
            if waiting && s.final_write.is_none_or(|t| t > arrived) {
                self.violation(format!(
                    "{} generation {}: request {later} arrived (breaker {state:?}) while request {} ({}) was still in flight",
                    self.name, live.generation, s.id, s.fault
                ));
            }
        }
    }

    fn answer(&self, req: &Request) -> Fault {
        let model = req.model().unwrap_or_default();
        let state = self
            .chains
            .lock()
            .unwrap()
            .get(&model)
            .and_then(Weak::upgrade)
            .and_then(|chain| {
                chain
                    .entry(self.name)
                    .map(|e| Breaker::from(e.breaker_state()))
            });
        let (mut outcome, extra) = {
            let mut rng = self.rng.lock().unwrap();
            let mut pick = rng.next() % 1000;
            let extra = rng.next();
            let mut chosen = Outcome::Ok;
            for (o, w) in WEIGHTS {
                if pick < *w {
                    chosen = *o;
                    break;
                }
                pick -= w;
            }
            (chosen, extra)
        };
        // A rejected key or a missing model disables a provider until the next reload: only
        // the first provider gets them (at random, and surely now and then), so that the
        // second one carries the lines meanwhile.
        let n = self.requests.load(Ordering::SeqCst);
        if !self.disables && matches!(outcome, Outcome::Unauthorized | Outcome::ModelMissing) {
            outcome = Outcome::Ok;
        } else if self.disables && n % 500 == 250 {
            outcome = Outcome::Unauthorized;
        } else if self.disables && n % 500 == 499 {
            outcome = Outcome::ModelMissing;
        }
        let generation = model
            .strip_prefix("soak-g")
            .and_then(|g| g.parse().ok())
            .unwrap_or(u32::MAX);
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self.seen.lock().unwrap().entry(outcome).or_default() += 1;
        *self.states.lock().unwrap().entry(state).or_default() += 1;
        match state {
            Some(Breaker::Closed) | Some(Breaker::HalfOpen) => {}
            Some(other) => self.violation(format!(
                "{} generation {generation}: request {} arrived while the breaker was {other:?}",
                self.name, req.id
            )),
            None => self.violation(format!(
                "{} generation {generation}: request {} came from no live chain",
                self.name, req.id
            )),
        }
        {
            let mut live = self.live.lock().unwrap();
            for a in live.values_mut().filter(|a| a.generation == generation) {
                a.later.push((req.id, req.arrived, state));
            }
            live.insert(
                req.id,
                Live {
                    generation,
                    later: Vec::new(),
                },
            );
        }
        let line = req.line().unwrap_or_default();
        let (best, second) = (format!("EN {line}"), format!("EN2 {line}"));
        let options = [best.as_str(), second.as_str()];
        let f = self.format;
        let ok_bytes = serde_json::to_vec(&f.ok(&options)).unwrap();
        let half = ok_bytes.len() / 2;
        let status = |(code, body): (u16, serde_json::Value)| Fault::reply(code, &body);
        match outcome {
            Outcome::Ok => Fault::reply(200, &f.ok(&options)),
            Outcome::Fenced => Fault::reply(200, &f.ok_fenced(&options)),
            Outcome::RateLimited => {
                let secs = 0.05 + f64::from(extra % 100) / 1000.0;
                let headers = f.rate_limit_headers(secs);
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Fault::reply_with(429, &headers, &f.rate_limited(secs))
            }
            Outcome::ServerError => status(f.overloaded()),
            Outcome::BadRequest => status(f.bad_request("Invalid value at 'generation_config'")),
            Outcome::Refusal => Fault::reply(200, &f.refusal()),
            Outcome::Unauthorized => status(f.unauthorized("API key not valid.")),
            Outcome::ModelMissing => status(f.model_missing()),
            Outcome::NoHeaders => Fault::NoHeaders,
            Outcome::Trickle => Fault::Trickle {
                body: ok_bytes,
                every: Duration::from_millis(100),
            },
            Outcome::CutShort => Fault::CutShort {
                body: ok_bytes,
                sent: half,
            },
            Outcome::Reset => Fault::ResetMidBody {
                body: ok_bytes,
                sent: half,
            },
            Outcome::Huge => Fault::Huge { bytes: 3 << 20 },
            Outcome::ChunkedFast => Fault::ChunkedEndless { every: None },
            Outcome::ChunkedSlow => Fault::ChunkedEndless {
                every: Some(Duration::from_millis(50)),
            },
            Outcome::Http10 => Fault::Http10 {
                body: ok_bytes,
                cut: None,
            },
            Outcome::Http10Cut => Fault::Http10 {
                body: ok_bytes,
                cut: Some(half),
            },
        }
    }
}

fn lines_to_run() -> usize {
    std::env::var("YAKU_SOAK_LINES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_LINES)
}

fn gates() -> Gates {
    Gates::new(GateConfig::default()).unwrap()
}

/// The chain of generation `g`: both adapters, asking for model `soak-g{g}` (so the servers
/// know which chain a request came from), registered for the servers' breaker checks.
fn build_chain(
    g: usize,
    sides: &[(Arc<Side>, String)],
    registry: &Mutex<HashMap<String, Weak<Chain>>>,
) -> Arc<Chain> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let model = format!("soak-g{g}");
    let entries = sides
        .iter()
        .map(|(side, url)| {
            let settings = Settings {
                name: side.name.to_string(),
                model: model.clone(),
                base_url: url.clone(),
                api_key: Some(format!("soak-key-{}", side.name)),
                timeout: PROVIDER_TIMEOUT,
                extra: json!({}),
                json_mode: true,
            };
            let provider: Arc<dyn Provider> = match side.format {
                Format::Gemini => Arc::new(Gemini::new(settings).unwrap()),
                Format::OpenAi => Arc::new(OpenAi::new(settings).unwrap()),
            };
            ChainEntry::new(
                provider,
                BREAKER,
                RateLimit::new(0, 0, clock.clone()),
                String::new(),
            )
        })
        .collect();
    let chain = Arc::new(Chain::with_seed(
        entries,
        clock,
        ChainConfig {
            deadline: DEADLINE,
            retry_base: Duration::from_millis(20),
            // The fakes answer `EN <line>`, mostly Japanese: an untranslated reply to the checks.
            reply_checks: false,
        },
        SEED + g as u64,
    ));
    registry
        .lock()
        .unwrap()
        .insert(model, Arc::downgrade(&chain));
    chain
}

fn install_panic_counter() -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        c.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    count
}

#[test]
fn soak_every_line_gets_one_final_status_no_request_meets_an_open_breaker_and_memory_stays_flat() {
    let panics = install_panic_counter();
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes glibc's allocator; called before any other thread exists.
    unsafe {
        // A fixed threshold: glibc would otherwise raise it after the first 2 MiB reply buffer
        // is freed and keep later ones in fragmented heaps, which is the allocator's doing,
        // not a leak.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let violations = runtime.block_on(soak(lines_to_run()));
    drop(runtime);
    let mut violations = violations;
    let n = panics.load(Ordering::SeqCst);
    if n > 0 {
        violations.push(format!("{n} panics during the soak (see the output above)"));
    }
    assert!(
        violations.is_empty(),
        "{} invariant violations:\n  {}",
        violations.len(),
        violations
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

async fn soak(lines: usize) -> Vec<String> {
    let started = Instant::now();
    let mut violations: Vec<String> = Vec::new();
    let registry: Arc<Mutex<HashMap<String, Weak<Chain>>>> = Arc::default();
    let mut servers = Vec::new();
    let mut sides = Vec::new();
    for (i, (format, name)) in [(Format::Gemini, "gemini"), (Format::OpenAi, "groq")]
        .into_iter()
        .enumerate()
    {
        let side = Arc::new(Side {
            format,
            name,
            chains: registry.clone(),
            rng: Mutex::new(Lcg(SEED.wrapping_add(i as u64 * 7919))),
            disables: i == 0,
            live: Mutex::default(),
            seen: Mutex::default(),
            states: Mutex::default(),
            requests: AtomicU64::new(0),
            violations: Mutex::default(),
        });
        let (answering, ending) = (side.clone(), side.clone());
        let server = FaultServer::start_lean(
            move |req| answering.answer(req),
            move |served| ending.ended(served),
        )
        .await;
        sides.push((side, server.url()));
        servers.push(server);
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("yaku.db");
    let (store, _) = SqliteStore::open(&db).unwrap();
    let reopen = db.clone();
    let opener: Opener = Box::new(move || {
        let (s, _) = SqliteStore::open(&reopen)?;
        Ok(Arc::new(s) as Arc<dyn Store>)
    });
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let handle = Arc::new(StoreHandle::new(
        Some(Arc::new(store) as Arc<dyn Store>),
        opener,
        clock,
        STORE_RETRY,
    ));

    let mut generation = 0;
    let chain = build_chain(generation, &sides, &registry);
    let mut rig = Rig::start(chain, gates(), rig::settings(true, 2), Some(handle));
    let mut baseline: Option<u64> = None;
    let mut repeats = 0;
    for i in 0..lines {
        if i > 0 && i % RELOAD_EVERY == 0 {
            generation += 1;
            let reconfig = Reconfig {
                chain: build_chain(generation, &sides, &registry),
                gates: gates(),
                settings: rig::settings(true, 2),
            };
            rig.commands
                .send(DaemonCommand::Reconfigure(Box::new(reconfig)))
                .await
                .unwrap();
        }
        // Now and then an older line again: answered from the cache when it was translated.
        if i % 37 == 20 {
            rig.copy(&line(i - 13)).await;
            repeats += 1;
        }
        rig.copy(&line(i)).await;
        // Bursts: four lines copied back to back, so the latest-wins queue drops some.
        if i % 50 < 3 {
            continue;
        }
        rig.idle(STUCK).await;
        if i == 99 {
            baseline = Some(mem::settled_rss_bytes());
        }
        if std::env::var_os("YAKU_SOAK_TRACE").is_some() && i % 500 == 499 {
            println!(
                "  line {}: rss {:.1} MiB, {:?}",
                i + 1,
                mem::mib(mem::settled_rss_bytes()),
                rig.snapshot()
            );
        }
    }
    let counts = rig.idle(STUCK).await;
    let after = mem::settled_rss_bytes();
    let shown = rig.shown.total();
    let final_counts = rig.stop().await;
    // Requests the daemon gave up on end at the server once it notices the client left.
    hardening::poll::until_async(
        Duration::from_secs(10),
        "the servers to see every request end",
        || {
            sides
                .iter()
                .all(|(side, _)| side.live.lock().unwrap().is_empty())
        },
    )
    .await;
    let elapsed = started.elapsed();

    // ---- the history file ----
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM lines", [], |r| r.get(0))
        .unwrap();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT status, count(*) FROM lines GROUP BY status")
            .unwrap();
        let it = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap();
        for row in it {
            let (status, n) = row.unwrap();
            by_status.insert(status, n);
        }
    }
    let status = |s: &str| by_status.get(s).copied().unwrap_or(0) as u64;
    let rows = rows as u64;
    let max_latency: Option<i64> = conn
        .query_row(
            "SELECT max(latency_ms) FROM lines WHERE status = 'translated'",
            [],
            |r| r.get(0),
        )
        .unwrap();

    let expected_accepted = (lines + repeats) as u64;
    if final_counts.accepted != expected_accepted || final_counts.rejected != 0 {
        violations.push(format!(
            "the gates took {} of {expected_accepted} lines (rejected {}): the soak lines must all pass",
            final_counts.accepted, final_counts.rejected
        ));
    }
    if rows != final_counts.accepted {
        violations.push(format!(
            "{rows} history rows for {} accepted lines",
            final_counts.accepted
        ));
    }
    if status("pending") != 0 {
        violations.push(format!(
            "{} history rows still `pending` after shutdown ({} lines failed, {} were translated): a line without a final status",
            status("pending"),
            final_counts.failed,
            final_counts.translated
        ));
    }
    for (name, want) in [
        ("translated", final_counts.translated),
        ("failed", final_counts.failed),
        ("skipped", final_counts.superseded),
        ("cached", final_counts.cached),
        ("interrupted", 0),
    ] {
        if status(name) != want {
            violations.push(format!(
                "{} `{name}` rows, the daemon counted {want}",
                status(name)
            ));
        }
    }
    if let Some(ms) = max_latency
        && ms > (DEADLINE + Duration::from_millis(500)).as_millis() as i64
    {
        violations.push(format!(
            "a line was translated after {ms} ms, past the {DEADLINE:?} deadline"
        ));
    }

    // ---- the providers' side ----
    let mut seen: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut requests = 0;
    for (side, _) in &sides {
        requests += side.requests.load(Ordering::SeqCst);
        for (o, n) in side.seen.lock().unwrap().iter() {
            *seen.entry(*o).or_default() += n;
        }
        violations.extend(side.violations.lock().unwrap().iter().cloned());
        println!(
            "  {}: breaker at arrival {:?}",
            side.name,
            side.states.lock().unwrap()
        );
        let live = side.live.lock().unwrap().len();
        if live > 0 {
            violations.push(format!(
                "{}: {live} requests still held by the server after shutdown",
                side.name
            ));
        }
    }
    for (outcome, _) in WEIGHTS {
        if !seen.contains_key(outcome) && lines >= DEFAULT_LINES {
            violations.push(format!(
                "the servers never answered {outcome:?}: the soak did not exercise it"
            ));
        }
    }

    // ---- memory ----
    let baseline = baseline.unwrap_or(after);
    if after > baseline + RSS_TOLERANCE {
        violations.push(format!(
            "resident memory grew from {:.1} MiB after 100 lines to {:.1} MiB after {lines}",
            mem::mib(baseline),
            mem::mib(after)
        ));
    }
    if shown == 0 {
        violations.push("no notification was shown".into());
    }

    println!(
        "soak: {lines} lines (+{repeats} repeats) in {elapsed:?}, {requests} requests, {} generations\n  counts {counts:?}\n  history {by_status:?}, max latency {max_latency:?} ms\n  outcomes {seen:?}\n  rss {:.1} MiB after 100 lines, {:.1} MiB at the end; {shown} notices",
        generation + 1,
        mem::mib(baseline),
        mem::mib(after)
    );
    violations
}

fn line(i: usize) -> String {
    format!("{i}番目のセリフです。")
}
