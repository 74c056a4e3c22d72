//! Any OpenAI-compatible chat completions API: Groq, OpenRouter, a local Ollama or LM Studio.

use std::time::{Duration, SystemTime};

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::Settings;
use super::http::{self, RawReply};
use crate::core::clock::BoxFuture;
use crate::core::prompt::Prompt;
use crate::core::provider::{Budget, FailureClass, Provider, ProviderFailure, QuotaScope, Reply};
use crate::core::reply::strip_think;

pub struct OpenAi {
    settings: Settings,
    client: reqwest::Client,
    url: String,
    /// `GET /models`: free, and what a warm connection is kept with.
    models_url: String,
}

impl OpenAi {
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        let client = http::client(settings.timeout)?;
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        let models_url = format!("{}/models", settings.base_url.trim_end_matches('/'));
        Ok(Self {
            settings,
            client,
            url,
            models_url,
        })
    }

    /// A request carrying the key as a bearer token, when there is one.
    fn keyed(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderFailure> {
        Ok(match &self.settings.api_key {
            Some(key) => req.header(AUTHORIZATION, http::key_header(&format!("Bearer {key}"))?),
            None => req,
        })
    }

    /// The request body for `prompt`, with the configured `extra` merged in.
    pub fn body(&self, prompt: &Prompt) -> Value {
        let mut body = json!({
            "model": self.settings.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
        });
        if self.settings.json_mode {
            body["response_format"] = json!({ "type": "json_object" });
        }
        if self.settings.extra.is_object() {
            http::merge_json(&mut body, &self.settings.extra);
        }
        body
    }

    async fn request(&self, prompt: &Prompt) -> Result<Reply, ProviderFailure> {
        let req = self.keyed(self.client.post(&self.url).json(&self.body(prompt)))?;
        let s = &self.settings;
        let (json, headers) =
            http::exchange_with_headers(req, s.timeout, s.api_key.as_deref(), rate_limit).await?;
        Ok(Reply {
            text: reply_text(&json)?,
            budget: budget(&headers),
        })
    }
}

impl Provider for OpenAi {
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
        Box::pin(async move { self.complete_reply(prompt).await.map(|r| r.text) })
    }
    fn complete_reply<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<Reply, ProviderFailure>> {
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

/// What an OpenAI-compatible server says about its budget: `x-ratelimit-remaining-requests`,
/// `-remaining-tokens`, `-reset-requests`, `-reset-tokens` (Groq, OpenAI, OpenRouter). The
/// resets are durations such as `2m59.56s` or `7.66s`; unreadable values are left out.
pub fn budget(headers: &reqwest::header::HeaderMap) -> Budget {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let count = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
    let reset = |name: &str| {
        text(name).and_then(|v| {
            http::parse_duration(v).or_else(|| {
                // Some servers send plain seconds.
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(1e9)))
            })
        })
    };
    Budget {
        requests_remaining: count("x-ratelimit-remaining-requests"),
        requests_reset: reset("x-ratelimit-reset-requests"),
        tokens_remaining: count("x-ratelimit-remaining-tokens"),
        tokens_reset: reset("x-ratelimit-reset-tokens"),
    }
}

/// The answer text of a 200 reply: `choices[0].message.content` without `<think>` blocks.
/// A separate `reasoning` field is ignored.
pub fn reply_text(json: &Value) -> Result<String, ProviderFailure> {
    let refused = |detail: String| ProviderFailure::new(FailureClass::Refused, detail);
    if json.get("error").is_some() {
        // Some compatible servers (OpenRouter) report upstream failures inside a 200.
        let msg = http::error_message(json).unwrap_or_else(|| "error object in a 200 reply".into());
        return Err(ProviderFailure::new(
            FailureClass::Transient,
            format!("HTTP 200 with an error: {msg}"),
        ));
    }
    let choice = json
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| ProviderFailure::new(FailureClass::Transient, "HTTP 200 without choices"))?;
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = strip_think(content);
    if finish == "content_filter" {
        return Err(refused("finish reason content_filter".into()));
    }
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

/// An OpenAI-style 429: the wait is the `retry-after` header (seconds or an HTTP date), else
/// the message's "Please try again in …". A per-day limit ("per day (RPD)" / "(TPD)") waits
/// for the daily reset: Groq's `x-ratelimit-reset-requests` for requests, else midnight UTC.
pub fn rate_limit(reply: &RawReply, json: &Value, now: SystemTime) -> ProviderFailure {
    let message = http::error_message(json).unwrap_or_default();
    let full = json
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let header = http::retry_after_header(&reply.headers, now);
    let in_message = http::retry_in_message(full);
    let daily = full.contains("per day") || full.contains("(RPD)") || full.contains("(TPD)");
    if daily {
        let reset_requests = full
            .contains("(RPD)")
            .then(|| reply.headers.get("x-ratelimit-reset-requests"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(http::parse_duration);
        let wait: Option<Duration> = [header, in_message, reset_requests]
            .into_iter()
            .flatten()
            .max();
        let wait = wait.unwrap_or_else(|| http::until_utc_midnight(now));
        return http::rate_limited(Some(wait), QuotaScope::Daily, &message);
    }
    http::rate_limited(header.or(in_message), QuotaScope::Short, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    /// Reply headers, and how long they hold the provider.
    type Case = (&'static [(&'static str, &'static str)], Option<Duration>);

    #[test]
    fn budget_headers_are_read_and_a_spent_budget_holds_until_its_reset_table() {
        let cases: &[Case] = &[
            (&[], None),
            (
                &[
                    ("x-ratelimit-remaining-requests", "14"),
                    ("x-ratelimit-reset-requests", "2m59.56s"),
                ],
                None,
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "2m59.5s"),
                ],
                Some(Duration::from_secs_f64(179.5)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", "7.5"),
                ],
                Some(Duration::from_secs_f64(7.5)),
            ),
            (
                &[("x-ratelimit-remaining-requests", "0")],
                Some(Duration::from_secs(60)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "zero"),
                    ("x-ratelimit-reset-requests", "soon"),
                ],
                None,
            ),
        ];
        for (headers, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in *headers {
                map.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(budget(&map).hold(), *want, "{headers:?}");
        }
    }
}
