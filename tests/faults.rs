//! Faults below HTTP status codes, against both HTTP adapters (Gemini and OpenAI formats) and
//! through a two-provider chain: headers that never come, a body that trickles, a body cut
//! short, a reset in the middle of the body, a refused connection, a 10 MB body, a chunked
//! body that never ends, and HTTP/1.0 close-delimited bodies (valid and cut).
//!
//! For each: the outcome class (Transient, except a valid HTTP/1.0 body, which is read), the
//! timeout and the line's deadline hold, the body is not read past the adapter's 2 MiB cap, no
//! panic, and the next provider in the chain answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hardening/mod.rs"]
mod hardening;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use hardening::faultserver::{End, Fault, FaultServer, Served, refused_url};
use hardening::poll;
use hardening::replies::Format;
use yaku::adapters::provider::Settings;
use yaku::adapters::provider::gemini::Gemini;
use yaku::adapters::provider::openai::OpenAi;
use yaku::core::breaker::{BreakerConfig, State};
use yaku::core::chain::{Chain, ChainConfig, ChainEntry, SkipReason};
use yaku::core::clock::{Clock, TokioClock};
use yaku::core::prompt::{Prompt, TranslationRequest};
use yaku::core::provider::{FailureClass, Provider, ProviderFailure};
use yaku::core::ratelimit::RateLimit;

const KEY: &str = "AIzaFAKEhardeningFaultsKey-0000000000000";
const MODEL: &str = "test-model";
/// The provider timeout of these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The line's deadline through the chain.
const DEADLINE: Duration = Duration::from_secs(3);
/// What a loaded 2-core CI machine may add to a timeout or a deadline.
const SLACK: Duration = Duration::from_millis(800);
const TEN_MB: usize = 10 * 1024 * 1024;
const CAP: usize = 2 * 1024 * 1024;

const FORMATS: [Format; 2] = [Format::Gemini, Format::OpenAi];

fn settings(name: &str, base_url: &str, timeout: Duration) -> Settings {
    Settings {
        name: name.to_string(),
        model: MODEL.to_string(),
        base_url: base_url.to_string(),
        api_key: Some(KEY.to_string()),
        timeout,
        extra: json!({}),
        json_mode: true,
    }
}

fn adapter(format: Format, name: &str, base_url: &str, timeout: Duration) -> Arc<dyn Provider> {
    let s = settings(name, base_url, timeout);
    match format {
        Format::Gemini => Arc::new(Gemini::new(s).unwrap()),
        Format::OpenAi => Arc::new(OpenAi::new(s).unwrap()),
    }
}

fn request() -> TranslationRequest {
    TranslationRequest {
        text: "こんばんは、澪。雨、止まないね。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        ..Default::default()
    }
}

fn prompt() -> Prompt {
    Prompt::build(&request())
}

/// A complete, valid answer in `format`, as bytes.
fn ok_body(format: Format) -> Vec<u8> {
    serde_json::to_vec(&format.ok(&["Good evening, Mio.", "Evening, Mio."])).unwrap()
}

/// One fault, and what the adapter must make of it.
#[derive(Clone)]
struct Case {
    name: &'static str,
    /// None: a refused connection (no server at all).
    fault: Option<Fault>,
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Transient, only once the timeout has passed.
    TimedOut,
    /// Transient, well before the timeout: the fault itself is noticed.
    FailsFast,
    /// Transient because the reply is over the 2 MiB cap ("larger than" in the detail).
    OverCap,
    /// The options are read.
    Answers,
}

fn cases(format: Format) -> Vec<Case> {
    let body = ok_body(format);
    let half = body.len() / 2;
    vec![
        Case {
            name: "headers never come",
            fault: Some(Fault::NoHeaders),
            expect: Expect::TimedOut,
        },
        Case {
            name: "the body trickles one byte a second",
            fault: Some(Fault::Trickle {
                body: body.clone(),
                every: Duration::from_secs(1),
            }),
            expect: Expect::TimedOut,
        },
        Case {
            name: "the body is cut short and the connection closed",
            fault: Some(Fault::CutShort {
                body: body.clone(),
                sent: half,
            }),
            expect: Expect::FailsFast,
        },
        Case {
            name: "the connection is reset mid-body",
            fault: Some(Fault::ResetMidBody {
                body: body.clone(),
                sent: half,
            }),
            expect: Expect::FailsFast,
        },
        Case {
            name: "the connection is refused",
            fault: None,
            expect: Expect::FailsFast,
        },
        Case {
            name: "a 200 with a 10 MB body",
            fault: Some(Fault::Huge { bytes: TEN_MB }),
            expect: Expect::OverCap,
        },
        Case {
            name: "a chunked body that never ends (a chunk every 50 ms)",
            fault: Some(Fault::ChunkedEndless {
                every: Some(Duration::from_millis(50)),
            }),
            expect: Expect::TimedOut,
        },
        Case {
            name: "a chunked body that never ends (as fast as it is read)",
            fault: Some(Fault::ChunkedEndless { every: None }),
            expect: Expect::OverCap,
        },
        Case {
            name: "an HTTP/1.0 close-delimited body cut in the middle",
            fault: Some(Fault::Http10 {
                body: body.clone(),
                cut: Some(half),
            }),
            expect: Expect::FailsFast,
        },
        Case {
            name: "an HTTP/1.0 close-delimited body, whole",
            fault: Some(Fault::Http10 { body, cut: None }),
            expect: Expect::Answers,
        },
    ]
}

