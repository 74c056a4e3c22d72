//! The `Store` port: the history of every accepted line, the translation cache, and what the
//! provider statistics are computed from. The SQLite adapter implements it; the core only
//! calls it and carries on without it when it fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::clock::Clock;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Clipboard,
    Cli,
    /// `yaku prefetch`: a script line translated ahead of the reader.
    Prefetch,
    /// A text hooker's WebSocket (`[intake] websocket`).
    Websocket,
    /// `[lookahead]`: a script line the daemon translated before the reader copied it.
    Lookahead,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Clipboard => "clipboard",
            Source::Cli => "cli",
            Source::Prefetch => "prefetch",
            Source::Websocket => "websocket",
            Source::Lookahead => "lookahead",
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
    /// Superseded in the queue by a newer line (stored as "skipped").
    Superseded,
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
            Status::Superseded => "skipped",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Translated,
            Status::Cached,
            Status::Failed,
            Status::Superseded,
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

impl Finished {
    /// The final state of a line that ended with `status`: a translation's provider, model,
    /// options and latency when there is one, and the failure's reasons when there is none.
    pub fn of(
        status: Status,
        t: Option<&super::chain::Translation>,
        error: Option<String>,
    ) -> Finished {
        Finished {
            status,
            provider: t.map(|t| t.provider.clone()),
            model: t.map(|t| t.model.clone()),
            options: t.map(|t| t.options.clone()).unwrap_or_default(),
            latency_ms: t.map(|t| t.latency.as_millis() as u64),
            error,
        }
    }
}

/// One request sent to a provider for a line (for the statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub provider: String,
    /// "ok", a failure class name ("rate_limited", "transient", "refused", "unauthorized",
    /// "model_unavailable", "bad_request"), or "cancelled" (another provider answered first).
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

/// A store failure, by what failed; each carries our own words for it. The daemon logs it and
/// goes on without the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed: locked, full, read-only, damaged.
    #[error("{0}")]
    Database(String),
    /// A file or directory of the store could not be created, moved or written.
    #[error("{0}")]
    File(String),
    /// The file's schema is newer than this yaku, or unknown to it.
    #[error("{0}")]
    Schema(String),
    /// A value could not be encoded for storage.
    #[error("{0}")]
    Encoding(String),
    /// A call yaku does not make in this state (a final status of `pending`, a store that is
    /// not reopened here).
    #[error("{0}")]
    Refused(String),
}

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
    /// [`Store::begin`] for a line of game profile `game` (None: no profile). A store that
    /// keeps no game records the line without it.
    fn begin_game(
        &self,
        text: &str,
        source: Source,
        at: SystemTime,
        game: Option<&str>,
    ) -> Result<i64, StoreError> {
        let _ = game;
        self.begin(text, source, at)
    }
    /// [`Store::cache_put`] for an answer to a line of game profile `game`.
    fn cache_put_game(
        &self,
        key: &str,
        answer: &CachedAnswer,
        game: Option<&str>,
    ) -> Result<(), StoreError> {
        let _ = game;
        self.cache_put(key, answer)
    }
    /// Applies the history retention: at most `max_rows` rows (0 = no limit), none older than
    /// `max_days` days (0 = keep for ever). Returns the rows deleted.
    fn prune(&self, _max_rows: u64, _max_days: u64, _now: SystemTime) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// Opens the store again after a failure.
pub type Opener = Box<dyn Fn() -> Result<Arc<dyn Store>, StoreError> + Send + Sync>;

/// The store as the daemon uses it: a failure (disk full, read-only file, a deleted
/// directory) is logged once and the daemon goes on without it, trying again every
/// `retry` (10 minutes) — it never stops translating for the store.
pub struct StoreHandle {
    state: Mutex<StoreState>,
    opener: Opener,
    clock: Arc<dyn Clock>,
    retry: Duration,
}

enum StoreState {
    Up(Arc<dyn Store>),
    Down { retry_at: Instant },
}

/// How long the store stays unused after a failure.
pub const STORE_RETRY: Duration = Duration::from_secs(600);

