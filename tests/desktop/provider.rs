//! A loopback provider speaking the OpenAI chat-completions format: it records every request
//! (with the copied line parsed back out of the prompt), answers with options derived from the
//! line, and can be told to answer late or not at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How long a "hanging" provider takes to answer: longer than any test.
const HANG: Duration = Duration::from_secs(600);

/// The options for a line, best first.
pub type Translator = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// The default translation of `line`: distinct per line, and still Japanese enough to pass
/// the script gate when copied back (so only the own-output gate can reject it).
pub fn best_option(line: &str) -> String {
    format!("EN {line}")
}

pub fn second_option(line: &str) -> String {
    format!("EN2 {line}")
}

/// One request that reached the provider.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub method: String,
    pub path: String,
    /// The copied line, parsed back out of the user message; None if the body did not parse.
    pub line: Option<String>,
    /// A batch request's lines (look-ahead), parsed back out of the user message.
    pub batch: Option<Vec<String>>,
    pub authorization: Option<String>,
    pub body: String,
    pub at: Instant,
    /// When the answer is (or was) due.
    pub answer_at: Instant,
}

struct State {
    requests: Vec<ProviderRequest>,
    /// Warming `GET /models` requests, kept out of `requests`.
    warms: usize,
    delay: Duration,
    /// How long a batch request takes; None: `delay`.
    batch_delay: Option<Duration>,
    translate: Translator,
}

struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if request.method.as_str() == "GET" && request.url.path() == "/models" {
            // The daemon's warming (`[connections] keep_warm`): no translation request.
            st.warms += 1;
            return ResponseTemplate::new(200)
                .set_body_json(json!({ "object": "list", "data": [{ "id": "test-model" }] }));
        }
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let line = line_of(&body);
        let batch = batch_of(&body);
        let now = Instant::now();
        let delay = match &batch {
            Some(_) => st.batch_delay.unwrap_or(st.delay),
            None => st.delay,
        };
        st.requests.push(ProviderRequest {
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            line: line.clone(),
            batch: batch.clone(),
            authorization: request
                .headers
                .get("authorization")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            body,
            at: now,
            answer_at: now + delay,
        });
        if request.method.as_str() != "POST" || request.url.path() != "/chat/completions" {
            return ResponseTemplate::new(404)
                .set_body_json(json!({ "error": { "message": "unknown path" } }));
        }
        if let Some(lines) = batch {
            let entries: Vec<Value> = lines
                .iter()
                .map(|l| json!({ "options": (st.translate)(l) }))
                .collect();
            let content = json!({ "translations": entries }).to_string();
            return ResponseTemplate::new(200)
                .set_body_json(chat_content(&content))
                .set_delay(delay);
        }
        let Some(line) = line else {
            return ResponseTemplate::new(400).set_body_json(
                json!({ "error": { "message": "the test provider could not find the line" } }),
            );
        };
        let options = (st.translate)(&line);
        ResponseTemplate::new(200)
            .set_body_json(chat_completion(&options))
            .set_delay(st.delay)
    }
}

/// An OpenAI-compatible JSON-mode answer carrying `options`.
pub fn chat_completion(options: &[String]) -> Value {
    chat_content(&json!({ "options": options }).to_string())
}

/// An OpenAI-compatible answer whose message is `content`.
fn chat_content(content: &str) -> Value {
    json!({
        "id": "chatcmpl-desktop-test",
        "object": "chat.completion",
        "created": 1_795_767_544,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120 }
    })
}

/// The copied line from a chat-completions request body: the user message's content is
/// `Translate the "line" of this object:\n{"line":"<text>"}`.
pub fn line_of(body: &str) -> Option<String> {
    let body: Value = serde_json::from_str(body).ok()?;
    let messages = body.get("messages")?.as_array()?;
    let user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .or_else(|| messages.get(1))?;
    let content = user.get("content")?.as_str()?;
    let (_, object) = content.split_once('\n')?;
    let object: Value = serde_json::from_str(object.trim()).ok()?;
    object.get("line")?.as_str().map(str::to_owned)
}

/// A batch request's lines: the user message's object holds `"lines": [...]`.
pub fn batch_of(body: &str) -> Option<Vec<String>> {
    let body: Value = serde_json::from_str(body).ok()?;
    let messages = body.get("messages")?.as_array()?;
    let user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let content = user.get("content")?.as_str()?;
    let object: Value = serde_json::from_str(content.get(content.find('{')?..)?.trim()).ok()?;
    let lines = object.get("lines")?.as_array()?;
    lines
        .iter()
        .map(|l| l.as_str().map(str::to_owned))
        .collect()
}

/// The provider; stops when dropped.
pub struct FakeProvider {
    // Declared first so the server goes before the runtime it was started on.
    server: MockServer,
    runtime: tokio::runtime::Runtime,
    state: Arc<Mutex<State>>,
}

impl FakeProvider {
    pub fn start() -> FakeProvider {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime for the fake provider: {e}"));
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            warms: 0,
            delay: Duration::ZERO,
            batch_delay: None,
            translate: Arc::new(|line: &str| vec![best_option(line), second_option(line)]),
        }));
        let server = runtime.block_on(async {
            // Not the shared pool: a hanging answer must not outlive this test's server.
            let server = MockServer::builder().start().await;
            Mock::given(any())
                .respond_with(Responder {
                    state: state.clone(),
                })
                .mount(&server)
                .await;
            server
        });
        FakeProvider {
            server,
            runtime,
            state,
        }
    }

    /// The base_url for the config: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Answers every later request after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Answers later batch requests (look-ahead) after `delay`, single lines as before.
    #[allow(dead_code)] // only the look-ahead tests
    pub fn set_batch_delay(&self, delay: Duration) {
        self.lock().batch_delay = Some(delay);
    }

    /// The lines of each batch request so far, in arrival order.
    #[allow(dead_code)] // only the look-ahead tests
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.lock()
            .requests
            .iter()
            .filter_map(|r| r.batch.clone())
            .collect()
    }

    /// Never answers later requests (within any test's time).
    pub fn hang(&self) {
        self.set_delay(HANG);
    }

    /// Answers later requests with `translate(line)` as the options.
    pub fn translate_with(&self, translate: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) {
        self.lock().translate = Arc::new(translate);
    }

    pub fn requests(&self) -> Vec<ProviderRequest> {
        self.lock().requests.clone()
    }

    /// The lines of the requests so far, in arrival order ("<unparsed>" for a body that did
    /// not parse).
    pub fn lines(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.line.clone().unwrap_or_else(|| "<unparsed>".into()))
            .collect()
    }

    /// Warming `GET /models` requests so far (not in `requests`).
    pub fn warms(&self) -> usize {
        self.lock().warms
    }

    pub fn count(&self) -> usize {
        self.lock().requests.len()
    }

    /// When the provider last did something (took a request or is due to answer one).
    pub fn last_activity(&self) -> Option<Instant> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.answer_at.max(r.at))
            .max()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
