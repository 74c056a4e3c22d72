//! SQLite store benchmarks (being written).
#![allow(clippy::unwrap_used, clippy::expect_used)]
fn main() {}
