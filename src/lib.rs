//! yaku: clipboard translation for visual-novel readers. See ARCHITECTURE.md for the map.
//!
//! Layers, top to bottom (imports point down only; `tests/layers.rs` holds the rule):
//! `cli` → `daemon` → `wire` → `protocol`, `config`, `adapters`, `service` → `core`, `sys`.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod protocol;
pub mod service;
pub mod sys;
pub mod wire;

pub use yaku_core as core;
