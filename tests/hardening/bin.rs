//! The `yaku` binary with an environment of the test's own making: a temporary HOME and XDG
//! dirs, nothing inherited but PATH, and a timeout after which it is killed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A temporary home: `home`, `config`, `state`, `data`, `cache`, `run` (0700).
pub struct Home {
    pub dir: TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("yaku-hardening-")
            .tempdir()
            .unwrap();
        for sub in ["home", "config", "state", "data", "cache", "run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Home { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// HOME and the XDG dirs pointing into this home.
    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir.path();
        let s = |p: PathBuf| p.display().to_string();
        vec![
            ("HOME".into(), s(d.join("home"))),
            ("XDG_CONFIG_HOME".into(), s(d.join("config"))),
            ("XDG_STATE_HOME".into(), s(d.join("state"))),
            ("XDG_DATA_HOME".into(), s(d.join("data"))),
            ("XDG_CACHE_HOME".into(), s(d.join("cache"))),
            ("XDG_RUNTIME_DIR".into(), s(d.join("run"))),
        ]
    }

    /// Writes `text` to `rel` (creating parents) with `mode`; returns the path.
    pub fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// What one run of the binary did.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `yaku args` with `env` (plus PATH) and `stdin`; kills it after `timeout`.
pub fn yaku(
    args: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            let _ = input.write_all(s.as_bytes());
        }
    }
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // SAFETY: kill(2) on our own child, not yet reaped (wait_with_output holds it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// [`yaku`] off the async runtime, so loopback servers on it keep serving.
pub async fn yaku_async(
    args: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.to_vec();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        yaku(&args, &env, stdin.as_deref(), timeout)
    })
    .await
    .unwrap()
}

/// `name=value` pairs as owned strings.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
