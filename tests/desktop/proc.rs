//! Child processes that cannot outlive their test: each runs in a process group of its own
//! (so helpers it forks die with it), gets SIGKILL if the test thread that started it dies,
//! and is stopped (SIGTERM to the group, then SIGKILL) when dropped.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The tools the desktop tests start, and what to run when one is missing.
pub const SETUP_HINT: &str = "desktop tests need Xvfb, xclip, dbus-daemon and dunst: run scripts/test (it installs them) \
or apt-get install xvfb xclip dbus-daemon dbus-x11 dunst";

/// Fails the test (never skips it) when `tool` is not on PATH.
pub fn require_tool(tool: &str) {
    assert!(on_path(tool), "`{tool}` not found on PATH: {SETUP_HINT}");
}

pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(tool);
        std::fs::metadata(&candidate)
            .map(|m| m.is_file())
            .unwrap_or(false)
    })
}

/// A PATH for children: the test's own, or the usual system directories.
pub fn child_path() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

/// Puts the child in its own process group and ties its life to the spawning thread.
pub fn isolate(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running child in its own process group.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` isolated (see [`isolate`]).
    pub fn spawn(name: &str, mut cmd: Command) -> io::Result<Proc> {
        isolate(&mut cmd);
        let child = cmd.spawn()?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `sig` to the child itself.
    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) on a pid we have not reaped yet.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
    }

    /// Sends `sig` to the child's whole process group (the group outlives a reaped leader
    /// while any member lives, so this is right even after the leader exited).
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) with a negative pid addresses the process group we created.
        unsafe { libc::kill(-(self.pid() as libc::pid_t), sig) };
    }

    /// The exit status, if the child has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL to the group, then reap.
    pub fn kill_now(&mut self) -> ExitStatus {
        self.signal_group(libc::SIGKILL);
        self.signal(libc::SIGKILL);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(0));
        self.status = Some(status);
        status
    }

    /// SIGTERM to the group, up to 2 s to exit, then SIGKILL; the group's other members get
    /// SIGKILL in any case.
    pub fn stop(&mut self) {
        if self.status.is_none() {
            self.signal_group(libc::SIGTERM);
            if self.wait_timeout(Duration::from_secs(2)).is_none() {
                self.kill_now();
            }
        }
        self.signal_group(libc::SIGKILL);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
