//! Speakers through the real binary: `yaku translate --json` against loopback servers speaking
//! Gemini's and an OpenAI-compatible wire format. What each provider receives holds the
//! speaker apart from the line, with the glossary's rendering; the answer names the speaker;
//! the history keeps it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GEMINI_PATH: &str = "/models/gemini-test:generateContent";

fn gemini_reply(content: &Value) -> Value {
    json!({
        "candidates": [{
            "content": { "parts": [{ "text": content.to_string() }], "role": "model" },
            "finishReason": "STOP",
            "index": 0
        }],
        "modelVersion": "gemini-test"
    })
}

fn openai_reply(content: &Value) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "openai/gpt-oss-120b",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content.to_string() },
            "finish_reason": "stop"
        }]
    })
}

/// The system message and the request object a provider received, whatever its wire format.
fn sent(server_body: &Value) -> (String, Value) {
    let (system, user) = if let Some(contents) = server_body.get("contents") {
        (
            server_body["systemInstruction"]["parts"][0]["text"].clone(),
            contents[0]["parts"][0]["text"].clone(),
        )
    } else {
        (
            server_body["messages"][0]["content"].clone(),
            server_body["messages"][1]["content"].clone(),
        )
    };
    let user = user.as_str().unwrap();
    let object = serde_json::from_str(user.split_once('\n').unwrap().1).unwrap();
    (system.as_str().unwrap().to_string(), object)
}

async fn received(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one request");
    serde_json::from_slice(&requests[0].body).unwrap()
}

async fn translate(cfg: &str, provider: &str, line: &str) -> Value {
    let env = [
        ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
        ("YAKU_TEST_GROQ_KEY", FAKE_KEY),
    ];
    let out = yaku(
        &[
            "translate",
            "--json",
            "--provider",
            provider,
            "--config",
            cfg,
            line,
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn both_wire_formats_send_the_speaker_apart_and_the_answer_names_its_rendering() {
    let (gemini, groq) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[glossary]\n\"春香\" = \"Haruka\"\n",
        two_provider_config(&gemini.uri(), &groq.uri())
    );
    let cfg = write_config(dir.path(), &config, 0o600);
    let cfg = cfg.to_str().unwrap();
    // The model's renderings differ from the glossary's: the glossary wins where it knows the
    // name, the model's is shown where it does not.
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_reply(
            &json!({ "speaker": "Harukaa", "options": ["Hey, are you listening?"] }),
        )))
        .mount(&gemini)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(
            &json!({ "speaker": "Misaki", "options": ["Yeah."] }),
        )))
        .mount(&groq)
        .await;

    let v = translate(cfg, "gemini", "【春香】「ねえ、聞いてる？」").await;
    assert_eq!(v["speaker"], "Haruka");
    assert_eq!(v["best"], "Hey, are you listening?");
    let (system, object) = sent(&received(&gemini).await);
    assert_eq!(object["speaker"], "春香");
    assert_eq!(object["line"], "「ねえ、聞いてる？」");
    assert_eq!(
        object["glossary"],
        json!([{ "term": "春香", "translation": "Haruka" }]),
        "the speaker's rendering travels with it"
    );
    assert!(system.contains("\"speaker\""), "{system}");

    let v = translate(cfg, "groq", "美咲「うん」").await;
    assert_eq!(v["speaker"], "Misaki");
    let (system, object) = sent(&received(&groq).await);
    assert_eq!(object["speaker"], "美咲");
    assert_eq!(object["line"], "「うん」");
    assert!(object.get("glossary").is_none());
    assert!(system.contains("\"speaker\""), "{system}");

    let out = yaku(&["history", "--json", "--config", cfg], &[], None).await;
    let speakers: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["speaker"].clone())
        .collect();
    assert_eq!(speakers, [json!("春香"), json!("美咲")]);
}

#[tokio::test]
async fn a_line_that_only_looks_like_a_speaker_is_sent_whole() {
    let gemini = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &two_provider_config(&gemini.uri(), "http://127.0.0.1:9"),
        0o600,
    );
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_reply(
            &json!({ "speaker": "Someone", "options": ["I watched \"Your Name\" yesterday."] }),
        )))
        .mount(&gemini)
        .await;
    let v = translate(cfg.to_str().unwrap(), "gemini", "昨日「君の名は」を見た").await;
    assert!(v["speaker"].is_null(), "{v}");
    let (system, object) = sent(&received(&gemini).await);
    assert_eq!(object["line"], "昨日「君の名は」を見た");
    assert!(object.get("speaker").is_none());
    assert!(!system.contains("\"speaker\""), "{system}");
}
