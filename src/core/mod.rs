//! Policy only. Architecture invariant: nothing under `core` imports reqwest, arboard,
//! notify-rust or any other adapter crate; it talks to the world through its ports
//! (`Clock`, `Provider`).

pub mod breaker;
pub mod chain;
pub mod clean;
pub mod clock;
pub mod daemon;
pub mod gates;
pub mod intake;
pub mod memory;
pub mod notice;
pub mod prompt;
pub mod provider;
pub mod queue;
pub mod ratelimit;
pub mod reply;
pub mod store;

#[cfg(test)]
pub mod fake;
