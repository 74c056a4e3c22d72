//! The providers: one HTTP exchange (`http`) and a wire format per API.

pub mod gemini;
pub mod http;
pub mod openai;

use std::time::Duration;

/// What an HTTP provider adapter needs, resolved from the config (key already looked up).
#[derive(Clone)]
pub struct Settings {
    pub name: String,
    pub model: String,
    pub base_url: String,
    /// None for a keyless local server.
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Merged into `generationConfig` (Gemini) or the request body (OpenAI-compatible).
    pub extra: serde_json::Value,
    /// OpenAI-compatible only: send `response_format: {"type": "json_object"}`.
    pub json_mode: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}
