//! `DesktopEnv`: one test's own desktop. An Xvfb server on a free display number, a private
//! D-Bus session bus, dunst answering org.freedesktop.Notifications on it, dbus-monitor
//! capturing every Notify call, a loopback provider, and temporary XDG directories.
//!
//! The bus uses a config of its own rather than `--session`: the session config's service
//! directories hold dunst's D-Bus activation file, so any Notify sent while our dunst is down
//! (after `kill_x`, or in a no-server test) would start a stray dunst outside the test's
//! control.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _};

use super::monitor::{Capture, Notification};
use super::owner::ClipboardOwner;
use super::proc::{Proc, child_path, require_tool};
use super::provider::FakeProvider;
use super::wait::{secs, wait_until};
use super::yaku::{Yaku, YakuConfig, YakuFiles, read_lossy, tail};

/// How long a tool of the environment may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

const DUNSTRC: &str = "\
# Written by tests/desktop: a headless-safe dunst on the test's Xvfb.
[global]
    font = Monospace 8
    follow = none
    show_indicators = no
    history_length = 100
    sticky_history = yes
    idle_threshold = 0
";

pub struct DesktopEnv {
    /// XDG dirs, logs of the helpers, config files: removed on drop.
    pub dir: TempDir,
    pub provider: FakeProvider,
    display: u32,
    xvfb: Option<Proc>,
    /// While the X server is down: a socket holding the display's abstract address, so no
    /// other test's `Xvfb -displayfd` takes the number before `restart_x`.
    reservation: Option<OwnedFd>,
    bus_address: String,
    dbus: Option<Proc>,
    monitor: Option<Proc>,
    capture: Capture,
    dunst: Option<Proc>,
    xclips: Mutex<Vec<Proc>>,
    /// In-process owners kept until the end of the test (see [`keep_owner`](Self::keep_owner)).
    owners: Mutex<Vec<ClipboardOwner>>,
    yakus: Mutex<Vec<(u32, YakuFiles)>>,
    counter: AtomicUsize,
}

impl DesktopEnv {
    /// Starts the whole environment; fails (never skips) when a tool is missing.
    pub fn start() -> DesktopEnv {
        for tool in [
            "Xvfb",
            "xclip",
            "dbus-daemon",
            "dbus-monitor",
            "dbus-send",
            "dunst",
        ] {
            require_tool(tool);
        }
        let dir = tempfile::Builder::new()
            .prefix("yaku-desktop-")
            .tempdir()
            .expect("temp dir");
        for sub in ["home", "run", "state", "config", "cache", "data", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create XDG dir");
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod run dir");

        let counter = AtomicUsize::new(0);
        let (xvfb, display) = spawn_xvfb(dir.path(), None, &counter);
        let (dbus, bus_address) = spawn_bus(dir.path());
        let (monitor, capture) = spawn_monitor(dir.path(), &bus_address);

        let mut env = DesktopEnv {
            provider: FakeProvider::start(),
            dir,
            display,
            xvfb: Some(xvfb),
            reservation: None,
            bus_address,
            dbus: Some(dbus),
            monitor: Some(monitor),
            capture,
            dunst: None,
            xclips: Mutex::new(Vec::new()),
            owners: Mutex::new(Vec::new()),
            yakus: Mutex::new(Vec::new()),
            counter,
        };
        env.start_notification_server();
        env
    }

    /// The X display, ":N".
    pub fn display(&self) -> String {
        format!(":{}", self.display)
    }

    pub fn display_number(&self) -> u32 {
        self.display
    }

    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    // ---- notifications ----

    /// Every Notify call seen on the bus so far, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.capture.notifications()
    }

    /// The Notify calls whose app_name is "yaku".
    pub fn yaku_notifications(&self) -> Vec<Notification> {
        self.notifications()
            .into_iter()
            .filter(|n| n.app_name == "yaku")
            .collect()
    }

    /// Starts dunst on the current display and waits until it owns
    /// org.freedesktop.Notifications.
    pub fn start_notification_server(&mut self) {
        assert!(self.dunst.is_none(), "dunst is already running");
        let rc = self.path("dunstrc");
        std::fs::write(&rc, DUNSTRC).expect("write dunstrc");
        let log = self.path(&format!("logs/dunst-{}.log", self.next()));
        let mut cmd = Command::new("dunst");
        cmd.arg("-config").arg(&rc);
        self.desktop_env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(file(&log))
            .stderr(file(&log));
        let mut dunst = Proc::spawn("dunst", cmd).expect("spawn dunst");
        let bus = self.bus_address.clone();
        wait_until(
            START_TIMEOUT,
            "dunst to own org.freedesktop.Notifications",
            || name_has_owner(&bus, "org.freedesktop.Notifications") || !dunst.is_running(),
            || format!("dunst log:\n{}", read_lossy(&log)),
        );
        assert!(
            dunst.is_running(),
            "dunst exited at start: {:?}\n{}",
            dunst.try_wait(),
            read_lossy(&log)
        );
        self.dunst = Some(dunst);
    }

