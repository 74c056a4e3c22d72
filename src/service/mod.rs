//! Installing yaku as a login service: `yaku service install | uninstall | status`.
//!
//! One entry starts `<binary> run` at login: a systemd user unit (Linux with a reachable user
//! manager), else an XDG autostart entry (other Linux desktops), a LaunchAgent (macOS) or a
//! `Run` registry value (Windows). The files are rendered by the pure functions of [`render`],
//! which compile everywhere; the code that writes them and drives systemctl, launchctl or reg
//! compiles only for its platform. Everything outside this process (home, config dir, the
//! programs run) comes in through [`ServiceEnv`], so tests use a temporary home and fake tools.

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
mod command;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
pub mod render;
#[cfg(windows)]
mod windows;

#[cfg(target_os = "linux")]
use linux as platform;
#[cfg(target_os = "macos")]
use macos as platform;
#[cfg(windows)]
use windows as platform;

/// Elsewhere every command says so.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod platform {
    use super::{InstallReport, ServiceEnv, ServiceError, ServiceStatus, UninstallReport};

    pub(super) fn install(_: &ServiceEnv) -> Result<InstallReport, ServiceError> {
        Err(ServiceError::Unsupported)
    }

    pub(super) fn uninstall(_: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
        Err(ServiceError::Unsupported)
    }

    pub(super) fn status(_: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
        Err(ServiceError::Unsupported)
    }
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

pub use render::{
    render_autostart_desktop, render_autostart_desktop_for, render_launch_agent,
    render_launch_agent_for, render_run_value, render_run_value_for, render_systemd_unit,
    render_systemd_unit_for,
};

/// The unit's name under `systemd/user/`.
pub const SYSTEMD_UNIT_NAME: &str = "yaku.service";
/// The autostart entry's name under `autostart/`.
pub const AUTOSTART_NAME: &str = "yaku.desktop";
/// The registry key whose `yaku` value Windows runs at sign-in.
pub const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
/// The name of yaku's value under [`RUN_KEY`].
pub const RUN_VALUE_NAME: &str = "yaku";
/// Where Windows keeps whether each `Run` value may run: Task Manager's Startup apps (and
/// Settings) switch a value off here, leaving the value itself in place.
pub const STARTUP_APPROVED_KEY: &str =
    r"HKCU\Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run";
/// The program the Windows `Run` value starts, beside `yaku.exe`: the daemon with no console.
pub const WINDOWLESS_PROGRAM: &str = "yakuw.exe";
pub use crate::sys::dirs::APP_USER_MODEL_ID;

/// The key that names [`APP_USER_MODEL_ID`] (DisplayName, IconUri) so toasts say "yaku".
pub fn aumid_key() -> String {
    format!(r"HKCU\Software\Classes\AppUserModelId\{APP_USER_MODEL_ID}")
}

