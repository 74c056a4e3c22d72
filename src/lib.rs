//! yaku: clipboard translation for visual-novel readers. See ARCHITECTURE.md for the map.

pub mod adapters;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub use yaku_core as core;
pub mod credentials;
pub mod run;
pub mod service;
pub mod setup;
