//! Policy only. Architecture invariant: nothing under `core` imports reqwest, arboard,
//! notify-rust or any other adapter crate; it talks to the world through its ports
//! (`Clock`, `Provider`).

pub mod breaker;
pub mod chain;
pub mod clock;
pub mod prompt;
pub mod provider;
pub mod ratelimit;
pub mod reply;

#[cfg(test)]
pub mod fake;
