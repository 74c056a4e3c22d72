//! Reply checks through the real adapters over loopback servers speaking Gemini's and
//! OpenAI's formats, and through the real binary: a bad reply is never shown, the next
//! provider is asked, and the reasons reach the history, the stats and stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};
use yaku::adapters::provider::{Settings, gemini::Gemini, openai::OpenAi};
use yaku::core::breaker::{BreakerConfig, State};
use yaku::core::chain::{Chain, ChainConfig, ChainEntry, SkipReason, Skipped};
use yaku::core::clock::{Clock, ManualClock};
use yaku::core::prompt::TranslationRequest;
use yaku::core::ratelimit::RateLimit;

const S: Duration = Duration::from_secs(1);

/// Bad reply texts, as the model's text part / message content, with the reason each is
/// refused with.
fn bad_texts() -> Vec<(String, &'static str)> {
    let opts = |o: &[&str]| json!({ "options": o }).to_string();
    vec![
        (
            opts(&["おはよう、先輩。", "おはようございます、先輩。"]),
            "untranslated",
        ),
        (
            opts(&["Good morning. 今日は本当にいい天気ですね、先輩。"]),
            "untranslated",
        ),
        (opts(&["the the the"]), "repetitive"),
        (
            opts(&[["I'm going home"; 10].join(", ").as_str()]),
            "repetitive",
        ),
        (r#"{"line": "おはよう、先輩。"}"#.into(), "echo"),
        (opts(&["I'm sorry, but I can't help with that."]), "refusal"),
        (
            "As an AI language model, I cannot translate this.".into(),
            "refusal",
        ),
        ("}}}{{{ not json".into(), "malformed"),
    ]
}

fn gemini_text(text: &str) -> Value {
    json!({
        "candidates": [{
            "content": { "parts": [{ "text": text }], "role": "model" },
            "finishReason": "STOP",
            "index": 0
        }],
        "modelVersion": "gemini-test"
    })
}

fn openai_text(text: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "openai/gpt-oss-120b",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop"
        }]
    })
}

fn settings(name: &str, model: &str, url: &str) -> Settings {
    Settings {
        name: name.into(),
        model: model.into(),
        base_url: url.into(),
        api_key: Some(FAKE_KEY.into()),
        timeout: 5 * S,
        extra: json!({}),
        json_mode: true,
    }
}

fn req() -> TranslationRequest {
    TranslationRequest {
        text: "おはよう、先輩。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        ..Default::default()
    }
}

/// Which wire format answers first.
#[derive(Clone, Copy, Debug)]
enum First {
    Gemini,
    OpenAi,
}

struct Rig {
    first: MockServer,
    second: MockServer,
    order: First,
    chain: Chain,
}

impl Rig {
    async fn new(order: First, reply_checks: bool) -> Rig {
        let first = MockServer::start().await;
        let second = MockServer::start().await;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let gemini = |url: &str| -> Arc<dyn yaku::core::provider::Provider> {
            Arc::new(Gemini::new(settings("gemini", "gemini-test", url)).unwrap())
        };
        let groq = |url: &str| -> Arc<dyn yaku::core::provider::Provider> {
            Arc::new(OpenAi::new(settings("groq", "openai/gpt-oss-120b", url)).unwrap())
        };
        let providers = match order {
            First::Gemini => [gemini(&first.uri()), groq(&second.uri())],
            First::OpenAi => [groq(&first.uri()), gemini(&second.uri())],
        };
        let entries = providers
            .into_iter()
            .map(|p| {
                ChainEntry::new(
                    p,
                    BreakerConfig::default(),
                    RateLimit::new(0, 0, clock.clone()),
                    String::new(),
                )
            })
            .collect();
        let cfg = ChainConfig {
            deadline: 20 * S,
            retry_base: Duration::from_millis(50),
            reply_checks,
        };
        let chain = Chain::with_seed(entries, clock, cfg, 1);
        Rig {
            first,
            second,
            order,
            chain,
        }
    }

    fn body(&self, first: bool, text: &str) -> Value {
        match (self.order, first) {
            (First::Gemini, true) | (First::OpenAi, false) => gemini_text(text),
            _ => openai_text(text),
        }
    }

    async fn replies(&self, first_text: &str, second_text: &str) {
        for (server, first, text) in [
            (&self.first, true, first_text),
            (&self.second, false, second_text),
        ] {
            server.reset().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_json(self.body(first, text)))
                .mount(server)
                .await;
        }
    }

    fn names(&self) -> (&'static str, &'static str) {
        match self.order {
            First::Gemini => ("gemini", "groq"),
            First::OpenAi => ("groq", "gemini"),
        }
    }
}

