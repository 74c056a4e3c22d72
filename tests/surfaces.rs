//! yaku's own surfaces under attack or accident, each against a real `yaku run`: bad control
//! requests, a flood of idle connections under a low descriptor limit, runtime and log dirs
//! another user made, a planted lock symlink, signals during a slow start with a million
//! history rows, the store file deleted under the daemon, and the mode of an export.
//!
//! The tests that need a second user (`nobody`, through `runuser`) need root; without it they
//! fail saying so, they never pass silently. CI runs as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
#[path = "desktop/mod.rs"]
mod desktop;

#[allow(dead_code)]
#[path = "hardening/bin.rs"]
mod bin;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use desktop::proc::{Proc, child_path};
use desktop::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The environment a desktop's processes get (as the harness gives its daemon), for the tests
/// that start `yaku run` their own way.
fn desktop_command(env: &DesktopEnv, program: &str) -> Command {
    let d = env.dir.path();
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", child_path())
        .env("LANG", "C.UTF-8")
        .env("HOME", d.join("home"))
        .env("XDG_RUNTIME_DIR", d.join("run"))
        .env("XDG_STATE_HOME", d.join("state"))
        .env("XDG_CONFIG_HOME", d.join("config"))
        .env("XDG_CACHE_HOME", d.join("cache"))
        .env("XDG_DATA_HOME", d.join("data"))
        .env("DISPLAY", env.display())
        .env("DBUS_SESSION_BUS_ADDRESS", env.bus_address())
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// Waits for the daemon's first clipboard read, so it is past its start.
fn wait_polling(env: &DesktopEnv) {
    let owner = env.clipboard_owner();
    let probe = owner.offer("surfaces test: is the daemon polling?");
    wait_until(
        secs(20),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
        || env.report(),
    );
    env.keep_owner(owner);
}

/// Copies `line` and waits until the provider was asked to translate it.
fn translates(env: &DesktopEnv, line: &str) {
    let owner = env.clipboard_owner();
    owner.offer(line);
    wait_until(
        secs(15),
        "the copied line to reach the provider",
        || env.provider.lines().iter().any(|l| l == line),
        || env.report(),
    );
    env.keep_owner(owner);
}

fn status_json(env: &DesktopEnv) -> Value {
    let (st, out, err) = env.yaku_command(&["status", "--json"]);
    assert!(
        st.success(),
        "yaku status failed: {out} {err}\n{}",
        env.report()
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
}

/// Sends raw bytes on the control socket (then ends the write side) and returns the reply.
fn raw_request(socket: &Path, bytes: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The server may stop reading at its size cap; a failed write is then fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            // A server that closes with part of an oversized request unread resets the
            // connection after its reply: the reply is what counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && reply.contains(&b'\n') => {
                break;
            }
            Err(e) => panic!("reading the reply: {e} (after {reply:?})"),
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    serde_json::from_str(reply.trim())
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply:?}"))
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that ends the command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// The signals `pid` catches (SigCgt in /proc/PID/status).
fn caught_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

fn sig_bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Fails the test unless it runs as root: it needs a second user.
fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "{what} needs root (to act as a second user, `nobody`, with runuser); run it as root, as CI does"
    );
}

/// Runs `script` with sh as the user `nobody`.
fn as_nobody(script: &str) {
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "sh", "-c", script])
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A daemon without a desktop (no DISPLAY: its clipboard thread only retries) in `home`, for
/// the tests about files, dirs and signals.
struct Headless {
    proc: Proc,
    stderr: PathBuf,
}

