//! The chain over the real HTTP adapters and loopback servers, on a manual clock: what the
//! providers' own request logs show about the breaker and the rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use yaku::adapters::provider::{Settings, gemini::Gemini, openai::OpenAi};
use yaku::core::breaker::{BreakerConfig, State};
use yaku::core::chain::{Chain, ChainConfig, ChainEntry, SkipReason};
use yaku::core::clock::{Clock, ManualClock};
use yaku::core::prompt::TranslationRequest;
use yaku::core::ratelimit::RateLimit;

const S: Duration = Duration::from_secs(1);

fn settings(name: &str, model: &str, url: &str) -> Settings {
    Settings {
        name: name.into(),
        model: model.into(),
        base_url: url.into(),
        api_key: Some(FAKE_KEY.into()),
        timeout: 5 * S,
        extra: serde_json::json!({}),
        json_mode: true,
    }
}

fn req() -> TranslationRequest {
    TranslationRequest {
        text: "おはよう、先輩。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        instructions: String::new(),
        ..Default::default()
    }
}

struct Rig {
    gemini: MockServer,
    groq: MockServer,
    clock: ManualClock,
    chain: Chain,
}

async fn rig(gemini_rpm: u32) -> Rig {
    let gemini = MockServer::start().await;
    let groq = MockServer::start().await;
    let clock = ManualClock::new();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let breaker = BreakerConfig {
        failures_to_open: 3,
        open: 30 * S,
        max_open: 900 * S,
    };
    let entries = vec![
        ChainEntry::new(
            Arc::new(Gemini::new(settings("gemini", "gemini-test", &gemini.uri())).unwrap()),
            breaker,
            RateLimit::new(gemini_rpm, 0, dyn_clock.clone()),
            "check GEMINI_API_KEY".into(),
        ),
        ChainEntry::new(
            Arc::new(OpenAi::new(settings("groq", "openai/gpt-oss-120b", &groq.uri())).unwrap()),
            breaker,
            RateLimit::new(0, 0, dyn_clock.clone()),
            "check GROQ_API_KEY".into(),
        ),
    ];
    let chain = Chain::with_seed(
        entries,
        dyn_clock,
        ChainConfig {
            deadline: 20 * S,
            retry_base: Duration::from_millis(50),
            reply_checks: true,
        },
        1,
    );
    Rig {
        gemini,
        groq,
        clock,
        chain,
    }
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn gemini_429_with_retry_delay_37s_goes_to_groq_and_gemini_hears_nothing_for_37s() {
    let r = rig(0).await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-test:generateContent"))
        .respond_with(ResponseTemplate::new(429).set_body_json(gemini_429("37s")))
        .up_to_n_times(1)
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-test:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_ok(&["From gemini."])))
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["From groq."])))
        .mount(&r.groq)
        .await;

    let t = r.chain.translate(&req(), None).await.unwrap();
    assert_eq!(t.provider, "groq");
    assert_eq!(
        (t.skipped[0].reason, t.skipped[0].retry_after),
        (SkipReason::RateLimited, Some(37 * S))
    );
    assert_eq!(count(&r.gemini).await, 1);

    for _ in 0..36 {
        r.clock.advance(S);
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, "groq");
    }
    r.clock.advance(Duration::from_millis(999));
    r.chain.translate(&req(), None).await.unwrap();
    assert_eq!(
        count(&r.gemini).await,
        1,
        "no request to gemini before 37 s of virtual time"
    );
    assert_eq!(count(&r.groq).await, 38);

    r.clock.advance(Duration::from_millis(1));
    let t = r.chain.translate(&req(), None).await.unwrap();
    assert_eq!(t.provider, "gemini");
    assert_eq!(count(&r.gemini).await, 2, "exactly one probe at 37 s");
    assert_eq!(
        r.chain.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
}

#[tokio::test]
async fn a_bad_gemini_key_disables_it_and_later_lines_send_it_nothing() {
    let r = rig(0).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(gemini_bad_key()))
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["From groq."])))
        .mount(&r.groq)
        .await;
    for _ in 0..5 {
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, "groq");
        assert_eq!(t.skipped[0].reason, SkipReason::Unauthorized);
        assert_eq!(t.skipped[0].advice, "check GEMINI_API_KEY");
        r.clock.advance(3600 * S);
    }
    assert_eq!(count(&r.gemini).await, 1);
    assert!(matches!(
        r.chain.entry("gemini").unwrap().breaker_state(),
        State::Disabled { .. }
    ));
}

#[tokio::test]
async fn a_safety_refusal_goes_to_the_next_provider_and_gemini_stays_closed() {
    let r = rig(0).await;
    let blocked = serde_json::json!({
        "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" },
        "usageMetadata": { "promptTokenCount": 12, "totalTokenCount": 12 },
        "modelVersion": "gemini-test"
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(blocked))
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["From groq."])))
        .mount(&r.groq)
        .await;
    for _ in 0..4 {
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(
            (t.provider.as_str(), t.skipped[0].reason),
            ("groq", SkipReason::Refused)
        );
    }
    assert_eq!(count(&r.gemini).await, 4);
    assert_eq!(
        r.chain.entry("gemini").unwrap().breaker_state(),
        State::Closed { failures: 0 }
    );
}

#[tokio::test]
async fn gemini_503s_are_retried_once_then_open_its_breaker() {
    let r = rig(0).await;
    let overloaded = serde_json::json!({ "error": { "code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE" } });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(overloaded))
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<html>502</html>"))
        .mount(&r.groq)
        .await;
    let err = r.chain.translate(&req(), None).await.unwrap_err();
    assert_eq!(count(&r.gemini).await, 2, "one retry per provider per line");
    assert_eq!(count(&r.groq).await, 2);
    assert!(
        err.skipped
            .iter()
            .all(|s| s.reason == SkipReason::Transient)
    );
    r.chain.translate(&req(), None).await.unwrap_err();
    assert!(matches!(
        r.chain.entry("gemini").unwrap().breaker_state(),
        State::Open { .. }
    ));
    let before = count(&r.gemini).await;
    let err = r.chain.translate(&req(), None).await.unwrap_err();
    assert_eq!(count(&r.gemini).await, before, "no request while open");
    assert_eq!(err.skipped[0].reason, SkipReason::BreakerOpen);
}

#[tokio::test]
async fn the_rate_limit_spaces_requests_so_the_provider_never_answers_429() {
    // A provider that allows 10 requests in any 60 s window and answers 429 past that.
    let r = rig(10).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_ok(&["From gemini."])))
        .mount(&r.gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["From groq."])))
        .mount(&r.groq)
        .await;
    let start = r.clock.now();
    let mut gemini_times = Vec::new();
    for _ in 0..120 {
        let t = r.chain.translate(&req(), None).await.unwrap();
        if t.provider == "gemini" {
            gemini_times.push(r.clock.now() - start);
        } else {
            assert_eq!(t.skipped[0].reason, SkipReason::NoCapacity);
        }
        r.clock.advance(Duration::from_millis(1500));
    }
    assert_eq!(count(&r.gemini).await, gemini_times.len());
    for (i, t) in gemini_times.iter().enumerate() {
        let window = gemini_times[i..]
            .iter()
            .take_while(|u| **u < *t + 60 * S)
            .count();
        assert!(
            window <= 10,
            "{window} gemini requests within 60 s of {t:?}"
        );
    }
    assert!(
        gemini_times.len() >= 29,
        "the budget is used, not wasted: {}",
        gemini_times.len()
    );
}
