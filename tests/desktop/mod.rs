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

/// A daemon a test waits on: `Yaku`, or the hardening suites' `Daemon`.
pub trait Running {
    fn exit_status(&self) -> Option<std::process::ExitStatus>;
    fn stderr(&self) -> String;
}

impl Running for Yaku {
    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        Yaku::exit_status(self)
    }
    fn stderr(&self) -> String {
        Yaku::stderr(self)
    }
}

/// Waits for `cond`; fails at once (with the environment's report and the daemon's stderr) if
/// the daemon exits.
pub fn await_state(
    env: &DesktopEnv,
    yaku: &impl Running,
    timeout: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let mut exited = None;
    wait_until(
        timeout,
        what,
        || {
            if cond() {
                return true;
            }
            exited = yaku.exit_status();
            exited.is_some()
        },
        || format!("{}\n--- daemon stderr:\n{}", env.report(), yaku.stderr()),
    );
    if let Some(status) = exited {
        panic!(
            "yaku exited ({status}) while the test waited for {what}\n{}\n--- daemon stderr:\n{}",
            env.report(),
            yaku.stderr()
        );
    }
}

/// Has yaku sent a notification with this summary?
pub fn notified(env: &DesktopEnv, summary: &str) -> bool {
    env.yaku_notifications()
        .iter()
        .any(|n| n.summary == summary)
}