impl Headless {
    fn spawn(home: &bin::Home, config: &Path, extra: &[(&str, &str)]) -> Headless {
        let stderr = home.path("daemon.stderr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
        cmd.args(["run", "--config"]).arg(config).env_clear();
        cmd.env("PATH", child_path()).env("RUST_BACKTRACE", "1");
        for (k, v) in home.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        Headless {
            proc: Proc::spawn("yaku", cmd).unwrap(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        bin::read_lossy(&self.stderr)
    }
}

/// A config whose provider nobody calls.
fn headless_config(home: &bin::Home, extra: &str) -> PathBuf {
    home.write(
        "config/yaku/config.toml",
        &format!(
            "[[providers]]\nname = \"nobody\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"surfaces-key-not-used-0123456789\"\nrequests_per_minute = 0\n\n{extra}"
        ),
        0o600,
    )
}

fn yaku_in(home: &bin::Home, args: &[&str], extra: &[(&str, &str)]) -> bin::Out {
    let mut env = home.env();
    env.extend(bin::vars(extra));
    bin::yaku(args, &env, None, Duration::from_secs(30))
}

// ---------------------------------------------------------------------------------------------
// 1. Bad control requests
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_control_requests_get_an_error_reply_and_the_daemon_still_answers_and_translates() {
    let env = DesktopEnv::start();
    let yaku = env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    wait_polling(&env);
    let socket = env.dir.path().join("run/yaku/yaku.sock");
    let long = vec![b'a'; 70 * 1024];
    let cases: Vec<(&str, &[u8])> = vec![
        // Crashed the daemon: "overflow when adding duration to instant".
        ("1e19 seconds", br#"{"cmd":"pause","for_secs":1e19}"#),
        // Panicked the connection task.
        ("a negative pause", br#"{"cmd":"pause","for_secs":-1}"#),
        // Paused for ever.
        (
            "a string for a number",
            br#"{"cmd":"pause","for_secs":"10"}"#,
        ),
        ("past 30 days", br#"{"cmd":"pause","for_secs":2592001}"#),
        (
            "a number JSON cannot hold",
            br#"{"cmd":"pause","for_secs":1e400}"#,
        ),
        ("an unknown command", br#"{"cmd":"explode"}"#),
        ("not UTF-8", b"{\"cmd\":\"st\xff\xfeatus\"}\n"),
        ("not JSON", b"status please\n"),
        ("nothing at all", b""),
        ("70 KiB without a newline", &long),
    ];
    for (what, bytes) in &cases {
        let reply = raw_request(&socket, bytes);
        assert_eq!(reply["ok"], false, "{what}: {reply}");
        assert!(
            reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {reply}"
        );
        assert!(
            yaku.is_running(),
            "{what} stopped the daemon: {}",
            env.report()
        );
        let st = status_json(&env);
        assert_eq!(st["paused"], false, "{what} paused the daemon");
    }
    assert!(!yaku.stderr().contains("panicked"), "{}", yaku.stderr());
    translates(&env, "不正な要求のあとでも翻訳されます。");
    assert!(yaku.is_running());
}

// ---------------------------------------------------------------------------------------------
// 2. Idle connections under a low descriptor limit
// ---------------------------------------------------------------------------------------------

#[test]
fn two_hundred_idle_connections_under_ulimit_128_neither_spin_nor_flood_the_log() {
    let env = DesktopEnv::start();
    let config = env.write_config(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    let mut cmd = desktop_command(&env, "bash");
    cmd.arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" run --config "$1""#)
        .arg(env!("CARGO_BIN_EXE_yaku"))
        .arg(&config);
    let stderr = env.dir.path().join("logs/ulimit.stderr");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut daemon = Proc::spawn("yaku", cmd).unwrap();
    wait_polling(&env);
    let pid = daemon.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("128")),
        "{limits}"
    );

    let socket = env.dir.path().join("run/yaku/yaku.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log_before = env.log().len();
    let cpu_before = cpu_secs(pid);
    let measured = Instant::now();
    // Connect without a request, as fast as the socket takes them; a connect the full backlog
    // holds up is given up after a while (it is just as idle).
    let idle = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..200 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::UnixStream::connect(&socket),
            )
            .await
            {
                idle.push(s);
            }
        }
        idle
    });
    assert!(
        idle.len() >= 100,
        "only {} connections were made",
        idle.len()
    );
    // Hold them for about five seconds; the daemon should be idle meanwhile.
    let until = measured + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(daemon.is_running(), "{}", bin::read_lossy(&stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_secs(pid) - cpu_before;
    let wall = measured.elapsed().as_secs_f64();
    let grown = env.log().len().saturating_sub(log_before);
    eprintln!(
        "{} idle connections: {cpu:.2} s of CPU in {wall:.1} s, log grew {grown} bytes",
        idle.len()
    );
    // Spinning was 200 % of a core; an idle daemon needs a few percent.
    assert!(
        cpu < 0.25 * wall,
        "the daemon used {cpu:.2} s of CPU in {wall:.1} s"
    );
    assert!(
        grown < 64 * 1024,
        "the log grew {grown} bytes in {wall:.1} s"
    );
    drop(idle);
    drop(rt);

    // With the connections gone (closed here, or cut by the read timeout), all is as before.
    wait_until(
        secs(15),
        "`yaku status` to answer after the idle connections",
        || env.yaku_command(&["status"]).0.success(),
        || env.report(),
    );
    translates(&env, "接続が溢れたあとでも翻訳されます。");
    let text = bin::read_lossy(&stderr);
    assert!(!text.contains("panicked"), "{text}");
    daemon.stop();
}

/// Open descriptors of `pid`.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[test]
fn with_its_descriptor_table_full_the_daemon_backs_off_warns_once_and_recovers() {
    let env = DesktopEnv::start();
    let yaku = env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    wait_polling(&env);
    translates(&env, "記述子が尽きる前の行です。");
    let pid = yaku.pid();
    // Room for a few more descriptors only: well under the 16 connections the server would
    // take, so idle connections make accept() fail with EMFILE until they go.
    let limit = open_fds(pid) + 4;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: 4096,
    };
    // SAFETY: prlimit on our own child with a valid rlimit and no old-limit out pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    let socket = env.dir.path().join("run/yaku/yaku.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log_before = env.log().len();
    let cpu_before = cpu_secs(pid);
    let measured = Instant::now();
    let idle = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..200 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(100),
                tokio::net::UnixStream::connect(&socket),
            )
            .await
            {
                idle.push(s);
            }
        }
        idle
    });
    let until = measured + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(yaku.is_running(), "{}", env.report());
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_secs(pid) - cpu_before;
    let wall = measured.elapsed().as_secs_f64();
    let log = env.log();
    let grown = log.len().saturating_sub(log_before);
    let warnings = log.matches("control socket accept failed").count();
    eprintln!(
        "limit {limit}, {} connections: {cpu:.2} s of CPU in {wall:.1} s, log grew {grown} bytes, {warnings} accept warnings",
        idle.len()
    );
    assert_eq!(
        warnings, 1,
        "the accept failure was not hit, or not rate limited: {log}"
    );
    assert!(
        cpu < 0.25 * wall,
        "the daemon used {cpu:.2} s of CPU in {wall:.1} s"
    );
    assert!(
        grown < 64 * 1024,
        "the log grew {grown} bytes in {wall:.1} s"
    );
    drop(idle);
    drop(rt);
    wait_until(
        secs(20),
        "`yaku status` to answer once the idle connections are gone",
        || env.yaku_command(&["status"]).0.success(),
        || env.report(),
    );
    translates(&env, "記述子が戻ったあとの行です。");
    assert!(!yaku.stderr().contains("panicked"), "{}", yaku.stderr());
}

