//! The `Clock` port: every policy that depends on time reads it from here, so tests can drive
//! time by hand (`ManualClock`) or with tokio's paused clock (`TokioClock`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A boxed future, so the ports stay object-safe without an extra crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Monotonic time and waiting on it.
pub trait Clock: Send + Sync + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;
    /// Resolves once `now() >= deadline`: a wait the caller has nothing else to do during.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'_, ()>;
    /// Resolves once the clock reaches `at` while other work runs, never moving it: racing
    /// work against it bounds that work in this clock's time.
    fn deadline(&self, at: Instant) -> BoxFuture<'_, ()> {
        self.sleep_until(at)
    }
}

/// `now + d`, saturating: a duration too long for the platform's `Instant` (a pause of
/// 1e19 s, a provider's absurd Retry-After) gives the latest instant it can hold, never a panic.
pub fn later(now: Instant, d: Duration) -> Instant {
    let mut step = d;
    let mut at = now;
    // Halving converges in at most 64 rounds: each round adds what still fits.
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(t) => at = t,
            None => step /= 2,
        }
        if at.saturating_duration_since(now) >= d {
            break;
        }
    }
    at
}

/// Real time through tokio, which a test may pause and advance.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that only moves when told to; sleeping on it jumps it forward at once, and a
/// [`Clock::deadline`] on it is reached only when it is moved (by `advance` or a sleep).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Instant>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock that starts at the real current instant and then stands still.
    pub fn new() -> Self {
        Self {
            now: Arc::new(watch::Sender::new(Instant::now())),
        }
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now = later(*now, by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.borrow()
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        self.now.send_if_modified(|now| {
            let behind = *now < deadline;
            if behind {
                *now = deadline;
            }
            behind
        });
        Box::pin(std::future::ready(()))
    }
    fn deadline(&self, at: Instant) -> BoxFuture<'_, ()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this only ends when `at` is reached.
            let _ = now.wait_for(|t| *t >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(later(now, Duration::ZERO), now);
        let far = later(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(100 * 365 * 86_400));
        assert!(far.checked_add(Duration::from_secs(1)).is_none() || far >= now);
        assert_eq!(later(far, Duration::MAX), far);
    }
}