    /// Stops dunst and waits until nothing owns org.freedesktop.Notifications.
    pub fn stop_notification_server(&mut self) {
        if let Some(mut dunst) = self.dunst.take() {
            dunst.stop();
        }
        let bus = self.bus_address.clone();
        wait_until(
            START_TIMEOUT,
            "org.freedesktop.Notifications to have no owner",
            || !name_has_owner(&bus, "org.freedesktop.Notifications"),
            String::new,
        );
    }

    /// Sends a Notify call through gdbus (the harness self-test); returns the server's id.
    pub fn send_notification(
        &self,
        app_name: &str,
        replaces_id: u32,
        summary: &str,
        body: &str,
    ) -> u32 {
        assert!(
            super::proc::on_path("gdbus"),
            "`gdbus` not found on PATH: the harness self-test sends its notification with it; run scripts/test \
             (it installs it) or apt-get install libglib2.0-bin"
        );
        let mut cmd = Command::new("gdbus");
        cmd.args([
            "call",
            "--address",
            &self.bus_address,
            "--dest",
            "org.freedesktop.Notifications",
        ])
        .args([
            "--object-path",
            "/org/freedesktop/Notifications",
            "--method",
            "org.freedesktop.Notifications.Notify",
        ])
        .arg("--")
        .arg(gvariant_string(app_name))
        .arg(replaces_id.to_string())
        .arg(gvariant_string(""))
        .arg(gvariant_string(summary))
        .arg(gvariant_string(body))
        .args(["@as []", "@a{sv} {}", "5000"]);
        let (status, out, err) = self.run_tool(cmd, secs(10));
        assert!(status.success(), "gdbus Notify failed: {err}");
        // "(uint32 7,)"
        out.trim()
            .trim_start_matches("(uint32 ")
            .trim_end_matches(",)")
            .parse()
            .unwrap_or_else(|_| panic!("unexpected gdbus answer {out:?}"))
    }

    // ---- clipboard ----

    /// Puts `text` on the CLIPBOARD through a new `xclip` owner (in the foreground, in its own
    /// process group), and waits until that owner serves it.
    pub fn set_clipboard(&self, text: &str) {
        let before = self.selection_owner();
        let mut cmd = Command::new("xclip");
        cmd.args(["-quiet", "-selection", "clipboard", "-i"]);
        self.desktop_env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut xclip = Proc::spawn("xclip", cmd).expect("spawn xclip");
        {
            let mut stdin = xclip.child_mut().stdin.take().expect("xclip stdin");
            stdin.write_all(text.as_bytes()).expect("write to xclip");
        }
        wait_until(
            secs(10),
            &format!("xclip to own the CLIPBOARD with {text:?}"),
            || {
                let owner = self.selection_owner();
                owner.is_some()
                    && owner != before
                    && self.read_clipboard("UTF8_STRING").as_deref() == Ok(text)
            },
            || self.report(),
        );
        let mut xclips = self.xclips.lock().unwrap_or_else(|e| e.into_inner());
        // Former owners exit when they lose the selection: reap them.
        xclips.retain_mut(|p| p.is_running());
        xclips.push(xclip);
    }

    /// The CLIPBOARD converted to `target`, as `xclip -o` reads it.
    pub fn read_clipboard(&self, target: &str) -> Result<String, String> {
        let mut cmd = Command::new("xclip");
        cmd.args(["-o", "-selection", "clipboard", "-t", target]);
        self.desktop_env(&mut cmd);
        let (status, out, err) = self.run_tool(cmd, secs(5));
        if status.success() { Ok(out) } else { Err(err) }
    }

    /// The CLIPBOARD owner window, None when there is none (or no X server).
    pub fn selection_owner(&self) -> Option<u32> {
        let (conn, _) = x11rb::connect(Some(&self.display())).ok()?;
        let clipboard = conn
            .intern_atom(false, b"CLIPBOARD")
            .ok()?
            .reply()
            .ok()?
            .atom;
        let owner = conn
            .get_selection_owner(clipboard)
            .ok()?
            .reply()
            .ok()?
            .owner;
        (owner != u32::from(AtomEnum::NONE)).then_some(owner)
    }