#[tokio::test]
async fn a_bad_reply_from_the_first_provider_is_not_shown_and_the_second_answers() {
    let good = json!({ "options": ["Good morning, senpai.", "Morning, senpai!"] }).to_string();
    for order in [First::Gemini, First::OpenAi] {
        let r = Rig::new(order, true).await;
        let (first, second) = r.names();
        for (bad, reason) in bad_texts() {
            r.replies(&bad, &good).await;
            let t = r
                .chain
                .translate(&req(), None)
                .await
                .unwrap_or_else(|e| panic!("{order:?} {bad:?}: {:?}", e.skipped));
            assert_eq!(t.provider, second, "{order:?} {bad:?}");
            assert_eq!(t.options, ["Good morning, senpai.", "Morning, senpai!"]);
            let skipped = &t.skipped[0];
            assert_eq!(
                (skipped.provider.as_str(), skipped.reason),
                (first, SkipReason::Refused),
                "{order:?} {bad:?}"
            );
            assert!(
                skipped.detail.starts_with(reason),
                "{order:?} {bad:?}: {}",
                skipped.detail
            );
            // A bad reply is an answer: the provider is up, its breaker stays closed.
            assert_eq!(
                r.chain.entry(first).unwrap().breaker_state(),
                State::Closed { failures: 0 }
            );
        }
    }
}

#[tokio::test]
async fn when_every_provider_replies_badly_the_line_fails_with_each_reason() {
    for order in [First::Gemini, First::OpenAi] {
        let r = Rig::new(order, true).await;
        let (first, second) = r.names();
        r.replies(
            &json!({ "options": ["おはよう、先輩。"] }).to_string(),
            "I'm sorry, but I cannot translate this request.",
        )
        .await;
        let failure = r.chain.translate(&req(), None).await.unwrap_err();
        assert_eq!(
            Skipped::reasons(&failure.skipped),
            format!(
                "{first}: gave no translation (untranslated); {second}: gave no translation (refusal)"
            )
        );
        let outcomes: Vec<&str> = failure.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, ["refused", "refused"], "{order:?}");
    }
}

#[tokio::test]
async fn with_reply_checks_off_a_content_bad_reply_is_shown_but_never_a_non_json_one() {
    for order in [First::Gemini, First::OpenAi] {
        let r = Rig::new(order, false).await;
        let (first, second) = r.names();
        let good = json!({ "options": ["Good morning."] }).to_string();
        r.replies(&json!({ "options": ["the the the"] }).to_string(), &good)
            .await;
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(
            (t.provider.as_str(), t.options.as_slice()),
            (first, &["the the the".to_string()][..])
        );

        r.replies("}}}{{{ not json", &good).await;
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(t.provider, second, "{order:?}");
        assert!(
            t.skipped[0].detail.starts_with("malformed"),
            "{:?}",
            t.skipped
        );
    }
}

#[tokio::test]
async fn control_characters_in_a_reply_never_reach_the_options() {
    for order in [First::Gemini, First::OpenAi] {
        let r = Rig::new(order, true).await;
        r.replies(
            &json!({ "options": ["Good\u{0} morning,\nsenpai.\u{7}", "\u{0}"] }).to_string(),
            "unused",
        )
        .await;
        let t = r.chain.translate(&req(), None).await.unwrap();
        assert_eq!(t.options, ["Good morning, senpai."], "{order:?}");
    }
}

/// The binary: `yaku translate` exits 3 naming each reason, and `yaku history` and `yaku stats`
/// show them afterwards.
#[tokio::test]
async fn the_reasons_show_in_translate_history_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let gemini = MockServer::start().await;
    let groq = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_text(
            &json!({ "options": ["the the the"] }).to_string(),
        )))
        .mount(&gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_text(
            &json!({ "options": ["おはよう、先輩。"] }).to_string(),
        )))
        .mount(&groq)
        .await;
    let cfg = write_config(
        dir.path(),
        &two_provider_config(&gemini.uri(), &groq.uri()),
        0o600,
    );
    let cfg = cfg.to_str().unwrap();
    let keys = [
        ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
        ("YAKU_TEST_GROQ_KEY", FAKE_KEY),
    ];
    let out = yaku(
        &["translate", "--config", cfg, "おはよう、先輩。"],
        &keys,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("gemini: gave no translation (repetitive)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("groq: gave no translation (untranslated)"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "nothing shown: {}",
        text(&out.stdout)
    );

    let out = yaku(&["history", "--json", "--config", cfg], &[], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let row: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(row["best"], Value::Null);
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains("gemini: gave no translation (repetitive)")
            && error.contains("groq: gave no translation (untranslated)"),
        "{error}"
    );

    let out = yaku(
        &["stats", "--json", "--since", "24h", "--config", cfg],
        &[],
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused: Vec<(String, u64)> = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap().to_string(),
                p["refused"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [("gemini".to_string(), 1), ("groq".to_string(), 1)]
    );
}

/// `[translation] reply_checks = false` in the config reaches the chain.
#[tokio::test]
async fn reply_checks_false_in_the_config_shows_a_content_bad_reply() {
    let dir = tempfile::tempdir().unwrap();
    let gemini = MockServer::start().await;
    let groq = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_text(
            &json!({ "options": ["おはよう、先輩。"] }).to_string(),
        )))
        .mount(&gemini)
        .await;
    let toml = two_provider_config(&gemini.uri(), &groq.uri()).replacen(
        "[translation]\n",
        "[translation]\nreply_checks = false\n",
        1,
    );
    let cfg = write_config(dir.path(), &toml, 0o600);
    let keys = [
        ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
        ("YAKU_TEST_GROQ_KEY", FAKE_KEY),
    ];
    let out = yaku(
        &[
            "translate",
            "--config",
            cfg.to_str().unwrap(),
            "おはよう、先輩。",
        ],
        &keys,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "おはよう、先輩。\n");
    assert!(groq.received_requests().await.unwrap().is_empty());
}