impl Expect {
    /// The provider timeout to test with: 1 s where the timeout is what must end the call,
    /// 3 s elsewhere, so that "noticed before the timeout" has a wide margin on a busy machine.
    fn timeout(self) -> Duration {
        match self {
            Expect::TimedOut => TIMEOUT,
            _ => Duration::from_secs(3),
        }
    }
}

/// Checks one adapter call against `expect`; returns what is wrong, if anything.
fn judge(
    expect: Expect,
    result: &Result<String, ProviderFailure>,
    elapsed: Duration,
    served: &[Served],
) -> Vec<String> {
    let mut wrong = Vec::new();
    match (expect, result) {
        (Expect::Answers, Ok(text)) => {
            if yaku::core::reply::parse_options(text, 3).is_err() {
                wrong.push(format!("the answer did not parse: {text:?}"));
            }
        }
        (Expect::Answers, Err(f)) => wrong.push(format!("expected an answer, got {f}")),
        (_, Ok(text)) => wrong.push(format!("expected a transient failure, got Ok({text:?})")),
        (_, Err(f)) => {
            if f.class != FailureClass::Transient {
                wrong.push(format!("class {} (expected transient): {f}", f.class));
            }
            if expect == Expect::OverCap && !f.detail.contains("larger than") {
                wrong.push(format!("detail does not say the reply is too large: {f}"));
            }
        }
    }
    if elapsed > TIMEOUT + SLACK {
        wrong.push(format!("took {elapsed:?}, past the {TIMEOUT:?} timeout"));
    }
    match expect {
        Expect::TimedOut if elapsed < TIMEOUT - Duration::from_millis(100) => wrong.push(format!(
            "failed after {elapsed:?}, before the timeout: not a timeout"
        )),
        Expect::FailsFast | Expect::Answers if elapsed >= TIMEOUT => wrong.push(format!(
            "took {elapsed:?}: the fault was only noticed at the timeout"
        )),
        _ => {}
    }
    if expect == Expect::OverCap {
        for s in served {
            if s.body_written >= TEN_MB {
                wrong.push(format!(
                    "the server wrote the whole body ({} bytes): it was read past the cap",
                    s.body_written
                ));
            }
        }
    }
    wrong
}