// ---------------------------------------------------------------------------------------------
// 3. Runtime and log dirs another user made; a planted lock symlink
// ---------------------------------------------------------------------------------------------

/// A world-traversable scratch dir (nobody must reach into it), with a shared `run` (1777).
fn shared_scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("yaku-surfaces-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = dir.path().join("shared-run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

#[test]
fn a_runtime_dir_another_user_made_is_never_used_and_a_planted_lock_symlink_is_not_followed() {
    require_root("this test");
    let scratch = shared_scratch();
    let run = scratch.path().join("shared-run");
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
    let planted = run.join("yaku");
    as_nobody(&format!(
        "mkdir -m 777 {p} && ln -s {v} {p}/yaku.lock",
        p = planted.display(),
        v = victim.display()
    ));
    let home = bin::Home::new();
    let config = headless_config(&home, "");
    let run_env = [("XDG_RUNTIME_DIR", run.to_str().unwrap())];

    // With only the planted dir there, the client does not talk to anything in it.
    let stray = std::os::unix::net::UnixListener::bind(planted.join("yaku.sock")).unwrap();
    stray.set_nonblocking(true).unwrap();
    let out = yaku_in(&home, &["status"], &run_env);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert_eq!(out.stderr.trim(), "yaku is not running");
    assert!(
        stray.accept().is_err(),
        "the client connected to a socket in a dir nobody owns"
    );
    drop(stray);
    std::fs::remove_file(planted.join("yaku.sock")).unwrap();

    let mut daemon = Headless::spawn(&home, &config, &run_env);
    let own = run.join("yaku-0");
    wait_until(
        secs(20),
        "`yaku status` to reach the daemon",
        || yaku_in(&home, &["status"], &run_env).code == Some(0),
        || daemon.stderr(),
    );
    assert!(daemon.proc.is_running());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::symlink_metadata(&own).unwrap().uid(), 0);
    assert_eq!(mode(&own), 0o700);
    assert!(own.join("yaku.sock").exists() && own.join("yaku.lock").exists());
    let mut names: Vec<String> = std::fs::read_dir(&planted)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["yaku.lock"], "yaku wrote into the dir nobody owns");
    assert_eq!(mode(&planted), 0o777);
    assert_eq!(mode(&own.join("yaku.lock")) & 0o077, 0);
    let log = bin::read_lossy(&home.path("state/yaku/logs/yaku.log"));
    assert!(
        log.contains("the runtime dir is not private to this user"),
        "{log}"
    );
    daemon.proc.stop();
}

