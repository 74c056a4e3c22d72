//! The `Provider` port: one call to a translation model, and the one outcome class every
//! failure maps to. Adapters turn their wire formats into these types; the chain and the
//! breaker only ever see these.

use std::fmt;
use std::time::Duration;

use super::clock::BoxFuture;
use super::prompt::Prompt;

/// How a failed provider call is classified. Each class drives the breaker differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// HTTP 429: the provider asked us to wait.
    RateLimited,
    /// 5xx, connection errors, timeouts, unreadable replies: may work if tried again.
    Transient,
    /// The provider answered but gave no usable text (safety block, empty reply).
    Refused,
    /// The key was rejected: nothing works until the config changes.
    Unauthorized,
    /// The model does not exist (any more): nothing works until the config changes.
    ModelUnavailable,
    /// Any other 4xx: this request is wrong for this provider.
    BadRequest,
}

impl FailureClass {
    /// The stable name used in `--json` output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Transient => "transient",
            FailureClass::Refused => "refused",
            FailureClass::Unauthorized => "unauthorized",
            FailureClass::ModelUnavailable => "model_unavailable",
            FailureClass::BadRequest => "bad_request",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which quota a rate limit was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    /// A short window (per minute, tokens per minute): the reported delay is the wait.
    Short,
    /// A per-day quota: the wait lasts until the quota resets.
    Daily,
}

/// A failed call, classified. `detail` is for humans and never holds a key or a keyed URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderFailure {
    pub class: FailureClass,
    /// For `RateLimited`: how long the provider asked us to wait, when it said.
    pub retry_after: Option<Duration>,
    /// For `RateLimited`: which quota ran out.
    pub scope: QuotaScope,
    pub detail: String,
}

impl ProviderFailure {
    pub fn new(class: FailureClass, detail: impl Into<String>) -> Self {
        Self {
            class,
            retry_after: None,
            scope: QuotaScope::Short,
            detail: detail.into(),
        }
    }
    pub fn rate_limited(
        retry_after: Option<Duration>,
        scope: QuotaScope,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            class: FailureClass::RateLimited,
            retry_after,
            scope,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.detail)
    }
}

impl std::error::Error for ProviderFailure {}

/// A translation model behind some API. Implementations must be cancel-safe: the chain
/// drops the future when the line's deadline passes.
pub trait Provider: Send + Sync {
    /// The configured name (`gemini`, `groq`, ...), used in logs and output.
    fn name(&self) -> &str;
    /// The model this provider asks for.
    fn model(&self) -> &str;
    /// Sends the prompt and returns the model's raw reply text.
    fn complete<'a>(&'a self, prompt: &'a Prompt)
    -> BoxFuture<'a, Result<String, ProviderFailure>>;
    /// Like `complete`, with what the provider reported about its budget. Adapters whose
    /// wire format reports it override this; the chain calls only this one.
    fn complete_reply<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<Reply, ProviderFailure>> {
        Box::pin(async move { self.complete(prompt).await.map(Reply::text) })
    }
    /// Opens (or uses) the connection a later `complete` will reuse, with nothing billable:
    /// no translation, no rate-limit cell, no breaker outcome, no attempt recorded (the chain
    /// never calls it; `warm::keep_warm` does). A reply of any status is a warm connection;
    /// only a transport failure is an error. Default: nothing to warm (in-memory fakes).
    fn warm(&self) -> BoxFuture<'_, Result<(), ProviderFailure>> {
        Box::pin(async { Ok(()) })
    }
}

/// What a provider said about its own budget on a reply (OpenAI-compatible APIs send
/// `x-ratelimit-remaining-*` and `x-ratelimit-reset-*`), so the rate limit can hold off before
/// the provider would answer 429. Every field is optional: most servers send none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub requests_remaining: Option<u64>,
    /// When the request budget is full again (or at least has a request).
    pub requests_reset: Option<Duration>,
    pub tokens_remaining: Option<u64>,
    pub tokens_reset: Option<Duration>,
}

impl Budget {
    /// How long to send nothing: until the reset of a budget the provider says is used up.
    pub fn hold(&self) -> Option<Duration> {
        let spent = |remaining: Option<u64>, reset: Option<Duration>| {
            // A reported 0 with no reset time: a minute is the shortest window providers use.
            (remaining == Some(0)).then(|| reset.unwrap_or(Duration::from_secs(60)))
        };
        match (
            spent(self.requests_remaining, self.requests_reset),
            spent(self.tokens_remaining, self.tokens_reset),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A provider's answer: the model's text and what the provider reported about its budget.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub text: String,
    pub budget: Budget,
}

impl Reply {
    /// A reply that reported nothing about the budget.
    pub fn text(text: String) -> Self {
        Self {
            text,
            budget: Budget::default(),
        }
    }
}
