//! Waiting for state without fixed sleeps: poll a condition until a deadline, and fail with a
//! message that says what was awaited and what the world looked like.

use std::time::{Duration, Instant};

pub fn secs(s: impl Into<f64>) -> Duration {
    Duration::from_secs_f64(s.into())
}

/// Polls `cond` every 10 ms until it holds; panics after `timeout` with `what` and `context()`.
pub fn wait_until(
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
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until nothing has happened for `quiet` (by `last_activity`, the latest instant at
/// which something happened or is due), for at most `timeout`. For checks that something
/// does NOT happen (no later notification): the only way to see nothing is to look for a while.
pub fn wait_quiet(
    timeout: Duration,
    quiet: Duration,
    what: &str,
    mut last_activity: impl FnMut() -> Option<Instant>,
) {
    let start = Instant::now();
    loop {
        let now = Instant::now();
        let since = last_activity().map(|t| if t > now { Duration::ZERO } else { now - t });
        if since.is_none_or(|d| d >= quiet) && now - start >= quiet.min(timeout) {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("{what}: still busy after {:.1} s", timeout.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