#[test]
fn a_runtime_dir_of_ours_that_others_may_enter_is_not_used_and_a_lock_symlink_in_ours_is_refused() {
    require_root("this test");
    let scratch = shared_scratch();
    let run = scratch.path().join("shared-run");
    // Ours, but 0755: someone could have been watching or racing in it.
    std::fs::create_dir(run.join("yaku")).unwrap();
    std::fs::set_permissions(run.join("yaku"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The fallback is ours and private, but holds a lock symlink (planted while it was open).
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let fallback = run.join("yaku-0");
    std::fs::create_dir(&fallback).unwrap();
    std::os::unix::fs::symlink(&victim, fallback.join("yaku.lock")).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o700)).unwrap();

    let home = bin::Home::new();
    let config = headless_config(&home, "");
    let run_env = [("XDG_RUNTIME_DIR", run.to_str().unwrap())];
    let mut daemon = Headless::spawn(&home, &config, &run_env);
    let exit = daemon.proc.wait_timeout(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the daemon ran with a symlink for its lock: {exit:?} {}",
        daemon.stderr()
    );
    assert!(daemon.stderr().contains("symlink"), "{}", daemon.stderr());
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(mode(&run.join("yaku")), 0o755);
    assert!(!run.join("yaku/yaku.lock").exists());

    // With the symlink gone the daemon starts there, and the 0755 dir stays unused.
    std::fs::remove_file(fallback.join("yaku.lock")).unwrap();
    let mut daemon = Headless::spawn(&home, &config, &run_env);
    wait_until(
        secs(20),
        "`yaku status` to reach the daemon",
        || yaku_in(&home, &["status"], &run_env).code == Some(0),
        || daemon.stderr(),
    );
    assert!(fallback.join("yaku.sock").exists());
    assert!(
        std::fs::read_dir(run.join("yaku"))
            .unwrap()
            .next()
            .is_none()
    );
    daemon.proc.stop();
}

#[test]
fn a_shared_log_dir_keeps_its_mode_and_yakus_files_in_it_are_0600() {
    require_root("this test");
    let scratch = shared_scratch();
    let logs = scratch.path().join("shared-run/logs");
    as_nobody(&format!("mkdir -m 1777 {}", logs.display()));
    // A log file of an earlier run, written under a loose umask.
    let old = logs.join("yaku.2026-11-30.log");
    std::fs::write(&old, "an old line\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let home = bin::Home::new();
    let config = headless_config(&home, &format!("[log]\ndir = \"{}\"\n", logs.display()));
    let mut daemon = Headless::spawn(&home, &config, &[]);
    wait_until(
        secs(20),
        "`yaku status` to reach the daemon",
        || yaku_in(&home, &["status"], &[]).code == Some(0),
        || daemon.stderr(),
    );
    wait_until(
        secs(10),
        "today's log file",
        || bin::read_lossy(&logs.join("yaku.log")).contains("yaku starting"),
        || daemon.stderr(),
    );
    assert_eq!(mode(&logs), 0o1777, "the shared log dir was chmod-ed");
    assert_eq!(std::fs::symlink_metadata(&logs).unwrap().uid(), 65534);
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_file() {
            assert_eq!(meta.mode() & 0o777, 0o600, "{}", path.display());
        }
    }
    daemon.proc.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. Start-up with a million history rows; signals from the first moment
// ---------------------------------------------------------------------------------------------

/// Fills the store at `path` (created by yaku, so the schema is its own) with `rows` finished
/// lines in one transaction.
fn fill_store(path: &Path, rows: u64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO lines (at_ms, source, text, status, provider, model, best, options,
                            latency_ms, finished_ms)
         SELECT 1700000000000 + i, 'clipboard', '行 ' || i, 'translated', 'nobody', 'm',
                'line ' || i, json_array('line ' || i), 200, 1700000000200 + i FROM n;
         COMMIT;"
    ))
    .unwrap();
}

