//! The two HTTP providers (Gemini `generateContent`, OpenAI-compatible `chat/completions`)
//! against real loopback servers: wiremock for whole replies built from `tests/fixtures/`,
//! and a small raw TCP server for what only bytes can show (silence, a cut-off body).
//!
//! Every key here is fake; nothing leaves 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use yaku::adapters::provider::Settings;
use yaku::adapters::provider::gemini::Gemini;
use yaku::adapters::provider::openai::OpenAi;
use yaku::core::prompt::{Prompt, TranslationRequest};
use yaku::core::provider::{FailureClass, Provider, ProviderFailure, QuotaScope};
use yaku::core::reply::parse_options;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Fake keys, shaped like the real ones (`AIza` + 35, `gsk_` + 52). Fixtures that echo a key
/// hold `{{GEMINI_KEY}}` / `{{GROQ_KEY}}`, replaced by these when loaded.
const GEMINI_KEY: &str = "AIzaFAKEyakuTestKeyNotReal-000000000000";
const GROQ_KEY: &str = "gsk_FAKEyakuTestKeyNotReal000000000000000000000000000000";

const GEMINI_MODEL: &str = "gemini-3-flash-test";
/// The path the Gemini adapter must call when `base_url` is `{server}/v1beta`.
const GEMINI_PATH: &str = "/v1beta/models/gemini-3-flash-test:generateContent";
const GROQ_MODEL: &str = "openai/gpt-oss-test";
/// The path the OpenAI-compatible adapter must call when `base_url` is `{server}/openai/v1`.
const GROQ_PATH: &str = "/openai/v1/chat/completions";

/// The three options in `gemini_ok_json` and `groq_ok_json`.
const EVENING_OPTIONS: [&str; 3] = [
    "Good evening, Mio. The rain won't stop, will it?",
    "Evening, Mio. Looks like this rain isn't letting up.",
    "Good evening, Mio. It just keeps raining, huh?",
];
/// The three options in `gemini_ok_fenced` and `groq_ok_think`.
const STATION_OPTIONS: [&str; 3] = [
    "I'll be waiting by the station.",
    "I'll wait for you at the station.",
    "See you at the station, then.",
];

/// One HTTP reply loaded from `tests/fixtures/<name>.json`.
#[derive(Clone)]
struct Fixture {
    status: u16,
    headers: Vec<(String, String)>,
    content_type: String,
    body: Vec<u8>,
}

