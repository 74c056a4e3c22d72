//! The `Store` port: the history of every accepted line, the translation cache, and what the
//! provider statistics are computed from. The SQLite adapter implements it; the core only
//! calls it and carries on without it when it fails.

use std::time::SystemTime;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Clipboard,
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Clipboard => "clipboard",
            Source::Cli => "cli",
        }
    }
}

/// A history row's status. `Pending` until exactly one final status replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Translated,
    Cached,
    Failed,
    /// Superseded in the queue by a newer line.
    Skipped,
    /// Still pending when yaku stopped (a crash, kill -9): set at the next start.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Translated => "translated",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Translated,
            Status::Cached,
            Status::Failed,
            Status::Skipped,
            Status::Interrupted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A line's final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Never `Pending`.
    pub status: Status,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Best first; empty unless translated or cached.
    pub options: Vec<String>,
    pub latency_ms: Option<u64>,
    /// For `failed`: each provider's reason, e.g. "gemini: rate limited for 37 s; groq: key rejected".
    pub error: Option<String>,
}

/// One request sent to a provider for a line (for the statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub provider: String,
    /// "ok", or a failure class name ("rate_limited", "transient", "refused", "unauthorized",
    /// "model_unavailable", "bad_request").
    pub outcome: &'static str,
    pub latency_ms: u64,
    /// This request's outcome opened the provider's breaker.
    pub opened_breaker: bool,
}

/// A cached translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub options: Vec<String>,
    pub provider: String,
    pub model: String,
}

/// A store failure. The daemon logs it and goes on without the store.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// History, cache and statistics storage.
pub trait Store: Send + Sync {
    /// Records an accepted line as `pending`; returns its history id.
    fn begin(&self, text: &str, source: Source, at: SystemTime) -> Result<i64, StoreError>;
    /// Gives line `id` its one final status, with the requests made for it.
    fn finish(
        &self,
        id: i64,
        finished: &Finished,
        attempts: &[AttemptRecord],
    ) -> Result<(), StoreError>;
    /// A cached answer for `key`.
    fn cache_get(&self, key: &str) -> Result<Option<CachedAnswer>, StoreError>;
    /// Stores (or replaces) the answer for `key`.
    fn cache_put(&self, key: &str, answer: &CachedAnswer) -> Result<(), StoreError>;
}
