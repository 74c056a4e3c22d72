//! yaku's directories, from one `ProjectDirs`: config, data (the history store), state (logs)
//! and runtime (the lock and the control socket).

use std::path::{Path, PathBuf};

/// yaku's AppUserModelID on Windows: `yaku service install` registers it (so toasts say
/// "yaku") and the notifier shows its toasts under it.
pub const APP_USER_MODEL_ID: &str = "io.github.yaku";

/// No home directory, so no platform directories.
#[derive(Debug, thiserror::Error)]
#[error("no home directory found: set $HOME")]
pub struct NoHome;

/// Neither runtime dir candidate is a private directory of this user.
#[derive(Debug, thiserror::Error)]
#[error(
    "no private runtime directory: {0}; remove it (or set $XDG_RUNTIME_DIR to a directory of yours)"
)]
pub struct UntrustedRuntime(String);

/// The platform's directories for yaku.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `$XDG_CONFIG_HOME/yaku`: config.toml and credentials.toml.
    pub config: PathBuf,
    /// `$XDG_DATA_HOME/yaku`: the history store.
    pub data: PathBuf,
    /// `$XDG_STATE_HOME/yaku` on Linux, else the local data dir: the logs.
    pub state: PathBuf,
    /// `$XDG_RUNTIME_DIR/yaku`, else the state dir: the lock and the control socket.
    pub runtime: PathBuf,
}

impl Dirs {
    pub fn resolve() -> Result<Dirs, NoHome> {
        let project = directories::ProjectDirs::from("", "", "yaku").ok_or(NoHome)?;
        let state = project
            .state_dir()
            .unwrap_or_else(|| project.data_local_dir())
            .to_path_buf();
        let runtime = project
            .runtime_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| state.clone());
        Ok(Dirs {
            config: project.config_dir().to_path_buf(),
            data: project.data_dir().to_path_buf(),
            state,
            runtime,
        })
    }

    /// Where the lock and the socket may live, in order: `runtime`, then a `yaku-<uid>`
    /// sibling for when `runtime` is there but not ours or not private (another user made it
    /// first in a shared dir).
    fn runtime_candidates(&self) -> Vec<PathBuf> {
        let candidates = vec![self.runtime.clone()];
        #[cfg(unix)]
        let candidates = {
            let mut candidates = candidates;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            let name = match self.runtime.file_name() {
                Some(n) => format!("{}-{uid}", n.to_string_lossy()),
                None => format!("yaku-{uid}"),
            };
            candidates.push(self.runtime.with_file_name(name));
            candidates
        };
        candidates
    }

    /// The daemon's runtime dir: the first candidate that is a directory of this user's with
    /// mode 0700, created (0700, exclusively) when missing. One that is not is never used;
    /// the caller says so when the answer is not `runtime`.
    pub fn runtime_for_daemon(&self) -> Result<PathBuf, UntrustedRuntime> {
        use crate::sys::private::{DirTrust, create_new_private_dir, dir_trust};
        let mut refused = Vec::new();
        for dir in self.runtime_candidates() {
            if dir_trust(&dir) == DirTrust::Missing {
                // Lost a race with someone creating it: judge what is there now.
                if let Err(e) = create_new_private_dir(&dir)
                    && e.kind() != std::io::ErrorKind::AlreadyExists
                {
                    refused.push(format!("{} cannot be created ({e})", dir.display()));
                    continue;
                }
            }
            match dir_trust(&dir) {
                DirTrust::Trusted => return Ok(dir),
                DirTrust::Missing => refused.push(format!("{} vanished", dir.display())),
                DirTrust::Untrusted(why) => refused.push(format!("{} is {why}", dir.display())),
            }
        }
        Err(UntrustedRuntime(refused.join("; ")))
    }

    /// The runtime dir a client looks for the daemon in: the first candidate that exists and
    /// is trusted (as [`runtime_for_daemon`](Self::runtime_for_daemon) judges). None: no
    /// daemon can be listening.
    pub fn runtime_for_client(&self) -> Option<PathBuf> {
        use crate::sys::private::{DirTrust, dir_trust};
        self.runtime_candidates()
            .into_iter()
            .find(|d| dir_trust(d) == DirTrust::Trusted)
    }

    /// The default config file.
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }

    /// The default history store.
    pub fn store_file(&self) -> PathBuf {
        self.data.join("yaku.db")
    }

    /// The default log directory.
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
}