fn fixture(name: &str) -> Fixture {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let text = text
        .replace("{{GEMINI_KEY}}", GEMINI_KEY)
        .replace("{{GROQ_KEY}}", GROQ_KEY);
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let status = v["status"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: no status")) as u16;
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let content_type = v["content_type"]
        .as_str()
        .unwrap_or("application/json")
        .to_string();
    let body = match v.get("body_text").and_then(Value::as_str) {
        Some(raw) => raw.as_bytes().to_vec(),
        None => {
            serde_json::to_vec(v.get("body").unwrap_or_else(|| panic!("{name}: no body"))).unwrap()
        }
    };
    Fixture {
        status,
        headers,
        content_type,
        body,
    }
}

impl Fixture {
    /// The same reply with `name` set to `value` (replacing any value the fixture had).
    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `error.message` of a JSON error body.
    fn error_message(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap();
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    fn template(&self) -> ResponseTemplate {
        let mut t =
            ResponseTemplate::new(self.status).set_body_raw(self.body.clone(), &self.content_type);
        for (k, v) in &self.headers {
            t = t.insert_header(k.as_str(), v.as_str());
        }
        t
    }
}

/// Settings as the config would resolve them: `extra` an empty object, JSON mode on.
fn settings(name: &str, model: &str, base_url: &str, api_key: Option<&str>) -> Settings {
    Settings {
        name: name.to_string(),
        model: model.to_string(),
        base_url: base_url.to_string(),
        api_key: api_key.map(str::to_string),
        timeout: Duration::from_secs(5),
        extra: json!({}),
        json_mode: true,
    }
}

fn gemini_settings(server: &str) -> Settings {
    settings(
        "gemini",
        GEMINI_MODEL,
        &format!("{server}/v1beta"),
        Some(GEMINI_KEY),
    )
}

fn groq_settings(server: &str) -> Settings {
    settings(
        "groq",
        GROQ_MODEL,
        &format!("{server}/openai/v1"),
        Some(GROQ_KEY),
    )
}

fn gemini(settings: Settings) -> Box<dyn Provider> {
    Box::new(Gemini::new(settings).unwrap())
}

fn openai(settings: Settings) -> Box<dyn Provider> {
    Box::new(OpenAi::new(settings).unwrap())
}

fn prompt() -> Prompt {
    Prompt::build(&TranslationRequest {
        text: "こんばんは、澪。雨、止まないね。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        instructions: String::new(),
        ..Default::default()
    })
}

/// What one call did: the provider's result and the requests the server received.
struct Exchange {
    result: Result<String, ProviderFailure>,
    requests: Vec<Request>,
}

/// Serves `reply` on `POST route` (and nothing else), makes the provider with the server's
/// base URI, and calls it once. The mock must be hit exactly once (checked when the server
/// drops), so a reply can never come from wiremock's own 404 for a wrong path.
async fn exchange(
    route: &str,
    reply: &Fixture,
    make: impl FnOnce(&str) -> Box<dyn Provider>,
) -> Exchange {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(reply.template())
        .expect(1)
        .mount(&server)
        .await;
    let provider = make(&server.uri());
    let result = provider.complete(&prompt()).await;
    let requests = server.received_requests().await.unwrap_or_default();
    Exchange { result, requests }
}

async fn run_gemini(reply: &Fixture, tweak: impl FnOnce(&mut Settings)) -> Exchange {
    exchange(GEMINI_PATH, reply, |uri| {
        let mut s = gemini_settings(uri);
        tweak(&mut s);
        gemini(s)
    })
    .await
}

async fn run_groq(reply: &Fixture, tweak: impl FnOnce(&mut Settings)) -> Exchange {
    exchange(GROQ_PATH, reply, |uri| {
        let mut s = groq_settings(uri);
        tweak(&mut s);
        openai(s)
    })
    .await
}

async fn gemini_reply(name: &str) -> Result<String, ProviderFailure> {
    run_gemini(&fixture(name), |_| {}).await.result
}

async fn groq_reply(name: &str) -> Result<String, ProviderFailure> {
    run_groq(&fixture(name), |_| {}).await.result
}

/// The call failed with `class`; returns the failure for further checks.
#[track_caller]
fn expect_failure(result: Result<String, ProviderFailure>, class: FailureClass) -> ProviderFailure {
    match result {
        Ok(text) => panic!("expected a {class} failure, got Ok({text:?})"),
        Err(f) => {
            assert_eq!(f.class, class, "wrong class for {f:?}");
            f
        }
    }
}

/// A `RateLimited` failure in `scope` asking to wait `secs` (to the millisecond).
#[track_caller]
fn expect_rate_limit(
    result: Result<String, ProviderFailure>,
    scope: QuotaScope,
    secs: f64,
) -> ProviderFailure {
    let f = expect_failure(result, FailureClass::RateLimited);
    assert_eq!(f.scope, scope, "{f:?}");
    let wait = f
        .retry_after
        .unwrap_or_else(|| panic!("no retry_after in {f:?}"))
        .as_secs_f64();
    assert!(
        (wait - secs).abs() < 1e-3,
        "retry_after {wait} s, expected {secs} s ({f:?})"
    );
    f
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers.get(name).map(|v| v.to_str().unwrap())
}

fn options(text: &str) -> Vec<String> {
    parse_options(text, 3).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// Gemini: success
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_json_reply_gives_three_options_and_request_carries_key_header_schema_and_extra() {
    let ex = run_gemini(&fixture("gemini_ok_json"), |s| {
        s.extra = json!({ "thinkingConfig": { "thinkingLevel": "minimal" } });
    })
    .await;

    let text = ex.result.expect("a 200 JSON-mode reply");
    assert_eq!(options(&text), EVENING_OPTIONS);

    assert_eq!(ex.requests.len(), 1);
    let req = &ex.requests[0];
    assert_eq!(req.url.path(), GEMINI_PATH);
    assert!(
        req.url.query_pairs().all(|(k, _)| k != "key"),
        "key in the query: {}",
        req.url
    );
    assert!(
        !req.url.as_str().contains(GEMINI_KEY),
        "key in the URL: {}",
        req.url
    );
    assert_eq!(header(req, "x-goog-api-key"), Some(GEMINI_KEY));
    assert!(header(req, "content-type").is_some_and(|c| c.starts_with("application/json")));

    let body: Value = serde_json::from_slice(&req.body).expect("a JSON request body");
    let p = prompt();
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], p.system);
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(body["contents"][0]["parts"][0]["text"], p.user);
    let generation = &body["generationConfig"];
    assert_eq!(generation["responseMimeType"], "application/json");
    assert_eq!(
        generation["responseSchema"]["properties"]["options"]["type"],
        "ARRAY"
    );
    assert_eq!(generation["responseSchema"]["required"], json!(["options"]));
    assert_eq!(
        generation["thinkingConfig"],
        json!({ "thinkingLevel": "minimal" }),
        "extra not merged: {body}"
    );
    assert!(
        body.get("thinkingConfig").is_none(),
        "extra went to the top level: {body}"
    );
}

#[tokio::test]
async fn gemini_drops_thought_parts_and_concatenates_the_answer_parts() {
    let text = gemini_reply("gemini_ok_thoughts")
        .await
        .expect("a reply with thought parts");
    assert_eq!(
        text,
        r#"{"options": ["Good evening, Mio.", "Evening, Mio.", "Hey there, Mio."]}"#
    );
    assert!(!text.contains("THOUGHT"));
    assert_eq!(
        options(&text),
        ["Good evening, Mio.", "Evening, Mio.", "Hey there, Mio."]
    );
}

#[tokio::test]
async fn gemini_fenced_json_reply_still_parses_to_options() {
    let text = gemini_reply("gemini_ok_fenced")
        .await
        .expect("a fenced reply");
    assert!(
        text.contains("```json"),
        "the provider returns the raw text: {text:?}"
    );
    assert_eq!(options(&text), STATION_OPTIONS);
}

// ---------------------------------------------------------------------------------------------
// Gemini: rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_429_waits_for_retry_info_delay_not_the_message_delay() {
    expect_rate_limit(
        gemini_reply("gemini_429_retry_info").await,
        QuotaScope::Short,
        37.0,
    );
}

