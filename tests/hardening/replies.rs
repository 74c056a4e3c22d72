//! Provider replies in the real wire formats (Gemini `generateContent`, OpenAI-compatible
//! `chat/completions`), for every outcome class: success, fenced JSON, 429 with a wait,
//! 5xx, a rejected key, a missing model, a bad request, a safety refusal.

use serde_json::{Value, json};

/// Which wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gemini,
    OpenAi,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Gemini => "gemini",
            Format::OpenAi => "openai",
        }
    }

    /// A 200 whose answer text is `text` (what the model wrote).
    pub fn ok_text(self, text: &str) -> Value {
        match self {
            Format::Gemini => json!({
                "candidates": [{
                    "content": { "parts": [{ "text": text }], "role": "model" },
                    "finishReason": "STOP",
                    "index": 0
                }],
                "usageMetadata": { "promptTokenCount": 64, "candidatesTokenCount": 41, "totalTokenCount": 105 },
                "modelVersion": "gemini-test"
            }),
            Format::OpenAi => json!({
                "id": "chatcmpl-hardening",
                "object": "chat.completion",
                "created": 1_795_767_544,
                "model": "test-model",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": text },
                    "finish_reason": "stop"
                }],
                "usage": { "prompt_tokens": 141, "completion_tokens": 83, "total_tokens": 224 }
            }),
        }
    }

    /// A JSON-mode success carrying `options`.
    pub fn ok(self, options: &[&str]) -> Value {
        self.ok_text(&json!({ "options": options }).to_string())
    }

    /// A success whose JSON is wrapped in a Markdown fence, as models sometimes answer.
    pub fn ok_fenced(self, options: &[&str]) -> Value {
        self.ok_text(&format!(
            "Here you go:\n```json\n{}\n```\n",
            json!({ "options": options })
        ))
    }

    /// A safety refusal (Gemini: finish reason SAFETY, no text; OpenAI: content_filter).
    pub fn refusal(self) -> Value {
        match self {
            Format::Gemini => json!({
                "candidates": [{
                    "finishReason": "SAFETY",
                    "index": 0,
                    "safetyRatings": [{ "category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": true }]
                }],
                "modelVersion": "gemini-test"
            }),
            Format::OpenAi => json!({
                "id": "chatcmpl-hardening",
                "object": "chat.completion",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": null }, "finish_reason": "content_filter" }]
            }),
        }
    }

    /// A 429 asking to wait `secs` (Gemini: RetryInfo.retryDelay; OpenAI: the Retry-After
    /// header, see [`Format::rate_limit_headers`]).
    pub fn rate_limited(self, secs: f64) -> Value {
        match self {
            Format::Gemini => json!({ "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaValue": "10" }] },
                    { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s") }
                ]
            }}),
            Format::OpenAi => json!({ "error": {
                "message": "Rate limit reached for model `test-model` on requests per minute (RPM): Limit 30, Used 30, Requested 1.",
                "type": "requests",
                "code": "rate_limit_exceeded"
            }}),
        }
    }

    pub fn rate_limit_headers(self, secs: f64) -> Vec<(String, String)> {
        match self {
            Format::Gemini => Vec::new(),
            Format::OpenAi => vec![("retry-after".into(), format!("{secs}"))],
        }
    }

    /// A 5xx body.
    pub fn overloaded(self) -> (u16, Value) {
        match self {
            Format::Gemini => (
                503,
                json!({ "error": { "code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE" } }),
            ),
            Format::OpenAi => (
                500,
                json!({ "error": { "message": "Internal Server Error", "type": "internal_server_error" } }),
            ),
        }
    }

    /// A rejected key, with `message` as the error message (it may echo the key).
    pub fn unauthorized(self, message: &str) -> (u16, Value) {
        match self {
            Format::Gemini => (
                400,
                json!({ "error": {
                    "code": 400, "message": message, "status": "INVALID_ARGUMENT",
                    "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                  "domain": "googleapis.com" }]
                }}),
            ),
            Format::OpenAi => (
                401,
                json!({ "error": { "message": message, "type": "invalid_request_error", "code": "invalid_api_key" } }),
            ),
        }
    }

    /// The model does not exist.
    pub fn model_missing(self) -> (u16, Value) {
        match self {
            Format::Gemini => (
                404,
                json!({ "error": { "code": 404, "message": "models/test is not found for API version v1beta, or is not supported for generateContent.", "status": "NOT_FOUND" } }),
            ),
            Format::OpenAi => (
                404,
                json!({ "error": { "message": "The model `test` does not exist or you do not have access to it.", "type": "invalid_request_error", "code": "model_not_found" } }),
            ),
        }
    }

    /// Any other 4xx, with `message` (it may echo the key).
    pub fn bad_request(self, message: &str) -> (u16, Value) {
        match self {
            Format::Gemini => (
                400,
                json!({ "error": { "code": 400, "message": message, "status": "INVALID_ARGUMENT" } }),
            ),
            Format::OpenAi => (
                400,
                json!({ "error": { "message": message, "type": "invalid_request_error", "code": "invalid_value" } }),
            ),
        }
    }

    /// The path the adapter posts to under `base_url = {server}`.
    pub fn path(self, model: &str) -> String {
        match self {
            Format::Gemini => format!("/models/{model}:generateContent"),
            Format::OpenAi => "/chat/completions".to_string(),
        }
    }
}
