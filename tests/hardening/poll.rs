//! Waiting for a state without fixed sleeps: poll a condition until a deadline and fail with
//! what was awaited and what the world looked like.

use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms (blocking) until it holds; panics after `timeout`.
#[track_caller]
pub fn until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    until_ctx(timeout, what, &mut cond, String::new)
}

/// [`until`] with a context for the failure message.
#[track_caller]
pub fn until_ctx(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:.1} s waiting for {what}\n{}",
                timeout.as_secs_f64(),
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every 2 ms of tokio time until it holds; panics after `timeout` (tokio time,
/// so with a paused clock this is virtual time).
pub async fn until_async(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:.1} s waiting for {what}",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