impl StoreHandle {
    /// A store that is open now (`Some`) or will be opened at the first retry.
    pub fn new(
        store: Option<Arc<dyn Store>>,
        opener: Opener,
        clock: Arc<dyn Clock>,
        retry: Duration,
    ) -> Self {
        let state = match store {
            Some(s) => StoreState::Up(s),
            None => StoreState::Down {
                retry_at: crate::clock::later(clock.now(), retry),
            },
        };
        Self {
            state: Mutex::new(state),
            opener,
            clock,
            retry,
        }
    }

    /// The store of a one-shot command: after a failure it is not opened again.
    pub fn once(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let opener: Opener =
            Box::new(|| Err(StoreError::Refused("not reopened by a command".into())));
        Self::new(Some(store), opener, clock, STORE_RETRY)
    }

    /// Runs `op` on the store, or returns None when it is down or `op` fails.
    pub fn with<T>(
        &self,
        what: &str,
        op: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Option<T> {
        let store = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match &*state {
                StoreState::Up(s) => s.clone(),
                StoreState::Down { retry_at } if self.clock.now() < *retry_at => return None,
                StoreState::Down { .. } => match (self.opener)() {
                    Ok(s) => {
                        tracing::info!("the history store is available again");
                        *state = StoreState::Up(s.clone());
                        s
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the history store is still unavailable");
                        *state = StoreState::Down {
                            retry_at: crate::clock::later(self.clock.now(), self.retry),
                        };
                        return None;
                    }
                },
            }
        };
        match op(store.as_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_secs = self.retry.as_secs(),
                    "history store failed while it {what}; translating goes on without history and cache"
                );
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = StoreState::Down {
                    retry_at: crate::clock::later(self.clock.now(), self.retry),
                };
                None
            }
        }
    }

    /// Whether the store is in use now.
    pub fn is_up(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            StoreState::Up(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    struct Broken(AtomicUsize);

    impl Store for Broken {
        fn begin(&self, _: &str, _: Source, _: SystemTime) -> Result<i64, StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Database("disk full".into()))
        }
        fn finish(&self, _: i64, _: &Finished, _: &[AttemptRecord]) -> Result<(), StoreError> {
            Ok(())
        }
        fn cache_get(&self, _: &str) -> Result<Option<CachedAnswer>, StoreError> {
            Ok(None)
        }
        fn cache_put(&self, _: &str, _: &CachedAnswer) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_store_is_left_alone_for_ten_minutes_then_reopened() {
        let clock = ManualClock::new();
        let broken = Arc::new(Broken(AtomicUsize::new(0)));
        let opens = Arc::new(AtomicUsize::new(0));
        let (b, o) = (broken.clone(), opens.clone());
        let opener: Opener = Box::new(move || {
            o.fetch_add(1, Ordering::SeqCst);
            Ok(b.clone() as Arc<dyn Store>)
        });
        let h = StoreHandle::new(
            Some(broken.clone()),
            opener,
            Arc::new(clock.clone()),
            STORE_RETRY,
        );
        assert_eq!(
            h.with("began a line", |s| s.begin(
                "x",
                Source::Cli,
                SystemTime::now()
            )),
            None
        );
        assert!(!h.is_up());
        for _ in 0..5 {
            clock.advance(Duration::from_secs(100));
            assert_eq!(
                h.with("began a line", |s| s.begin(
                    "x",
                    Source::Cli,
                    SystemTime::now()
                )),
                None
            );
        }
        assert_eq!(
            (
                broken.0.load(Ordering::SeqCst),
                opens.load(Ordering::SeqCst)
            ),
            (1, 0)
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(h.with("read the cache", |s| s.cache_get("k")), Some(None));
        assert_eq!(opens.load(Ordering::SeqCst), 1, "reopened after 10 minutes");
        assert!(h.is_up());
    }

    #[test]
    fn a_store_that_cannot_open_at_start_is_retried_later() {
        let clock = ManualClock::new();
        let opener: Opener = Box::new(|| Err(StoreError::Database("read-only".into())));
        let h = StoreHandle::new(None, opener, Arc::new(clock.clone()), STORE_RETRY);
        assert_eq!(h.with("read the cache", |s| s.cache_get("k")), None);
        clock.advance(STORE_RETRY);
        assert_eq!(h.with("read the cache", |s| s.cache_get("k")), None);
        assert!(!h.is_up());
    }
}
