//! The daemon under test: its config file and the running `yaku run` process.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use super::proc::Proc;

/// The config a test runs the daemon with; `to_toml` writes every key of the contract.
#[derive(Debug, Clone)]
pub struct YakuConfig {
    pub provider_url: String,
    pub provider_timeout_secs: u64,
    pub deadline_secs: u64,
    /// `[clipboard] watch`. "poll" unless a test says otherwise: most tests wait for the
    /// daemon to read an offer repeatedly, which only polling does.
    pub watch: String,
    pub poll_interval_ms: u64,
    pub notify_enabled: bool,
    pub notify_timeout_ms: u64,
    pub show_original: bool,
    pub log_level: String,
    pub include_text: bool,
}

impl YakuConfig {
    /// The contract's defaults, with the test's provider.
    pub fn new(provider_url: &str) -> YakuConfig {
        YakuConfig {
            provider_url: provider_url.to_owned(),
            provider_timeout_secs: 5,
            deadline_secs: 20,
            watch: "poll".into(),
            poll_interval_ms: 250,
            notify_enabled: true,
            notify_timeout_ms: 8000,
            show_original: true,
            log_level: "info".into(),
            include_text: true,
        }
    }

    pub fn poll_interval_ms(mut self, ms: u64) -> Self {
        self.poll_interval_ms = ms;
        self
    }

    pub fn watch(mut self, watch: &str) -> Self {
        self.watch = watch.to_owned();
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    pub fn to_toml(&self) -> String {
        let YakuConfig {
            provider_url,
            provider_timeout_secs,
            deadline_secs,
            watch,
            poll_interval_ms,
            notify_enabled,
            notify_timeout_ms,
            show_original,
            log_level,
            include_text,
        } = self;
        format!(
            r#"# Written by tests/desktop: the daemon's keys, one test provider.
[translation]
deadline_secs = {deadline_secs}
reply_checks = false   # the test provider answers "EN <line>", mostly Japanese

[clipboard]
watch = "{watch}"
poll_interval_ms = {poll_interval_ms}
collapse_repeats = true
min_chars = 1
max_chars = 500
min_script_ratio = 0.3
require_script = true
ignore = ["^https?://"]

[notify]
enabled = {notify_enabled}
timeout_ms = {notify_timeout_ms}
show_original = {show_original}

[log]
level = "{log_level}"
dir = ""
rotation = "daily"
keep_files = 7
include_text = {include_text}

[[providers]]
name = "fake"
kind = "openai"
model = "test-model"
base_url = "{provider_url}"
requests_per_minute = 0
timeout_secs = {provider_timeout_secs}
json_mode = true
"#
        )
    }
}

/// Where one daemon's files are.
#[derive(Debug, Clone)]
pub struct YakuFiles {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// A running `yaku run`; killed when dropped.
pub struct Yaku {
    pub(crate) proc: Mutex<Proc>,
    pub files: YakuFiles,
    /// The config file the daemon was started with (a test may rewrite it and reload).
    pub config_path: PathBuf,
    pub(crate) lock_file: PathBuf,
    pub(crate) log_file: PathBuf,
}

impl Yaku {
    fn proc(&self) -> std::sync::MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }

    pub fn is_running(&self) -> bool {
        self.proc().is_running()
    }

    /// The exit status, once the daemon has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.proc().try_wait()
    }

    /// Sends `sig` (libc::SIGTERM, libc::SIGINT) to the daemon alone.
    pub fn signal(&self, sig: i32) {
        self.proc().signal(sig);
    }

    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.proc().wait_timeout(timeout)
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.files.stdout)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.files.stderr)
    }

    /// `$XDG_RUNTIME_DIR/yaku/yaku.lock`.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// The current log file, through the `yaku.log` symlink.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The current log file's text ("" while there is none).
    pub fn log(&self) -> String {
        read_lossy(&self.log_file)
    }
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` characters of `text`, on char boundaries.
pub fn tail(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text;
    }
    let skip = text
        .char_indices()
        .nth(count - max)
        .map(|(i, _)| i)
        .unwrap_or(0);
    &text[skip..]
}
