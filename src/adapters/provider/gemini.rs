//! Google Gemini `generateContent`. The key travels in the `x-goog-api-key` header, never in
//! the URL; the JSON reply arrives as a string in the candidate's text parts.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderName;
use serde_json::{Value, json};

use super::Settings;
use super::http::{self, RawReply};
use crate::core::clock::BoxFuture;
use crate::core::prompt::Prompt;
use crate::core::provider::{FailureClass, Provider, ProviderFailure, QuotaScope};

/// Finish reasons that mean the model withheld its answer.
const REFUSAL_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "RECITATION",
    "BLOCKLIST",
    "SPII",
    "OTHER",
    "IMAGE_SAFETY",
    "LANGUAGE",
];

pub struct Gemini {
    settings: Settings,
    client: reqwest::Client,
    url: String,
    /// `models.list` with one model a page: free, and what a warm connection is kept with.
    models_url: String,
}

impl Gemini {
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        let client = http::client(settings.timeout)?;
        let url = format!(
            "{}/models/{}:generateContent",
            settings.base_url.trim_end_matches('/'),
            settings.model
        );
        let models_url = format!(
            "{}/models?pageSize=1",
            settings.base_url.trim_end_matches('/')
        );
        Ok(Self {
            settings,
            client,
            url,
            models_url,
        })
    }

    /// A request carrying the key in `x-goog-api-key` (never in the URL).
    fn keyed(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderFailure> {
        Ok(match &self.settings.api_key {
            Some(key) => req.header(
                HeaderName::from_static("x-goog-api-key"),
                http::key_header(key)?,
            ),
            None => req,
        })
    }

    /// The request body for `prompt`, with the configured `extra` merged into `generationConfig`.
    pub fn body(&self, prompt: &Prompt) -> Value {
        let mut generation = json!({
            "candidateCount": 1,
            "maxOutputTokens": 2048,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                // `speaker` is optional: the prompt asks for it only when the line names one,
                // and a schema without it would forbid it.
                "properties": {
                    "options": { "type": "ARRAY", "items": { "type": "STRING" } },
                    "speaker": { "type": "STRING" }
                },
                "required": ["options"]
            }
        });
        if self.settings.extra.is_object() {
            http::merge_json(&mut generation, &self.settings.extra);
        }
        json!({
            "systemInstruction": { "parts": [{ "text": prompt.system }] },
            "contents": [{ "role": "user", "parts": [{ "text": prompt.user }] }],
            "generationConfig": generation,
        })
    }

    async fn request(&self, prompt: &Prompt) -> Result<String, ProviderFailure> {
        let req = self.keyed(self.client.post(&self.url).json(&self.body(prompt)))?;
        let s = &self.settings;
        let json = http::exchange(req, s.timeout, s.api_key.as_deref(), rate_limit).await?;
        reply_text(&json)
    }
}

impl Provider for Gemini {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        Box::pin(http::without_key(
            self.settings.api_key.as_deref(),
            self.request(prompt),
        ))
    }
    fn warm(&self) -> BoxFuture<'_, Result<(), ProviderFailure>> {
        Box::pin(http::without_key(self.settings.api_key.as_deref(), async {
            let req = self.keyed(self.client.get(&self.models_url))?;
            http::warm(req, self.settings.timeout).await
        }))
    }
}

/// The answer text of a 200 reply: the non-thought text parts of the first candidate.
pub fn reply_text(json: &Value) -> Result<String, ProviderFailure> {
    let refused = |detail: String| ProviderFailure::new(FailureClass::Refused, detail);
    if let Some(reason) = json
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Err(refused(format!("prompt blocked ({reason})")));
    }
    let candidate = json
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| refused("no candidates in the reply".into()))?;
    let finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("");
    if REFUSAL_REASONS.contains(&finish) {
        return Err(refused(format!("finish reason {finish}")));
    }
    let text: String = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| !p.get("thought").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if text.trim().is_empty() {
        let why = if finish.is_empty() {
            "empty reply".to_string()
        } else {
            format!("no text, finish reason {finish}")
        };
        return Err(refused(why));
    }
    Ok(text)
}

/// A Gemini 429: the wait is `RetryInfo.retryDelay` (Gemini sends no Retry-After), else the
/// message's "Please retry in …"; a `PerDay` quota waits until midnight Pacific time.
pub fn rate_limit(reply: &RawReply, json: &Value, now: SystemTime) -> ProviderFailure {
    let message = http::error_message(json).unwrap_or_default();
    let details = json
        .pointer("/error/details")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let daily = details.iter().any(|d| {
        d.get("violations")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.get("quotaId")
                        .and_then(Value::as_str)
                        .is_some_and(|q| q.contains("PerDay"))
                })
            })
    });
    if daily {
        return http::rate_limited(
            Some(http::until_pacific_midnight(now)),
            QuotaScope::Daily,
            &message,
        );
    }
    let retry_delay = details
        .iter()
        .filter_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .find_map(http::parse_duration);
    let wait: Option<Duration> = http::retry_after_header(&reply.headers, now)
        .or(retry_delay)
        .or_else(|| {
            json.pointer("/error/message")
                .and_then(Value::as_str)
                .and_then(http::retry_in_message)
        });
    http::rate_limited(wait, QuotaScope::Short, &message)
}
