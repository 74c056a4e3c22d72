//! yaku's policy core. Architecture invariant: this crate depends on no HTTP, clipboard,
//! desktop or SQLite crate (see its Cargo.toml); it talks to the world only through its
//! ports (`Clock`, `Provider`, `ClipboardSource`, `Notifier`, `Store`, `ActiveWindow`).

pub mod batch;
pub mod breaker;
pub mod calendar;
pub mod chain;
pub mod checks;
pub mod clean;
pub mod clock;
pub mod daemon;
pub mod games;
pub mod gates;
pub mod intake;
pub mod line;
pub mod lookahead;
pub mod memory;
pub mod notice;
pub mod prefetch;
pub mod prompt;
pub mod provider;
pub mod queue;
pub mod ratelimit;
pub mod reply;
pub mod speaker;
pub mod store;
pub mod warm;

/// In-memory fakes of the ports, for tests here and in the shell (`test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
