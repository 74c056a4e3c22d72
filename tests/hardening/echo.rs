//! A loopback provider (wiremock, on a runtime of its own, so sync tests and child processes
//! can use it) that answers in either wire format by a script of modes, and echoes the key it
//! was sent into every error it returns, as careless real APIs do. It records every request
//! (URL, headers, body) for checks such as "the key never travels in a URL".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::replies::Format;

/// How the server answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// A rejected key (Gemini: 400 API_KEY_INVALID; OpenAI: 401), echoing the key.
    Unauthorized,
    /// A 400, echoing the key.
    BadRequest,
    /// A 429 asking for a short wait, echoing the key.
    RateLimited,
    /// A 500, echoing the key.
    ServerError,
    /// A 200 that comes too late for any timeout of the tests.
    Timeout,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::Ok,
        Mode::Unauthorized,
        Mode::BadRequest,
        Mode::RateLimited,
        Mode::ServerError,
        Mode::Timeout,
    ];
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The full URL, query string included.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub mode: Mode,
}

struct State {
    script: VecDeque<Mode>,
    then: Mode,
    seen: Vec<Seen>,
}

struct Responder {
    format: Format,
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let key = headers
            .iter()
            .find(|(k, _)| k == "x-goog-api-key" || k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mode = st.script.pop_front().unwrap_or(st.then);
        st.seen.push(Seen {
            method: request.method.to_string(),
            url: request.url.to_string(),
            headers,
            body: String::from_utf8_lossy(&request.body).into_owned(),
            mode,
        });
        let f = self.format;
        let line = super::faultserver::line_of_body(&request.body).unwrap_or_default();
        let echo = format!("Request with key {key} was rejected (key: {key}).");
        let template = |(status, body): (u16, serde_json::Value)| {
            ResponseTemplate::new(status)
                .set_body_json(body)
                .insert_header("x-echo-key", key.as_str())
        };
        match mode {
            Mode::Ok => ResponseTemplate::new(200)
                .set_body_json(f.ok(&[&format!("EN {line}"), &format!("EN2 {line}")])),
            Mode::Unauthorized => template(f.unauthorized(&echo)),
            Mode::BadRequest => template(f.bad_request(&echo)),
            Mode::RateLimited => {
                let mut body = f.rate_limited(0.3);
                body["error"]["message"] = json!(format!("{echo} Please retry in 0.3s."));
                let mut t = template((429, body));
                for (k, v) in f.rate_limit_headers(0.3) {
                    t = t.insert_header(k.as_str(), v.as_str());
                }
                t
            }
            Mode::ServerError => {
                let (status, mut body) = f.overloaded();
                body["error"]["message"] = json!(echo);
                template((status, body))
            }
            Mode::Timeout => ResponseTemplate::new(200)
                .set_body_json(f.ok(&["too late"]))
                .set_delay(Duration::from_secs(30)),
        }
    }
}

/// The server; stops when dropped.
pub struct EchoServer {
    // Declared first so that the server goes before the runtime it was started on.
    server: MockServer,
    _runtime: tokio::runtime::Runtime,
    state: Arc<Mutex<State>>,
}

impl EchoServer {
    /// Answers with `script` in order, then `then` for ever. Call it off any async runtime.
    pub fn start(format: Format, script: &[Mode], then: Mode) -> EchoServer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            then,
            seen: Vec::new(),
        }));
        let server = runtime.block_on(async {
            let server = MockServer::builder().start().await;
            Mock::given(any())
                .respond_with(Responder {
                    format,
                    state: state.clone(),
                })
                .mount(&server)
                .await;
            server
        });
        EchoServer {
            server,
            _runtime: runtime,
            state,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }

    pub fn count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }
}
