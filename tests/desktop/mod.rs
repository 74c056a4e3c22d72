//! Support for the desktop end-to-end tests (`tests/desktop.rs`): each test gets its own X
//! server, session bus, notification server, notification capture, loopback provider and
//! temporary XDG directories, so tests run in parallel without seeing each other, and every
//! process started here is killed (by process group) when its owner is dropped.
#![allow(dead_code)]

pub mod env;
pub mod monitor;
pub mod owner;
pub mod proc;
pub mod provider;
pub mod wait;
pub mod xproxy;
pub mod yaku;

pub use env::DesktopEnv;
#[allow(unused_imports)] // not every test crate that includes the harness uses it
pub use provider::FakeProvider;
pub use wait::{secs, wait_quiet, wait_until};
pub use yaku::{Yaku, YakuConfig};