    /// An in-process CLIPBOARD owner on this display (extra targets, read counts).
    pub fn clipboard_owner(&self) -> ClipboardOwner {
        ClipboardOwner::start(&self.display()).unwrap_or_else(|e| panic!("clipboard owner: {e}"))
    }

    /// Keeps `owner` alive until the X server goes or the test ends. An owner that vanishes
    /// while a reader is between its TARGETS and UTF8_STRING requests leaves that reader
    /// waiting for an answer that never comes (the daemon times out after 2 s); a later copy
    /// taking the CLIPBOARD over is the clean way to end an owner's part.
    pub fn keep_owner(&self, owner: ClipboardOwner) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(owner);
    }

    // ---- the X server ----

    /// Kills the X server (SIGKILL, as a crash), and dunst and the xclip owners with it. The
    /// display number stays reserved for [`restart_x`](Self::restart_x).
    pub fn kill_x(&mut self) {
        if let Some(mut dunst) = self.dunst.take() {
            dunst.stop();
        }
        let mut xvfb = self
            .xvfb
            .take()
            .expect("kill_x: the X server is not running");
        xvfb.kill_now();
        drop(xvfb);
        for mut xclip in self
            .xclips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            xclip.kill_now();
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let fd = reserve_display(self.display).unwrap_or_else(|e| {
            panic!(
                "display :{} was taken while its X server was down: {e}",
                self.display
            )
        });
        self.reservation = Some(fd);
    }

    /// Starts a new X server on the same display number, and dunst on it.
    pub fn restart_x(&mut self) {
        assert!(self.xvfb.is_none(), "restart_x: the X server is running");
        self.reservation = None;
        // The killed server's socket can linger a moment (a child forked elsewhere in this
        // process may hold the reservation until it execs): try again, within a bound.
        let deadline = Instant::now() + START_TIMEOUT;
        let (xvfb, display) = loop {
            match try_spawn_xvfb(self.dir.path(), Some(self.display), &self.counter) {
                Ok(started) => break started,
                Err(why) if Instant::now() < deadline && why.contains("already running") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(why) => panic!("{why}"),
            }
        };
        assert_eq!(
            display, self.display,
            "the restarted X server reported another display"
        );
        self.xvfb = Some(xvfb);
        self.start_notification_server();
    }

    /// Another X server on a free display (`-displayfd`), for checking that a down display's
    /// number stays reserved.
    pub fn spawn_other_xvfb(&self) -> (Proc, u32) {
        spawn_xvfb(self.dir.path(), None, &self.counter)
    }

    // ---- the daemon ----

    /// `$XDG_RUNTIME_DIR/yaku/yaku.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.path("run/yaku/yaku.lock")
    }

    /// `$XDG_STATE_HOME/yaku/logs/yaku.log`: the symlink to the current log file.
    pub fn log_path(&self) -> PathBuf {
        self.path("state/yaku/logs/yaku.log")
    }

    /// The current log file's text, through the symlink ("" while there is none).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Writes `config` to a new file (mode 0600) and returns its path.
    pub fn write_config(&self, config: &YakuConfig) -> PathBuf {
        let path = self.path(&format!("config/yaku-{}.toml", self.next()));
        std::fs::write(&path, config.to_toml()).expect("write config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config");
        path
    }

    /// `yaku run --config FILE` with a clean environment pointing at this desktop.
    pub fn spawn_yaku(&self, config: &YakuConfig) -> Yaku {
        self.spawn_yaku_env(config, &[])
    }

    /// [`spawn_yaku`](Self::spawn_yaku) with extra environment variables (e.g. YAKU_LOG).
    pub fn spawn_yaku_env(&self, config: &YakuConfig, vars: &[(&str, &str)]) -> Yaku {
        let config_path = self.write_config(config);
        self.spawn_yaku_at_env(&config_path, vars)
    }

    /// The environment every desktop process of the test gets: nothing from the test's own
    /// but PATH, and this desktop's display, bus and XDG dirs.
    fn desktop_env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env_clear()
            .env("PATH", child_path())
            .env("LANG", "C.UTF-8")
            .env("HOME", d.join("home"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("XDG_STATE_HOME", d.join("state"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_CACHE_HOME", d.join("cache"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("DISPLAY", self.display())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address);
    }

    /// Runs `yaku ARGS` in this desktop's environment (the same runtime dir as the daemon, so
    /// `status`, `pause` and `reload` reach it); returns its status, stdout and stderr.
    pub fn yaku_command(&self, args: &[&str]) -> (ExitStatus, String, String) {
        self.yaku_command_env(args, &[])
    }

    /// [`yaku_command`](Self::yaku_command) with extra environment variables.
    pub fn yaku_command_env(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> (ExitStatus, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
        cmd.args(args);
        self.desktop_env(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        self.run_tool(cmd, Duration::from_secs(30))
    }

    /// `yaku run --config PATH` in this desktop's environment, not yet started (for a test
    /// that runs it on a terminal of its own).
    pub fn yaku_run_command(&self, config_path: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
        cmd.arg("run").arg("--config").arg(config_path);
        self.desktop_env(&mut cmd);
        cmd
    }

    /// Writes `text` as a config file (0600) and returns its path.
    pub fn write_config_text(&self, text: &str) -> PathBuf {
        let path = self.path(&format!("config/raw-{}.toml", self.next()));
        std::fs::write(&path, text).expect("write config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config");
        path
    }

    /// `yaku run --config PATH` for a config file written by the test.
    pub fn spawn_yaku_at(&self, config_path: &Path) -> Yaku {
        self.spawn_yaku_at_env(config_path, &[])
    }

    /// [`spawn_yaku_at`](Self::spawn_yaku_at) with extra environment variables.
    pub fn spawn_yaku_at_env(&self, config_path: &Path, vars: &[(&str, &str)]) -> Yaku {
        let n = self.next();
        let files = YakuFiles {
            stdout: self.path(&format!("logs/yaku-{n}.stdout")),
            stderr: self.path(&format!("logs/yaku-{n}.stderr")),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
        cmd.arg("run").arg("--config").arg(config_path);
        self.desktop_env(&mut cmd);
        cmd.env("RUST_BACKTRACE", "1");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(file(&files.stdout))
            .stderr(file(&files.stderr));
        let proc = Proc::spawn("yaku", cmd).expect("spawn yaku");
        self.yakus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((proc.pid(), files.clone()));
        Yaku {
            proc: Mutex::new(proc),
            files,
            config_path: config_path.to_path_buf(),
            lock_file: self.lock_path(),
            log_file: self.log_path(),
        }
    }

    /// Runs a short-lived tool with a timeout; returns its status, stdout and stderr.
    fn run_tool(&self, mut cmd: Command, timeout: Duration) -> (ExitStatus, String, String) {
        let n = self.next();
        let (out, err) = (
            self.path(&format!("logs/tool-{n}.out")),
            self.path(&format!("logs/tool-{n}.err")),
        );
        cmd.stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err));
        let mut proc = Proc::spawn("tool", cmd).expect("spawn tool");
        let status = proc
            .wait_timeout(timeout)
            .unwrap_or_else(|| proc.kill_now());
        let result = (status, read_lossy(&out), read_lossy(&err));
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&err);
        result
    }

    // ---- diagnostics ----

    /// What the world looks like, for failure messages: the provider's requests, the
    /// notifications, each daemon's output and the log file.
    pub fn report(&self) -> String {
        let mut r = String::new();
        r.push_str(&format!(
            "--- provider requests ({}): {:?}\n",
            self.provider.count(),
            self.provider.lines()
        ));
        r.push_str(&format!(
            "--- notifications ({}):\n",
            self.notifications().len()
        ));
        for n in self.notifications() {
            r.push_str(&format!(
                "  app={:?} replaces_id={} returned_id={:?} timeout={} summary={:?} body={:?}\n",
                n.app_name, n.replaces_id, n.returned_id, n.expire_timeout, n.summary, n.body
            ));
        }
        for (pid, files) in self.yakus.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            r.push_str(&format!(
                "--- yaku pid {pid} stdout:\n{}\n",
                tail(&read_lossy(&files.stdout), 2000)
            ));
            r.push_str(&format!(
                "--- yaku pid {pid} stderr:\n{}\n",
                tail(&read_lossy(&files.stderr), 4000)
            ));
        }
        r.push_str(&format!(
            "--- log file {}:\n{}\n",
            self.log_path().display(),
            tail(&self.log(), 4000)
        ));
        r
    }
}

impl Drop for DesktopEnv {
    fn drop(&mut self) {
        for mut xclip in self
            .xclips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            xclip.stop();
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.dunst.take();
        self.monitor.take();
        self.dbus.take();
        self.xvfb.take();
        self.reservation.take();
    }
}

fn file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Reads one line from a child's stdout, waiting at most `timeout`.
fn read_first_line(out: impl std::io::Read + Send + 'static, timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout)
        .ok()
        .filter(|l| !l.trim().is_empty())
}

/// `Xvfb [:N] -displayfd 1 ...`: the server writes its display number to the pipe on stdout
/// once it accepts connections.
fn spawn_xvfb(dir: &Path, display: Option<u32>, counter: &AtomicUsize) -> (Proc, u32) {
    try_spawn_xvfb(dir, display, counter).unwrap_or_else(|why| panic!("{why}"))
}

/// [`spawn_xvfb`], with why it did not start.
fn try_spawn_xvfb(
    dir: &Path,
    display: Option<u32>,
    counter: &AtomicUsize,
) -> Result<(Proc, u32), String> {
    let log = dir.join(format!(
        "logs/xvfb-{}.log",
        counter.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new("Xvfb");
    if let Some(n) = display {
        cmd.arg(format!(":{n}"));
    }
    cmd.args([
        "-displayfd",
        "1",
        "-noreset",
        "-nolisten",
        "tcp",
        "-screen",
        "0",
        "1024x768x24",
    ])
    .env_clear()
    .env("PATH", child_path())
    .env("HOME", dir.join("home"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(file(&log));
    let mut xvfb = Proc::spawn("Xvfb", cmd).expect("spawn Xvfb");
    let out = xvfb.child_mut().stdout.take().expect("Xvfb stdout");
    let line = read_first_line(out, START_TIMEOUT);
    let number = line.as_deref().and_then(|l| l.trim().parse::<u32>().ok());
    match number {
        Some(n) => Ok((xvfb, n)),
        None => Err(format!(
            "Xvfb did not report a display number (got {line:?}, exit {:?}):\n{}",
            xvfb.try_wait(),
            read_lossy(&log)
        )),
    }
}

/// A private session bus with no service activation; returns it and its address.
fn spawn_bus(dir: &Path) -> (Proc, String) {
    let conf = dir.join("bus.conf");
    let config = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        dir.display()
    );
    std::fs::write(&conf, config).expect("write bus config");
    let log = dir.join("logs/dbus-daemon.log");
    let mut cmd = Command::new("dbus-daemon");
    cmd.arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .env_clear()
        .env("PATH", child_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file(&log));
    let mut bus = Proc::spawn("dbus-daemon", cmd).expect("spawn dbus-daemon");
    let out = bus.child_mut().stdout.take().expect("dbus-daemon stdout");
    match read_first_line(out, START_TIMEOUT) {
        Some(address) => (bus, address.trim().to_owned()),
        None => panic!(
            "dbus-daemon printed no address (exit {:?}):\n{}",
            bus.try_wait(),
            read_lossy(&log)
        ),
    }
}

/// dbus-monitor on `address`, watching Notify calls and method returns (the returned ids).
fn spawn_monitor(dir: &Path, address: &str) -> (Proc, Capture) {
    let log = dir.join("logs/dbus-monitor.log");
    let mut cmd = Command::new("dbus-monitor");
    cmd.args(["--address", address])
        .arg("type='method_call',interface='org.freedesktop.Notifications',member='Notify'")
        .arg("type='method_return'")
        .env_clear()
        .env("PATH", child_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file(&log));
    let mut monitor = Proc::spawn("dbus-monitor", cmd).expect("spawn dbus-monitor");
    let capture = Capture::start(
        monitor
            .child_mut()
            .stdout
            .take()
            .expect("dbus-monitor stdout"),
    );
    wait_until(
        START_TIMEOUT,
        "dbus-monitor to become a monitor",
        || capture.is_ready(),
        || {
            format!(
                "dbus-monitor exit {:?}\n{}\n{}",
                monitor.try_wait(),
                read_lossy(&log),
                capture.raw_tail()
            )
        },
    );
    (monitor, capture)
}

/// Whether `name` has an owner on the bus at `address` (dbus-send, no session needed).
fn name_has_owner(address: &str, name: &str) -> bool {
    let out = Command::new("dbus-send")
        .arg(format!("--bus={address}"))
        .args([
            "--print-reply",
            "--reply-timeout=2000",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
        ])
        .arg("org.freedesktop.DBus.NameHasOwner")
        .arg(format!("string:{name}"))
        .env_clear()
        .env("PATH", child_path())
        .stdin(Stdio::null())
        .output();
    matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("boolean true"))
}

/// Binds (without listening) the abstract socket an X server on display `n` would listen on:
/// `Xvfb -displayfd` skips a display whose socket it cannot bind, and clients get "connection
/// refused" from it, as from a display with no server.
fn reserve_display(n: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = format!("/tmp/.X11-unix/X{n}");
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] stays 0: the abstract namespace.
    for (i, b) in name.bytes().enumerate() {
        addr.sun_path[i + 1] = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// `text` as a GVariant string literal (for gdbus's arguments).
fn gvariant_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