#[tokio::test]
async fn gemini_429_fractional_retry_delay_is_parsed_exactly() {
    expect_rate_limit(
        gemini_reply("gemini_429_fractional").await,
        QuotaScope::Short,
        57.238747106,
    );
}

#[tokio::test]
async fn gemini_429_without_retry_info_reads_the_delay_from_the_message() {
    expect_rate_limit(
        gemini_reply("gemini_429_message_only").await,
        QuotaScope::Short,
        12.5,
    );
}

#[tokio::test]
async fn gemini_429_per_day_quota_is_daily_and_waits_past_the_short_retry_delay() {
    let f = expect_failure(
        gemini_reply("gemini_429_per_day").await,
        FailureClass::RateLimited,
    );
    assert_eq!(f.scope, QuotaScope::Daily, "{f:?}");
    let wait = f
        .retry_after
        .unwrap_or_else(|| panic!("a daily quota needs a wait: {f:?}"));
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(24 * 3600),
        "{wait:?}"
    );
    // The reply also carries RetryInfo 37s and "Please retry in 37.5s": neither is the wait.
    for short in [37.0, 37.5] {
        assert!(
            (wait.as_secs_f64() - short).abs() > 0.5,
            "took the short delay {wait:?} for a daily quota"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gemini: error statuses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_400_api_key_invalid_is_unauthorized() {
    expect_failure(
        gemini_reply("gemini_400_bad_key").await,
        FailureClass::Unauthorized,
    );
}

#[tokio::test]
async fn gemini_403_permission_denied_is_unauthorized() {
    expect_failure(
        gemini_reply("gemini_403_permission_denied").await,
        FailureClass::Unauthorized,
    );
}

#[tokio::test]
async fn gemini_404_model_not_found_is_model_unavailable() {
    expect_failure(
        gemini_reply("gemini_404_model").await,
        FailureClass::ModelUnavailable,
    );
}

#[tokio::test]
async fn gemini_400_other_invalid_argument_is_bad_request() {
    expect_failure(
        gemini_reply("gemini_400_invalid_argument").await,
        FailureClass::BadRequest,
    );
}

#[tokio::test]
async fn gemini_413_is_bad_request() {
    expect_failure(gemini_reply("gemini_413").await, FailureClass::BadRequest);
}

#[tokio::test]
async fn gemini_503_overloaded_is_transient() {
    expect_failure(gemini_reply("gemini_503").await, FailureClass::Transient);
}

#[tokio::test]
async fn gemini_500_html_page_is_transient() {
    let f = expect_failure(
        gemini_reply("gemini_500_html").await,
        FailureClass::Transient,
    );
    assert!(
        !f.detail.contains('<'),
        "HTML markup in the detail: {:?}",
        f.detail
    );
}

// ---------------------------------------------------------------------------------------------
// Gemini: 200 replies without usable text
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_blocked_prompt_without_candidates_is_refused() {
    expect_failure(
        gemini_reply("gemini_blocked_prompt").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn gemini_finish_reason_safety_without_content_is_refused() {
    expect_failure(
        gemini_reply("gemini_finish_safety").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn gemini_finish_reason_recitation_is_refused_even_with_partial_text() {
    expect_failure(
        gemini_reply("gemini_finish_recitation").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn gemini_max_tokens_without_text_is_refused() {
    expect_failure(
        gemini_reply("gemini_max_tokens_no_text").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn gemini_empty_candidates_list_is_refused() {
    expect_failure(
        gemini_reply("gemini_empty_candidates").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn gemini_200_with_truncated_json_body_is_transient() {
    let ok = fixture("gemini_ok_json");
    let half = Fixture {
        body: ok.body[..ok.body.len() / 2].to_vec(),
        ..ok
    };
    assert!(serde_json::from_slice::<Value>(&half.body).is_err());
    expect_failure(
        run_gemini(&half, |_| {}).await.result,
        FailureClass::Transient,
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible (Groq, Ollama): success
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn groq_json_reply_gives_options_ignores_reasoning_and_request_carries_bearer_json_mode_and_extra()
 {
    let ex = run_groq(&fixture("groq_ok_json"), |s| {
        s.extra = json!({ "reasoning_effort": "low" })
    })
    .await;

    let text = ex.result.expect("a 200 JSON-mode reply");
    assert!(
        !text.contains("REASONING") && !text.contains("NOT AN ANSWER"),
        "reasoning leaked: {text:?}"
    );
    assert_eq!(options(&text), EVENING_OPTIONS);

    assert_eq!(ex.requests.len(), 1);
    let req = &ex.requests[0];
    assert_eq!(req.url.path(), GROQ_PATH);
    assert_eq!(
        header(req, "authorization"),
        Some(format!("Bearer {GROQ_KEY}").as_str())
    );
    assert!(!req.url.as_str().contains(GROQ_KEY));

    let body: Value = serde_json::from_slice(&req.body).expect("a JSON request body");
    let p = prompt();
    assert_eq!(body["model"], GROQ_MODEL);
    assert_eq!(
        body["messages"],
        json!([{ "role": "system", "content": p.system }, { "role": "user", "content": p.user }])
    );
    assert_eq!(body["response_format"], json!({ "type": "json_object" }));
    assert_eq!(body["reasoning_effort"], "low", "extra not merged: {body}");
}

#[tokio::test]
async fn groq_think_block_before_the_json_is_removed() {
    let text = groq_reply("groq_ok_think")
        .await
        .expect("a reply with a <think> block");
    assert!(
        !text.contains("<think>") && !text.contains("THINKING"),
        "think block kept: {text:?}"
    );
    assert_eq!(options(&text), STATION_OPTIONS);
}

#[tokio::test]
async fn keyless_local_server_gets_no_authorization_header_and_no_response_format_without_json_mode()
 {
    let ex = exchange("/v1/chat/completions", &fixture("ollama_ok"), |uri| {
        let mut s = settings("ollama", "qwen3:8b", &format!("{uri}/v1"), None);
        s.json_mode = false;
        openai(s)
    })
    .await;

    let text = ex.result.expect("a 200 reply from the local server");
    assert_eq!(
        options(&text),
        [
            "Thanks for the meal!",
            "That was delicious, thank you.",
            "Thank you for the food!"
        ]
    );

    let req = &ex.requests[0];
    assert_eq!(req.url.path(), "/v1/chat/completions");
    assert!(
        header(req, "authorization").is_none(),
        "sent {:?}",
        header(req, "authorization")
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["model"], "qwen3:8b");
    assert!(
        body.get("response_format").is_none(),
        "json_mode is off: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible: rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn groq_429_waits_for_the_retry_after_seconds_header() {
    // The message says 4.327 s; the header (5) wins.
    expect_rate_limit(groq_reply("groq_429").await, QuotaScope::Short, 5.0);
}

#[tokio::test]
async fn groq_429_retry_after_http_date_is_the_time_until_that_date() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let reply = fixture("groq_429").with_header("retry-after", &at);
    let f = expect_failure(
        run_groq(&reply, |_| {}).await.result,
        FailureClass::RateLimited,
    );
    assert_eq!(f.scope, QuotaScope::Short);
    let wait = f
        .retry_after
        .unwrap_or_else(|| panic!("no wait from {at:?}: {f:?}"))
        .as_secs_f64();
    assert!(
        (28.0..=32.0).contains(&wait),
        "retry-after {at:?} gave {wait} s"
    );
}

#[tokio::test]
async fn groq_429_without_header_reads_the_delay_from_the_message() {
    expect_rate_limit(
        groq_reply("groq_429_no_header").await,
        QuotaScope::Short,
        4.327,
    );
}

#[tokio::test]
async fn groq_429_with_garbage_retry_after_and_no_message_delay_has_no_wait() {
    let f = expect_failure(
        groq_reply("groq_429_garbage_retry_after").await,
        FailureClass::RateLimited,
    );
    assert_eq!(f.retry_after, None, "{f:?}");
    assert_eq!(f.scope, QuotaScope::Short);
}

#[tokio::test]
async fn groq_429_per_day_waits_for_the_request_reset_not_the_short_delay() {
    // retry-after 87 and "try again in 1m26.4s" are the short delay; the RPD quota resets in 2h6m43.2s.
    expect_rate_limit(
        groq_reply("groq_429_per_day").await,
        QuotaScope::Daily,
        2.0 * 3600.0 + 6.0 * 60.0 + 43.2,
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible: error statuses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn groq_401_invalid_api_key_is_unauthorized() {
    expect_failure(groq_reply("groq_401").await, FailureClass::Unauthorized);
}

#[tokio::test]
async fn groq_404_model_not_found_is_model_unavailable() {
    expect_failure(
        groq_reply("groq_404_model_not_found").await,
        FailureClass::ModelUnavailable,
    );
}

#[tokio::test]
async fn groq_400_model_decommissioned_is_model_unavailable() {
    expect_failure(
        groq_reply("groq_400_decommissioned").await,
        FailureClass::ModelUnavailable,
    );
}

#[tokio::test]
async fn groq_400_json_validate_failed_is_bad_request() {
    expect_failure(
        groq_reply("groq_400_json_validate_failed").await,
        FailureClass::BadRequest,
    );
}

#[tokio::test]
async fn groq_413_request_too_large_is_bad_request_despite_its_rate_limit_code() {
    let f = expect_failure(
        groq_reply("groq_413_request_too_large").await,
        FailureClass::BadRequest,
    );
    assert_eq!(f.retry_after, None);
}

#[tokio::test]
async fn groq_498_flex_capacity_exceeded_is_transient() {
    expect_failure(
        groq_reply("groq_498_flex_capacity").await,
        FailureClass::Transient,
    );
}

#[tokio::test]
async fn groq_503_over_capacity_is_transient() {
    expect_failure(groq_reply("groq_503").await, FailureClass::Transient);
}

#[tokio::test]
async fn groq_502_html_page_is_transient() {
    let f = expect_failure(groq_reply("groq_502_html").await, FailureClass::Transient);
    assert!(
        !f.detail.contains('<'),
        "HTML markup in the detail: {:?}",
        f.detail
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible: 200 replies without usable text
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn groq_null_content_with_content_filter_is_refused() {
    expect_failure(
        groq_reply("groq_content_filter").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn groq_content_filter_with_partial_content_is_refused() {
    expect_failure(
        groq_reply("groq_content_filter_partial").await,
        FailureClass::Refused,
    );
}

#[tokio::test]
async fn groq_empty_content_is_refused() {
    expect_failure(
        groq_reply("groq_empty_content").await,
        FailureClass::Refused,
    );
}

// ---------------------------------------------------------------------------------------------
// Byte level: a raw TCP server on 127.0.0.1
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Raw {
    /// Reads the request and never answers (the socket stays open).
    Silent,
    /// Announces a 1000-byte body, sends 100 bytes of it, then closes. The 100 bytes are this
    /// complete reply padded with spaces, so only noticing the cut can make the call fail.
    CutBody(&'static str),
}

/// Starts a raw HTTP/1.1 server with `behaviour`; returns its `http://127.0.0.1:PORT`.
/// Its tasks end with the test's runtime.
async fn raw_server(behaviour: Raw) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_request(&mut socket).await;
                match behaviour {
                    Raw::Silent => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Raw::CutBody(reply) => {
                        let sent = format!("{reply:<100}");
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(sent.as_bytes()).await;
                        let _ = socket.flush().await;
                        let _ = socket.shutdown().await;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Reads one request: the head, then `Content-Length` bytes of body.
async fn read_request(socket: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn gemini_silent_server_times_out_as_transient_within_the_timeout() {
    let base = raw_server(Raw::Silent).await;
    let mut s = gemini_settings(&base);
    s.timeout = Duration::from_secs(1);
    let provider = gemini(s);
    let started = Instant::now();
    let result = provider.complete(&prompt()).await;
    let elapsed = started.elapsed();
    expect_failure(result, FailureClass::Transient);
    assert!(
        elapsed >= Duration::from_millis(900),
        "failed before the timeout ({elapsed:?}): not a timeout"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "took {elapsed:?} with a 1 s timeout"
    );
}

#[tokio::test]
async fn groq_silent_server_times_out_as_transient_within_the_timeout() {
    let base = raw_server(Raw::Silent).await;
    let mut s = groq_settings(&base);
    s.timeout = Duration::from_secs(1);
    let provider = openai(s);
    let started = Instant::now();
    let result = provider.complete(&prompt()).await;
    let elapsed = started.elapsed();
    expect_failure(result, FailureClass::Transient);
    assert!(
        elapsed >= Duration::from_millis(900),
        "failed before the timeout ({elapsed:?}): not a timeout"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "took {elapsed:?} with a 1 s timeout"
    );
}

/// Complete, valid replies (under 100 bytes) for the cut-off body tests.
const GEMINI_SMALL_REPLY: &str =
    r#"{"candidates":[{"content":{"parts":[{"text":"{\"options\":[\"Hi.\"]}"}]}}]}"#;
const GROQ_SMALL_REPLY: &str =
    r#"{"choices":[{"message":{"content":"{\"options\":[\"Hi.\"]}"},"finish_reason":"stop"}]}"#;

/// `small` is a reply the provider accepts when it arrives whole (checked through wiremock),
/// short enough to be padded to the 100 bytes the raw server sends.
fn small_reply_fixture(small: &str) -> Fixture {
    assert!(small.len() <= 100, "{} bytes", small.len());
    Fixture {
        status: 200,
        headers: Vec::new(),
        content_type: "application/json".into(),
        body: small.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn gemini_connection_closed_mid_body_is_transient() {
    let whole = run_gemini(&small_reply_fixture(GEMINI_SMALL_REPLY), |_| {})
        .await
        .result;
    assert!(whole.is_ok(), "the reply is accepted when whole: {whole:?}");
    let base = raw_server(Raw::CutBody(GEMINI_SMALL_REPLY)).await;
    expect_failure(
        gemini(gemini_settings(&base)).complete(&prompt()).await,
        FailureClass::Transient,
    );
}

#[tokio::test]
async fn groq_connection_closed_mid_body_is_transient() {
    let whole = run_groq(&small_reply_fixture(GROQ_SMALL_REPLY), |_| {})
        .await
        .result;
    assert!(whole.is_ok(), "the reply is accepted when whole: {whole:?}");
    let base = raw_server(Raw::CutBody(GROQ_SMALL_REPLY)).await;
    expect_failure(
        openai(groq_settings(&base)).complete(&prompt()).await,
        FailureClass::Transient,
    );
}

#[tokio::test]
async fn connection_refused_is_transient_for_both_providers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens on the port any more
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    expect_failure(
        gemini(gemini_settings(&base)).complete(&prompt()).await,
        FailureClass::Transient,
    );
    expect_failure(
        openai(groq_settings(&base)).complete(&prompt()).await,
        FailureClass::Transient,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a refused connection took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_no_key(f: &ProviderFailure, key: &str) {
    assert!(!f.detail.contains(key), "key in detail: {:?}", f.detail);
    assert!(!f.to_string().contains(key), "key in Display: {f}");
    assert!(!format!("{f:?}").contains(key), "key in Debug: {f:?}");
}

#[tokio::test]
async fn gemini_error_body_echoing_the_key_never_reaches_the_failure_text() {
    let reply = fixture("gemini_400_echo_key");
    assert!(
        reply.error_message().contains(GEMINI_KEY),
        "fixture must echo the key"
    );
    let f = run_gemini(&reply, |_| {})
        .await
        .result
        .expect_err("a 400 reply");
    assert_no_key(&f, GEMINI_KEY);
}

#[tokio::test]
async fn groq_error_body_echoing_the_key_never_reaches_the_failure_text() {
    let reply = fixture("groq_400_echo_key");
    assert!(
        reply.error_message().contains(GROQ_KEY),
        "fixture must echo the key"
    );
    let f = run_groq(&reply, |_| {})
        .await
        .result
        .expect_err("a 400 reply");
    assert_no_key(&f, GROQ_KEY);
}

#[tokio::test]
async fn echoed_key_cut_by_the_one_line_shortening_leaks_no_part_of_the_key() {
    let reply = fixture("groq_400_echo_key_at_cut");
    // Precondition: the key straddles character 160 of the one-line message.
    let line = reply
        .error_message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let start = line.chars().count() - line[line.find(GROQ_KEY).unwrap()..].chars().count();
    assert!(
        start < 160 && start + GROQ_KEY.len() > 160,
        "key at {start}: fixture no longer straddles the cut"
    );

    let f = run_groq(&reply, |_| {})
        .await
        .result
        .expect_err("a 400 reply");
    let shown = format!("{} | {f}", f.detail);
    // No 12 consecutive characters of the key (its `gsk_` prefix is public, the rest is not).
    for window in GROQ_KEY.as_bytes().windows(12) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !shown.contains(piece),
            "part of the key ({piece:?}) in {shown:?}"
        );
    }
}

#[test]
fn settings_debug_never_shows_the_key() {
    for (s, key) in [
        (gemini_settings("http://127.0.0.1:9"), GEMINI_KEY),
        (groq_settings("http://127.0.0.1:9"), GROQ_KEY),
    ] {
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!shown.contains(key), "key in {shown}");
            assert!(
                shown.contains(&s.model),
                "Debug should still describe the settings: {shown}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `extra` left at serde_json's default (Null)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_null_extra_leaves_the_generation_config_intact() {
    let ex = run_gemini(&fixture("gemini_ok_json"), |s| s.extra = Value::default()).await;
    ex.result.expect("a 200 reply");
    let body: Value = serde_json::from_slice(&ex.requests[0].body).unwrap();
    assert_eq!(
        body["generationConfig"]["responseMimeType"], "application/json",
        "sent {body}"
    );
}

#[tokio::test]
async fn groq_null_extra_leaves_the_request_body_intact() {
    let ex = run_groq(&fixture("groq_ok_json"), |s| s.extra = Value::default()).await;
    ex.result.expect("a 200 reply");
    let body: Value = serde_json::from_slice(&ex.requests[0].body).unwrap();
    assert_eq!(body["model"], GROQ_MODEL, "sent {body}");
    assert_eq!(
        body["messages"].as_array().map(Vec::len),
        Some(2),
        "sent {body}"
    );
}