/// Where a service is installed and with which tools; built once by the caller, faked in tests.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// The user's home directory.
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME` when set (Linux only); else `home/.config` is used.
    pub xdg_config_home: Option<PathBuf>,
    /// The yaku binary the service runs: absolute, e.g. from `std::env::current_exe()`.
    pub binary: PathBuf,
    /// yaku's log directory: launchd writes the daemon's stdout/stderr there (macOS).
    pub log_dir: PathBuf,
    /// The config file the service runs with (`run --config`), absolute; None: the default.
    pub config: Option<PathBuf>,
    /// The `systemctl` program (Linux).
    pub systemctl: PathBuf,
    /// The `launchctl` program (macOS).
    pub launchctl: PathBuf,
    /// The `reg` program (Windows).
    pub reg: PathBuf,
    /// How long `systemctl --user show-environment` may take before the user manager counts
    /// as unreachable.
    pub probe_timeout: Duration,
    /// How long any other command may take.
    pub command_timeout: Duration,
}

impl ServiceEnv {
    /// The environment of this process: its home, `$XDG_CONFIG_HOME`, and the tools found on
    /// `PATH`.
    pub fn from_process(binary: PathBuf, log_dir: PathBuf) -> Result<ServiceEnv, ServiceError> {
        let home = directories::BaseDirs::new()
            .ok_or(ServiceError::NoHome)?
            .home_dir()
            .to_path_buf();
        // The XDG spec says to ignore a relative value.
        let xdg_config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        Ok(ServiceEnv {
            home,
            xdg_config_home,
            binary,
            log_dir,
            config: None,
            systemctl: PathBuf::from("systemctl"),
            launchctl: PathBuf::from("launchctl"),
            reg: PathBuf::from("reg"),
            probe_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
        })
    }

    /// `$XDG_CONFIG_HOME`, else `home/.config`.
    pub fn config_home(&self) -> PathBuf {
        self.xdg_config_home
            .clone()
            .unwrap_or_else(|| self.home.join(".config"))
    }

    /// `<config home>/systemd/user/yaku.service`.
    pub fn systemd_unit_path(&self) -> PathBuf {
        self.config_home()
            .join("systemd/user")
            .join(SYSTEMD_UNIT_NAME)
    }

    /// `<config home>/autostart/yaku.desktop`.
    pub fn autostart_path(&self) -> PathBuf {
        self.config_home().join("autostart").join(AUTOSTART_NAME)
    }

    /// `~/Library/LaunchAgents/io.github.yaku.plist`.
    pub fn launch_agent_path(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents")
            .join(format!("{}.plist", render::LAUNCH_AGENT_LABEL))
    }
}

/// Why a service command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no home directory found: set $HOME")]
    NoHome,
    #[error("the binary path {0} is not absolute")]
    RelativeBinary(PathBuf),
    #[error("cannot install {path}: {reason}")]
    UnsupportedBinary { path: PathBuf, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("login services are not supported on this platform")]
    Unsupported,
    #[error(
        "cannot install: the login entry starts {WINDOWLESS_PROGRAM} (yaku with no console \
         window), and there is none at {looked}; put it beside {beside} (the zip and \
         `cargo install` ship both)"
    )]
    MissingWindowless { looked: PathBuf, beside: PathBuf },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// Which kind of login entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// `systemd/user/yaku.service`, enabled for `graphical-session.target`.
    SystemdUnit,
    /// `autostart/yaku.desktop`, started by the desktop at login.
    AutostartEntry,
    /// `~/Library/LaunchAgents/io.github.yaku.plist`.
    LaunchAgent,
    /// The `yaku` value under [`RUN_KEY`].
    RunKey,
}

impl ServiceKind {
    /// A stable name for JSON: `systemd-unit`, `autostart-entry`, `launch-agent`, `run-key`.
    pub fn id(self) -> &'static str {
        match self {
            ServiceKind::SystemdUnit => "systemd-unit",
            ServiceKind::AutostartEntry => "autostart-entry",
            ServiceKind::LaunchAgent => "launch-agent",
            ServiceKind::RunKey => "run-key",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceKind::SystemdUnit => "systemd user unit",
            ServiceKind::AutostartEntry => "XDG autostart entry",
            ServiceKind::LaunchAgent => "launchd LaunchAgent",
            ServiceKind::RunKey => "Run registry value",
        })
    }
}

/// Where an entry lives: a file, or a registry value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    RegistryValue { key: String, name: String },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::RegistryValue { key, name } => write!(f, "{key} (value {name:?})"),
        }
    }
}

/// What `install` wrote and ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub kind: ServiceKind,
    pub location: Location,
    /// An entry was already there and was rewritten.
    pub replaced: bool,
    /// The binary the replaced entry ran, when it could be read.
    pub previous_binary: Option<PathBuf>,
    /// The commands run, in order, as typed.
    pub commands: Vec<String>,
    /// Entries of another kind that this one supersedes, removed so yaku starts once.
    pub removed: Vec<Location>,
    /// yaku was started now; otherwise it starts at the next login.
    pub started: bool,
    /// Anything else the user should know (why this kind, what was not done).
    pub notes: Vec<String>,
    /// The user switched the entry off (Task Manager's Startup apps on Windows); install left
    /// it off, so yaku does not start at login until they switch it on again.
    pub disabled_by_user: bool,
}

impl InstallReport {
    /// Lines for a person.
    pub fn render(&self) -> String {
        let mut out = format!("Wrote the {}: {}\n", self.kind, self.location);
        if self.replaced {
            match &self.previous_binary {
                Some(old) => out.push_str(&format!(
                    "  replaced the previous one, which ran {}\n",
                    old.display()
                )),
                None => out.push_str("  replaced the previous one\n"),
            }
        }
        for location in &self.removed {
            out.push_str(&format!("  removed {location} (superseded)\n"));
        }
        for command in &self.commands {
            out.push_str(&format!("  ran: {command}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out.push_str(if self.disabled_by_user {
            "yaku will not start at login while it is switched off: switch it on in Task \
             Manager's Startup apps (or Settings > Apps > Startup).\n"
        } else if self.started {
            "yaku is running now and will start at each login.\n"
        } else {
            "yaku will start at your next login; run `yaku run` to start it now.\n"
        });
        out
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.id(),
            "location": self.location.to_string(),
            "replaced": self.replaced,
            "previous_binary": self.previous_binary.as_deref().map(lossy),
            "commands": self.commands,
            "removed": self.removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "started": self.started,
            "notes": self.notes,
            "disabled_by_user": self.disabled_by_user,
        })
    }
}

/// What `uninstall` removed and ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UninstallReport {
    /// The entries removed, with their kind.
    pub removed: Vec<(ServiceKind, Location)>,
    /// The commands run, in order, as typed.
    pub commands: Vec<String>,
    /// Anything that could not be done (a command that failed, a process left running).
    pub notes: Vec<String>,
}

impl UninstallReport {
    /// Nothing was installed.
    pub fn nothing_removed(&self) -> bool {
        self.removed.is_empty()
    }

    /// Lines for a person.
    pub fn render(&self) -> String {
        if self.nothing_removed() && self.notes.is_empty() {
            return "No yaku login service is installed: nothing to remove.\n".to_owned();
        }
        let mut out = String::new();
        for (kind, location) in &self.removed {
            out.push_str(&format!("Removed the {kind}: {location}\n"));
        }
        for command in &self.commands {
            out.push_str(&format!("  ran: {command}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "removed": self.removed.iter().map(|(kind, location)| json!({
                "kind": kind.id(),
                "location": location.to_string(),
            })).collect::<Vec<_>>(),
            "commands": self.commands,
            "notes": self.notes,
        })
    }
}

/// One installed entry as `status` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryStatus {
    pub kind: ServiceKind,
    pub location: Location,
    /// The program the entry runs (ExecStart / Exec / ProgramArguments / Run value), if readable.
    pub target: Option<PathBuf>,
    /// `target` is the binary asking (the same file, after resolving symlinks).
    pub points_here: bool,
    /// Starts at login; `None` when it cannot be told (no reachable user manager, say).
    pub enabled: Option<bool>,
    /// Running now; `None` when it cannot be told.
    pub running: Option<bool>,
    /// `enabled` is false because the user switched the entry off outside yaku (Task
    /// Manager's Startup apps on Windows).
    pub disabled_by_user: bool,
}

/// What `status` found: zero entries (not installed), usually one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The binary asking, which entries are compared with.
    pub binary: PathBuf,
    pub entries: Vec<EntryStatus>,
}

impl ServiceStatus {
    /// Some entry is installed.
    pub fn installed(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Lines for a person.
    pub fn render(&self) -> String {
        if !self.installed() {
            return "yaku is not installed as a login service (run `yaku service install`).\n"
                .to_owned();
        }
        let yes_no = |v: Option<bool>| match v {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!("installed: {} at {}\n", e.kind, e.location));
            if e.disabled_by_user {
                out.push_str(
                    "  enabled: no (switched off in Task Manager's Startup apps; switch it on there)\n",
                );
            } else {
                out.push_str(&format!("  enabled: {}\n", yes_no(e.enabled)));
            }
            out.push_str(&format!("  running: {}\n", yes_no(e.running)));
            match &e.target {
                Some(t) if e.points_here => {
                    out.push_str(&format!("  runs: {} (this binary)\n", t.display()));
                }
                Some(t) => out.push_str(&format!(
                    "  runs: {}, not this binary ({}): run `yaku service install` to update it\n",
                    t.display(),
                    self.binary.display()
                )),
                None => {
                    out.push_str("  runs: unknown (the entry names no program yaku can read)\n")
                }
            }
        }
        out
    }

    /// The status as one JSON object: `installed`, `binary`, and `entries` (kind, location,
    /// target, points_here, enabled, running; `null` where unknown; disabled_by_user: the
    /// user switched it off outside yaku).
    pub fn to_json(&self) -> Value {
        json!({
            "installed": self.installed(),
            "binary": lossy(&self.binary),
            "entries": self.entries.iter().map(|e| json!({
                "kind": e.kind.id(),
                "location": e.location.to_string(),
                "target": e.target.as_deref().map(lossy),
                "points_here": e.points_here,
                "enabled": e.enabled,
                "running": e.running,
                "disabled_by_user": e.disabled_by_user,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Installs (or rewrites: the binary may have moved) the login entry for `env.binary` and
/// starts it where the platform allows.
pub fn install(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    check_binary(&env.binary)?;
    platform::install(env)
}

/// Stops and removes whatever `install` wrote; nothing installed is not an error.
pub fn uninstall(env: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
    platform::uninstall(env)
}

/// What is installed, whether it is enabled and running, and whether it runs `env.binary`.
pub fn status(env: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
    platform::status(env)
}

/// The entry files hold text, so the binary's path must be absolute and UTF-8.
fn check_binary(binary: &Path) -> Result<(), ServiceError> {
    if !binary.is_absolute() {
        return Err(ServiceError::RelativeBinary(binary.to_path_buf()));
    }
    if binary.to_str().is_none() {
        return Err(ServiceError::UnsupportedBinary {
            path: binary.to_path_buf(),
            reason: "its path is not valid UTF-8".to_owned(),
        });
    }
    Ok(())
}

/// Whether `a` and `b` name the same binary, literally or once symlinks are resolved.
pub fn same_binary(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A file's text, or `None` when it does not exist.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn read_if_exists(path: &Path) -> Result<Option<String>, ServiceError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ServiceError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `text` to `path`, creating its directory.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn write_file(path: &Path, text: &str) -> Result<(), ServiceError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ServiceError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Removes the file at `path`; returns whether there was one.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn remove_if_exists(path: &Path) -> Result<bool, ServiceError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServiceError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_key_entry(enabled: Option<bool>, disabled_by_user: bool) -> ServiceStatus {
        ServiceStatus {
            binary: PathBuf::from(r"C:\yaku\yaku.exe"),
            entries: vec![EntryStatus {
                kind: ServiceKind::RunKey,
                location: Location::RegistryValue {
                    key: RUN_KEY.to_owned(),
                    name: RUN_VALUE_NAME.to_owned(),
                },
                target: Some(PathBuf::from(r"C:\yaku\yakuw.exe")),
                points_here: true,
                enabled,
                running: None,
                disabled_by_user,
            }],
        }
    }

    #[test]
    fn an_entry_the_user_switched_off_is_reported_disabled_in_text_and_json() {
        let cases = [
            (
                Some(false),
                true,
                "enabled: no (switched off in Task Manager",
                false,
                true,
            ),
            (Some(true), false, "enabled: yes", true, false),
            (None, false, "enabled: unknown", false, false),
        ];
        for (enabled, by_user, text, json_enabled, json_by_user) in cases {
            let status = run_key_entry(enabled, by_user);
            assert!(status.render().contains(text), "{}", status.render());
            let json = status.to_json();
            assert_eq!(
                json["entries"][0]["enabled"].as_bool().unwrap_or(false),
                json_enabled
            );
            assert_eq!(json["entries"][0]["disabled_by_user"], json_by_user);
        }
    }

    #[test]
    fn install_says_a_switched_off_entry_stays_off_instead_of_promising_a_start() {
        let mut report = InstallReport {
            kind: ServiceKind::RunKey,
            location: Location::RegistryValue {
                key: RUN_KEY.to_owned(),
                name: RUN_VALUE_NAME.to_owned(),
            },
            replaced: true,
            previous_binary: None,
            commands: Vec::new(),
            removed: Vec::new(),
            started: false,
            notes: Vec::new(),
            disabled_by_user: true,
        };
        assert!(
            report
                .render()
                .contains("will not start at login while it is switched off")
        );
        assert!(!report.render().contains("will start at your next login"));
        assert_eq!(report.to_json()["disabled_by_user"], true);
        report.disabled_by_user = false;
        assert!(report.render().contains("will start at your next login"));
        assert_eq!(report.to_json()["disabled_by_user"], false);
    }
}
