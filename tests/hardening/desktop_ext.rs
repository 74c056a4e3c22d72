//! The real daemon under the desktop harness (`tests/desktop/`) with configs the harness's
//! `YakuConfig` cannot write (keys, several providers, a log dir, a store path). Include it
//! beside the harness:
//!
//! ```ignore
//! #[path = "desktop/mod.rs"]
//! mod desktop;
//! #[path = "hardening/desktop_ext.rs"]
//! mod desktop_ext;
//! ```
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::desktop::proc::{Proc, child_path};
use crate::desktop::yaku::read_lossy;
// The harness's wait and the trait it waits on; Daemon (below) is one more kind of yaku.
use crate::desktop::DesktopEnv;
pub use crate::desktop::{Running, await_state};

/// A `yaku run` started by this module; killed (with its process group) when dropped.
pub struct Daemon {
    proc: Mutex<Proc>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    fn proc(&self) -> std::sync::MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }
    pub fn is_running(&self) -> bool {
        self.proc().is_running()
    }
    /// Sends `sig` to the daemon alone.
    pub fn signal(&self, sig: i32) {
        self.proc().signal(sig);
    }
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.proc().wait_timeout(timeout)
    }
    /// SIGKILL, as a crash, and reap.
    pub fn kill_now(&self) -> ExitStatus {
        self.proc().kill_now()
    }
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }
}

impl Running for Daemon {
    fn exit_status(&self) -> Option<ExitStatus> {
        self.proc().try_wait()
    }
    fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The environment the harness gives its daemons: nothing inherited but PATH, this desktop's
/// display, bus and XDG dirs.
pub fn desktop_vars(env: &DesktopEnv) -> Vec<(String, String)> {
    let d = env.dir.path();
    let s = |p: PathBuf| p.display().to_string();
    vec![
        ("PATH".into(), child_path().to_string_lossy().into_owned()),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), s(d.join("home"))),
        ("XDG_RUNTIME_DIR".into(), s(d.join("run"))),
        ("XDG_STATE_HOME".into(), s(d.join("state"))),
        ("XDG_CONFIG_HOME".into(), s(d.join("config"))),
        ("XDG_CACHE_HOME".into(), s(d.join("cache"))),
        ("XDG_DATA_HOME".into(), s(d.join("data"))),
        ("DISPLAY".into(), env.display()),
        (
            "DBUS_SESSION_BUS_ADDRESS".into(),
            env.bus_address().to_string(),
        ),
    ]
}

/// Writes `toml` as a 0600 config file in the desktop's dir; returns its path.
pub fn write_config(env: &DesktopEnv, toml: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = env.dir.path().join(format!("config/hardening-{n}.toml"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, toml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `yaku run --config PATH` with the desktop's environment plus `vars`.
pub fn spawn_with_config(env: &DesktopEnv, config: &Path, vars: &[(&str, &str)]) -> Daemon {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stdout_path = env.dir.path().join(format!("logs/hardening-{n}.stdout"));
    let stderr_path = env.dir.path().join(format!("logs/hardening-{n}.stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
    cmd.arg("run").arg("--config").arg(config).env_clear();
    for (k, v) in desktop_vars(env) {
        cmd.env(k, v);
    }
    cmd.env("RUST_BACKTRACE", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(append(&stdout_path))
        .stderr(append(&stderr_path));
    let proc = Proc::spawn("yaku", cmd).expect("spawn yaku");
    Daemon {
        proc: Mutex::new(proc),
        stdout_path,
        stderr_path,
        config: config.to_path_buf(),
    }
}

/// [`spawn_with_config`] with a new config file holding `toml`.
pub fn spawn_custom(env: &DesktopEnv, toml: &str, vars: &[(&str, &str)]) -> Daemon {
    let config = write_config(env, toml);
    spawn_with_config(env, &config, vars)
}

fn append(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Waits until the daemon polls the clipboard: an owner offering a text no gate lets through
/// sees its TARGETS read. (What was on the clipboard before is thus never translated.)
pub fn await_polling(env: &DesktopEnv, yaku: &impl Running) {
    let owner = env.clipboard_owner();
    let probe = owner.offer("yaku hardening test: is the daemon polling the clipboard?");
    await_state(
        env,
        yaku,
        Duration::from_secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
    );
    env.keep_owner(owner);
}

/// An `xclip` owning the CLIPBOARD with `bytes` (killed when dropped). Unlike the harness's
/// `set_clipboard`, it does not read the text back, so it suits texts of any size.
pub fn xclip_owner(env: &DesktopEnv, bytes: &[u8]) -> Proc {
    use std::io::Write;
    let mut cmd = Command::new("xclip");
    cmd.args(["-quiet", "-selection", "clipboard", "-i"])
        .env_clear();
    for (k, v) in desktop_vars(env) {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut xclip = Proc::spawn("xclip", cmd).expect("spawn xclip");
    let mut stdin = xclip.child_mut().stdin.take().expect("xclip stdin");
    stdin.write_all(bytes).expect("write to xclip");
    drop(stdin);
    xclip
}

/// VmRSS of process `pid`, in bytes (0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The history file's rows as (text, status), oldest first; empty if there is no file yet.
pub fn history(db: &Path) -> Vec<(String, String)> {
    if !db.exists() {
        return Vec::new();
    }
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return Vec::new();
    };
    let _ = conn.busy_timeout(Duration::from_secs(2));
    let Ok(mut stmt) = conn.prepare("SELECT text, status FROM lines ORDER BY id") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// `$XDG_DATA_HOME/yaku/yaku.db` of this desktop (the daemon's default store).
pub fn default_db(env: &DesktopEnv) -> PathBuf {
    env.dir.path().join("data/yaku/yaku.db")
}
