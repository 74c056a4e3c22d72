//! Thin adapters between the core's ports and the outside world.

pub mod clipboard;
pub mod notify;
pub mod provider;
pub mod store;
pub mod websocket;
pub mod window;
