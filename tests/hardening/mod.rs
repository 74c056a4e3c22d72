//! Shared by the hardening suites (`tests/faults.rs`, `tests/soak.rs`, `tests/bad_input.rs`,
//! `tests/secrets.rs`, `tests/operations.rs`): a fault-injecting loopback HTTP server,
//! real-format provider replies, an in-process daemon rig, the `yaku` binary with a clean
//! environment, resident-memory readings and polling helpers. Nothing here talks to anything
//! but 127.0.0.1.
#![allow(dead_code)]

pub mod bin;
pub mod echo;
pub mod faultserver;
pub mod mem;
pub mod poll;
pub mod replies;
pub mod rig;
pub mod x11incr;