async fn server_for(case: &Case) -> (Option<FaultServer>, String) {
    match &case.fault {
        Some(f) => {
            let s = FaultServer::always(f.clone()).await;
            let url = s.url();
            (Some(s), url)
        }
        None => (None, refused_url()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_level_fault_has_the_right_outcome_class_within_the_timeout_for_both_adapters() {
    let mut set = JoinSet::new();
    for format in FORMATS {
        for case in cases(format) {
            set.spawn(async move {
                let (server, url) = server_for(&case).await;
                let provider = adapter(format, format.name(), &url, case.expect.timeout());
                let started = Instant::now();
                let result = provider.complete(&prompt()).await;
                let elapsed = started.elapsed();
                // The server records a request's end when it notices it: give it a moment.
                if let Some(s) = &server {
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while s.served().iter().any(|r| r.end.is_none()) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                let served = server.as_ref().map(FaultServer::served).unwrap_or_default();
                let wrong = judge(case.expect, &result, elapsed, &served);
                (format, case.name, result, elapsed, served, wrong)
            });
        }
    }
    let mut report = Vec::new();
    let mut failures = 0;
    while let Some(joined) = set.join_next().await {
        let (format, name, result, elapsed, served, wrong) =
            joined.expect("a fault made the adapter (or the test server) panic");
        let written: Vec<usize> = served.iter().map(|s| s.body_written).collect();
        let line = format!(
            "{:<7} {name}: {:?} in {elapsed:?}, server wrote {written:?}",
            format.name(),
            result.as_ref().map(|_| "ok").map_err(|f| f.to_string())
        );
        if wrong.is_empty() {
            report.push(format!("  ok    {line}"));
        } else {
            failures += 1;
            report.push(format!(
                "  WRONG {line}\n        {}",
                wrong.join("\n        ")
            ));
        }
    }
    report.sort();
    println!("{}", report.join("\n"));
    assert_eq!(failures, 0, "faults judged wrong:\n{}", report.join("\n"));
    assert_eq!(report.len(), 2 * cases(Format::Gemini).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_reply_is_refused_at_the_two_mib_cap_and_never_sent_whole() {
    for format in FORMATS {
        let server = FaultServer::always(Fault::Huge { bytes: TEN_MB }).await;
        let provider = adapter(format, format.name(), &server.url(), Duration::from_secs(5));
        let f = provider
            .complete(&prompt())
            .await
            .expect_err("a 10 MB reply cannot be an answer");
        assert_eq!(f.class, FailureClass::Transient, "{f}");
        assert!(
            f.detail.contains("larger than 2 MiB"),
            "{}: the failure does not say the reply was over the cap: {f}",
            format.name()
        );
        poll::until(
            poll::secs(5.0),
            "the server to see the client leave",
            || server.served().iter().all(|s| s.end.is_some()),
        );
        let served = server.served();
        assert_eq!(served.len(), 1);
        let s = &served[0];
        assert_eq!(
            s.end,
            Some(End::ClientGone),
            "{}: the client must hang up, not read on",
            format.name()
        );
        // The client reads at most 2 MiB; what else the server got rid of sat in the two
        // kernels' socket buffers (the server's is 16 KiB) when the client hung up.
        assert!(
            s.body_written > CAP && s.body_written < TEN_MB / 2,
            "{}: the server wrote {} bytes before the client hung up (cap {CAP})",
            format.name(),
            s.body_written
        );
    }
}

/// A chain of the faulty provider then a healthy one (wiremock, same format).
async fn faulty_then_healthy(format: Format, faulty_url: &str) -> (Chain, MockServer) {
    let healthy = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format.path(MODEL)))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(format.ok(&["Healthy answer.", "Second."])),
        )
        .mount(&healthy)
        .await;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let entry = |p: Arc<dyn Provider>| {
        ChainEntry::new(
            p,
            BreakerConfig::default(),
            RateLimit::new(0, 0, clock.clone()),
            String::new(),
        )
    };
    let chain = Chain::with_seed(
        vec![
            entry(adapter(format, "faulty", faulty_url, TIMEOUT)),
            entry(adapter(format, "healthy", &healthy.uri(), TIMEOUT)),
        ],
        clock.clone(),
        ChainConfig {
            deadline: DEADLINE,
            retry_base: Duration::from_millis(100),
            reply_checks: true,
        },
        1,
    );
    (chain, healthy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_each_fault_the_next_provider_answers_within_the_line_deadline() {
    let mut set = JoinSet::new();
    for format in FORMATS {
        for case in cases(format) {
            set.spawn(async move {
                let (server, url) = server_for(&case).await;
                let (chain, healthy) = faulty_then_healthy(format, &url).await;
                let started = Instant::now();
                let result = chain.translate(&request(), None).await;
                let elapsed = started.elapsed();
                let healthy_calls = healthy.received_requests().await.unwrap_or_default().len();
                drop(server);
                let mut wrong = Vec::new();
                match (&result, case.expect) {
                    (Ok(t), Expect::Answers) => {
                        if t.provider != "faulty" {
                            wrong.push(format!("a valid HTTP/1.0 reply was not used: {t:?}"));
                        }
                    }
                    (Ok(t), _) => {
                        if t.provider != "healthy" {
                            wrong.push(format!("answered by {}", t.provider));
                        }
                        let why: Vec<(&str, SkipReason)> = t
                            .skipped
                            .iter()
                            .map(|s| (s.provider.as_str(), s.reason))
                            .collect();
                        if why != [("faulty", SkipReason::Transient)] {
                            wrong.push(format!("skipped {why:?}, expected faulty: transient"));
                        }
                        if healthy_calls != 1 {
                            wrong
                                .push(format!("the healthy provider got {healthy_calls} requests"));
                        }
                    }
                    (Err(f), _) => wrong.push(format!("no provider answered: {f:?}")),
                }
                if elapsed > DEADLINE + SLACK {
                    wrong.push(format!("took {elapsed:?}, past the {DEADLINE:?} deadline"));
                }
                (format, case.name, elapsed, wrong)
            });
        }
    }
    let mut report = Vec::new();
    let mut failures = 0;
    while let Some(joined) = set.join_next().await {
        let (format, name, elapsed, wrong) = joined.expect("a fault made the chain panic");
        if wrong.is_empty() {
            report.push(format!("  ok    {:<7} {name} ({elapsed:?})", format.name()));
        } else {
            failures += 1;
            report.push(format!(
                "  WRONG {:<7} {name} ({elapsed:?}): {}",
                format.name(),
                wrong.join("; ")
            ));
        }
    }
    report.sort();
    println!("{}", report.join("\n"));
    assert_eq!(failures, 0, "chains judged wrong:\n{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_whose_providers_all_hang_ends_at_its_deadline_and_hangs_up_on_both() {
    for format in FORMATS {
        let first = FaultServer::always(Fault::NoHeaders).await;
        let second = FaultServer::always(Fault::Trickle {
            body: ok_body(format),
            every: Duration::from_millis(500),
        })
        .await;
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let slow = Duration::from_secs(30); // far past the deadline
        let entries = vec![
            ChainEntry::new(
                adapter(format, "first", &first.url(), slow),
                BreakerConfig::default(),
                RateLimit::new(0, 0, clock.clone()),
                String::new(),
            ),
            ChainEntry::new(
                adapter(format, "second", &second.url(), slow),
                BreakerConfig::default(),
                RateLimit::new(0, 0, clock.clone()),
                String::new(),
            ),
        ];
        // The deadline is split: the first provider eats all of it, the second gets nothing.
        let chain = Chain::with_seed(
            entries,
            clock,
            ChainConfig {
                deadline: DEADLINE,
                retry_base: Duration::from_millis(100),
                reply_checks: true,
            },
            2,
        );
        let started = Instant::now();
        let failure = chain
            .translate(&request(), None)
            .await
            .expect_err("nothing can answer");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= DEADLINE - Duration::from_millis(50) && elapsed <= DEADLINE + SLACK,
            "{}: the line ended after {elapsed:?}, the deadline is {DEADLINE:?}",
            format.name()
        );
        let first_reason = failure.skipped.iter().find(|s| s.provider == "first");
        assert!(
            first_reason.is_some_and(|s| s.reason == SkipReason::Transient),
            "{failure:?}"
        );
        // The cut-off request is dropped: the server sees the client hang up.
        poll::until_ctx(
            poll::secs(3.0),
            "the hanging server to see the client leave",
            || {
                first
                    .served()
                    .iter()
                    .all(|s| s.end == Some(End::ClientGone))
            },
            || format!("{:?}", first.served()),
        );
        assert_eq!(first.count(), 1, "one request, no retry past the deadline");
        assert_eq!(
            second.count(),
            0,
            "no time was left for the second provider"
        );
        // A half-open or closed breaker must not be left waiting for a dropped call.
        assert!(
            matches!(
                chain.entry("first").unwrap().breaker_state(),
                State::Closed { .. }
            ),
            "{:?}",
            chain.entry("first").unwrap().breaker_state()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_byte_level_faults_open_the_breaker_and_no_request_reaches_the_server_while_open()
{
    for format in FORMATS {
        let body = ok_body(format);
        let half = body.len() / 2;
        let table = [
            (
                "cut short",
                Fault::CutShort {
                    body: body.clone(),
                    sent: half,
                },
            ),
            (
                "reset mid-body",
                Fault::ResetMidBody {
                    body: body.clone(),
                    sent: half,
                },
            ),
            (
                "HTTP/1.0 cut",
                Fault::Http10 {
                    body: body.clone(),
                    cut: Some(half),
                },
            ),
            ("endless chunks", Fault::ChunkedEndless { every: None }),
        ];
        for (name, fault) in table {
            let server = FaultServer::always(fault).await;
            let clock: Arc<dyn Clock> = Arc::new(TokioClock);
            let chain = Chain::with_seed(
                vec![ChainEntry::new(
                    adapter(format, "faulty", &server.url(), TIMEOUT),
                    BreakerConfig {
                        failures_to_open: 3,
                        open: Duration::from_secs(60),
                        max_open: Duration::from_secs(120),
                    },
                    RateLimit::new(0, 0, clock.clone()),
                    String::new(),
                )],
                clock,
                ChainConfig {
                    deadline: DEADLINE,
                    retry_base: Duration::from_millis(10),
                    reply_checks: true,
                },
                3,
            );
            let mut reasons = Vec::new();
            for _ in 0..4 {
                let f = chain
                    .translate(&request(), None)
                    .await
                    .expect_err("a faulty provider cannot answer");
                reasons.push(f.skipped[0].reason);
            }
            let tag = format!("{} {name}", format.name());
            // Line 1: a request and its one retry; line 2: the third failure opens the breaker,
            // so its retry is not sent; lines 3 and 4 send nothing.
            assert_eq!(
                server.count(),
                3,
                "{tag}: requests reached the server while open"
            );
            assert_eq!(
                reasons,
                [
                    SkipReason::Transient,
                    SkipReason::BreakerOpen,
                    SkipReason::BreakerOpen,
                    SkipReason::BreakerOpen
                ],
                "{tag}"
            );
            assert!(
                matches!(
                    chain.entry("faulty").unwrap().breaker_state(),
                    State::Open { .. }
                ),
                "{tag}"
            );
        }
    }
}