fn count_lines(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("SELECT count(*) FROM lines", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn with_a_million_history_rows_the_socket_answers_at_once_sighups_at_start_do_not_kill_and_retention_keeps_its_progress()
 {
    let home = bin::Home::new();
    let config = headless_config(&home, "[history]\nmax_rows = 100000\n");
    let c = config.to_str().unwrap();
    let out = yaku_in(&home, &["history", "-n", "1", "--config", c], &[]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    let db = home.path("data/yaku/yaku.db");
    fill_store(&db, 1_000_000);

    let spawned = Instant::now();
    let mut daemon = Headless::spawn(&home, &config, &[]);
    let pid = daemon.proc.pid();
    let wanted = sig_bit(libc::SIGHUP) | sig_bit(libc::SIGTERM) | sig_bit(libc::SIGINT);
    let stderr = daemon.stderr.clone();
    wait_until(
        secs(10),
        "the daemon to catch SIGHUP, SIGTERM and SIGINT",
        || caught_signals(pid) & wanted == wanted || daemon.proc.try_wait().is_some(),
        || bin::read_lossy(&stderr),
    );
    let handlers_after = spawned.elapsed();
    // At once, while it is still starting, and a few times more during its first second.
    for _ in 0..5 {
        daemon.proc.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon.proc.is_running(),
        "a SIGHUP at start killed the daemon: {:?} {}",
        daemon.proc.try_wait(),
        daemon.stderr()
    );
    let mut answered = None;
    wait_until(
        secs(20),
        "`yaku status` to answer with a million rows in the store",
        || {
            let ok = yaku_in(&home, &["status", "--config", c], &[]).code == Some(0);
            if ok {
                answered = Some(spawned.elapsed());
            }
            ok
        },
        || daemon.stderr(),
    );
    eprintln!(
        "signal handlers after {handlers_after:?}, status answered after {:?}",
        answered.unwrap()
    );
    assert!(daemon.proc.is_running());
    // Stopped half way, the retention keeps what it did: each batch is committed.
    wait_until(
        secs(60),
        "the retention's first batches",
        || count_lines(&db) < 1_000_000,
        || daemon.stderr(),
    );
    daemon.proc.signal(libc::SIGTERM);
    let exit = daemon.proc.wait_timeout(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?} {}",
        daemon.stderr()
    );
    let left = count_lines(&db);
    assert!(left < 1_000_000, "the stop undid the retention");
    eprintln!("{left} lines left when stopped");
    let log = bin::read_lossy(&home.path("state/yaku/logs/yaku.log"));
    assert!(log.contains("SIGHUP: reloading the config"), "{log}");

    // The next start finishes the job.
    let mut daemon = Headless::spawn(&home, &config, &[]);
    wait_until(
        secs(240),
        "the retention to bring the history down to 100,000 lines",
        || count_lines(&db) <= 100_000,
        || daemon.stderr(),
    );
    assert_eq!(count_lines(&db), 100_000);
    wait_until(
        secs(10),
        "the retention's log line",
        || {
            bin::read_lossy(&home.path("state/yaku/logs/yaku.log"))
                .contains("history retention removed old lines")
        },
        || daemon.stderr(),
    );
    daemon.proc.signal(libc::SIGTERM);
    let exit = daemon.proc.wait_timeout(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?} {}",
        daemon.stderr()
    );
}

#[test]
fn a_store_with_damaged_pages_is_moved_aside_in_the_background_and_a_fresh_one_serves() {
    let home = bin::Home::new();
    let config = headless_config(&home, "");
    let c = config.to_str().unwrap();
    let out = yaku_in(&home, &["history", "-n", "1", "--config", c], &[]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    let db = home.path("data/yaku/yaku.db");
    fill_store(&db, 20_000);
    {
        // Checkpointed and closed, so the damage below is all there is.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .unwrap();
    }
    // Scribble over a few leaf pages of the lines table, in the middle: the quick open (schema,
    // pending lines through their index) does not read them, the full check does.
    let leaves: Vec<i64> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT pageno FROM dbstat WHERE name = 'lines' AND pagetype = 'leaf' ORDER BY pageno")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(leaves.len() > 20, "{} leaf pages", leaves.len());
    let mut bytes = std::fs::read(&db).unwrap();
    let mut x: u32 = 0x9e37_79b9;
    for &page in &leaves[leaves.len() / 2..leaves.len() / 2 + 5] {
        let at = (page as usize - 1) * 4096;
        for b in &mut bytes[at..at + 4096] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    std::fs::write(&db, &bytes).unwrap();

    let daemon = Headless::spawn(&home, &config, &[]);
    wait_until(
        secs(20),
        "`yaku status` to answer",
        || yaku_in(&home, &["status", "--config", c], &[]).code == Some(0),
        || daemon.stderr(),
    );
    let corrupt = || {
        std::fs::read_dir(home.path("data/yaku"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("yaku.db.corrupt-")
            })
            .count()
    };
    wait_until(
        secs(30),
        "the damaged store to be moved aside",
        || corrupt() == 1,
        || daemon.stderr(),
    );
    // Found by the check in the background, not at open.
    wait_until(
        secs(10),
        "the warning about the damaged store",
        || {
            bin::read_lossy(&home.path("state/yaku/logs/yaku.log"))
                .contains("the history store was damaged: moved aside, a fresh one was created")
        },
        || bin::read_lossy(&home.path("state/yaku/logs/yaku.log")),
    );
    let out = yaku_in(&home, &["history", "--json", "--config", c], &[]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(out.stdout.trim(), "", "the fresh store is empty");
    assert_eq!(corrupt(), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. The store file deleted under the daemon
// ---------------------------------------------------------------------------------------------

fn history_texts(env: &DesktopEnv) -> Vec<String> {
    let (st, out, err) = env.yaku_command(&["history", "--json"]);
    assert!(st.success(), "{out} {err}");
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_store_file_deleted_while_the_daemon_runs_is_recreated_and_the_next_line_is_in_the_history() {
    let env = DesktopEnv::start();
    let yaku = env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    wait_polling(&env);
    let db = env.dir.path().join("data/yaku/yaku.db");
    let first = "消される前の行です。";
    translates(&env, first);
    wait_until(
        secs(10),
        "the first line in the history",
        || history_texts(&env).iter().any(|t| t == first),
        || env.report(),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let second = "消されたあとの行です。";
    translates(&env, second);
    wait_until(
        secs(10),
        "the line after the deletion in the history",
        || db.exists() && history_texts(&env).iter().any(|t| t == second),
        || env.report(),
    );
    let warnings = yaku
        .log()
        .matches("the history store file was deleted or replaced")
        .count();
    assert_eq!(warnings, 1, "{}", yaku.log());
    let third = "三行目も残ります。";
    translates(&env, third);
    wait_until(
        secs(10),
        "the third line in the history",
        || history_texts(&env).iter().any(|t| t == third),
        || env.report(),
    );
    assert!(yaku.is_running());
}

// ---------------------------------------------------------------------------------------------
// 7. Exports are private
// ---------------------------------------------------------------------------------------------

#[test]
fn history_export_to_a_file_creates_it_0600_and_tightens_an_existing_one() {
    let home = bin::Home::new();
    let config = headless_config(&home, "");
    let c = config.to_str().unwrap();
    let fresh = home.path("export.csv");
    let out = yaku_in(
        &home,
        &[
            "history",
            "export",
            "--format",
            "csv",
            "--output",
            fresh.to_str().unwrap(),
            "--config",
            c,
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(mode(&fresh), 0o600);
    let loose = home.path("loose.json");
    std::fs::write(&loose, "old").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = yaku_in(
        &home,
        &[
            "history",
            "export",
            "--format",
            "jsonl",
            "--output",
            loose.to_str().unwrap(),
            "--config",
            c,
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(mode(&loose), 0o600);
}
