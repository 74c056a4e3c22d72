//! `yaku run`: the daemon's composition — single instance, log files, the clipboard thread,
//! the notifier worker, the pipeline, and shutdown on SIGINT/SIGTERM.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::adapters::clipboard::SystemClipboard;
use crate::adapters::notify::DesktopNotifier;
use crate::adapters::store::SqliteStore;
use crate::app::{build_chain, create_private_dir, request_for};
use crate::config::{Config, LogConfig, Rotation};
use crate::control::{self, ReloadRequest};
use crate::core::clock::{Clock, TokioClock};
use crate::core::daemon::{Daemon, DaemonCommand, DaemonSettings, Reconfig, notify_worker};
use crate::core::gates::Gates;
use crate::core::intake::{WatchControl, watch};
use crate::core::notice::Notice;
use crate::core::store::{Opener, STORE_RETRY, Store, StoreHandle};
use crate::credentials::Credentials;

/// yaku's directories: where the lock and the logs go.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `$XDG_RUNTIME_DIR/yaku`, else the state (or data) dir.
    pub runtime: PathBuf,
    /// `$XDG_STATE_HOME/yaku` on Linux, else the local data dir.
    pub state: PathBuf,
}

impl Dirs {
    pub fn resolve() -> anyhow::Result<Dirs> {
        let project = directories::ProjectDirs::from("", "", "yaku")
            .context("no home directory found: set $HOME")?;
        let state = project
            .state_dir()
            .unwrap_or_else(|| project.data_local_dir())
            .to_path_buf();
        let runtime = project
            .runtime_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| state.clone());
        Ok(Dirs { runtime, state })
    }

    /// Where the log files go under `config`.
    pub fn log_dir(&self, config: &LogConfig) -> PathBuf {
        config
            .dir
            .clone()
            .unwrap_or_else(|| self.state.join("logs"))
    }
}

/// The single-instance lock, held for the life of the process.
pub struct InstanceLock {
    _file: File,
}

/// Takes the lock in `dir`, or says which pid holds it.
pub fn acquire_lock(dir: &Path) -> anyhow::Result<Result<InstanceLock, Option<u32>>> {
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("yaku.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            Ok(Ok(InstanceLock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Ok(Err(pid.trim().parse().ok()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Log files (and stderr when it is a terminal). The guard flushes the file writer on drop.
fn init_logging(
    config: &LogConfig,
    dir: &Path,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("YAKU_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level))
    };
    let stderr_layer = std::io::stderr().is_terminal().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter())
    });
    let file = match open_log(config, dir) {
        Ok(appender) => Some(appender),
        Err(e) => {
            // Translating matters more than logging: go on, and say so where a person sees it.
            eprintln!(
                "yaku: cannot write logs in {}: {e:#}; logging to stderr only",
                dir.display()
            );
            None
        }
    };
    let (file_layer, guard) = match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let fallback = (file_layer.is_none() && stderr_layer.is_none()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .with(fallback)
        .try_init();
    guard
}

fn open_log(
    config: &LogConfig,
    dir: &Path,
) -> anyhow::Result<tracing_appender::rolling::RollingFileAppender> {
    create_private_dir(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let rotation = match config.rotation {
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
    };
    let mut builder = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix("yaku")
        .filename_suffix("log")
        .max_log_files(config.keep_files);
    // With no rotation the file itself is yaku.log; a symlink of that name would clash.
    if config.rotation != Rotation::Never {
        builder = builder.latest_symlink("yaku.log");
    }
    Ok(builder.build(dir)?)
}

/// Files yaku creates (logs, lock) are for the user alone.
fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: stopping");
    }
}

/// Runs the daemon until a signal. Returns after the logs are flushed.
pub fn run(config: &Config) -> anyhow::Result<()> {
    private_umask();
    let dirs = Dirs::resolve()?;
    let _lock = match acquire_lock(&dirs.runtime)? {
        Ok(lock) => lock,
        Err(pid) => {
            match pid {
                Some(pid) => println!("yaku is already running (pid {pid})"),
                None => println!("yaku is already running"),
            }
            return Ok(());
        }
    };
    let log_dir = dirs.log_dir(&config.log);
    let guard = init_logging(&config.log, &log_dir);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        config = %config.source.as_deref().map_or("(defaults)".into(), |p| p.display().to_string()),
        log_dir = %log_dir.display(),
        "yaku starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("yaku-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let result = runtime.block_on(serve(config, &dirs, started));
    // In-flight HTTP requests were dropped with the pipeline; do not wait on anything else.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match &result {
        Ok(()) => tracing::info!("yaku stopped"),
        Err(e) => tracing::error!("yaku stopped: {e:#}"),
    }
    drop(guard);
    result
}

/// The parts a config determines, built before anything changes so a broken config never
/// replaces a working one.
struct Parts {
    chain: Arc<crate::core::chain::Chain>,
    gates: Gates,
    settings: DaemonSettings,
}

fn build_parts(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Parts> {
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let chain = Arc::new(build_chain(config, &credentials, clock)?);
    for entry in chain.entries() {
        match &entry.unusable {
            Some(s) => {
                tracing::warn!(provider = %entry.name, "provider skipped: {} — {}", s.summary(), s.advice)
            }
            None => tracing::info!(provider = %entry.name, "provider ready"),
        }
    }
    let gates = Gates::new(config.clipboard.gates.clone())
        .context("the privacy gates could not be set up")?;
    let settings = DaemonSettings {
        collapse_repeats: config.clipboard.collapse_repeats,
        show_original: config.notify.show_original,
        include_text: config.log.include_text,
        request: request_for(config, ""),
        context_lines: config.memory.context_lines,
        context_reset: config.memory.context_reset,
        glossary: config.memory.glossary.clone(),
        cache_enabled: config.memory.cache_enabled,
    };
    Ok(Parts {
        chain,
        gates,
        settings,
    })
}

/// The history store's file: `[store] path`, else the platform data dir.
pub fn store_path(config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(p) = &config.memory.store_path {
        return Ok(p.clone());
    }
    let project = directories::ProjectDirs::from("", "", "yaku")
        .context("no home directory found: set $HOME")?;
    Ok(project.data_dir().join("yaku.db"))
}

/// The daemon's store calls run on its pipeline task: a file locked by someone else (an
/// open `sqlite3` session) may hold a line up for at most a second, then the store is left
/// alone for ten minutes.
fn daemon_store_options() -> crate::adapters::store::Options {
    crate::adapters::store::Options {
        busy_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

/// Opens the store for the daemon. A store that cannot be opened is retried later; a file
/// that was not a database is moved aside, and the returned notice says so once.
fn open_store(config: &Config, clock: Arc<dyn Clock>) -> (Arc<StoreHandle>, Option<Notice>) {
    let path = match store_path(config) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("no history store: {e:#}");
            PathBuf::from("yaku.db")
        }
    };
    let (max_rows, max_days) = (
        config.memory.history_max_rows,
        config.memory.history_max_days,
    );
    let reopen_path = path.clone();
    let opener: Opener = Box::new(move || {
        let (store, _) = SqliteStore::open_with(&reopen_path, &daemon_store_options())?;
        Ok(Arc::new(store) as Arc<dyn Store>)
    });
    let mut notice = None;
    let store: Option<Arc<dyn Store>> = match SqliteStore::open_with(&path, &daemon_store_options())
    {
        Ok((store, report)) => {
            if let Some(moved) = &report.moved_aside {
                tracing::warn!(moved_to = %moved.to.display(), reason = %moved.reason, "the history store was unreadable: moved aside, a fresh one was created");
                notice = Some(Notice {
                    summary: "yaku: history store replaced".into(),
                    body: crate::core::notice::escape(&format!(
                        "{} could not be read and was moved to {}; a new one was created.",
                        path.display(),
                        moved.to.display()
                    )),
                });
            }
            if report.interrupted > 0 {
                tracing::info!(
                    rows = report.interrupted,
                    "lines left pending by the last run are now interrupted"
                );
            }
            if let Err(e) = store.prune(max_rows, max_days, std::time::SystemTime::now()) {
                tracing::warn!(error = %e, "history retention failed");
            }
            tracing::info!(path = %path.display(), "history store open");
            Some(Arc::new(store))
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "history store unavailable; translating without history and cache, retrying every 10 minutes");
            None
        }
    };
    (
        Arc::new(StoreHandle::new(store, opener, clock, STORE_RETRY)),
        notice,
    )
}

async fn serve(config: &Config, dirs: &Dirs, started: std::time::Instant) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let Parts {
        chain,
        gates,
        settings,
    } = build_parts(config, clock.clone())?;
    let (store, store_notice) = open_store(config, clock.clone());

    let (notices_tx, notices_rx) = tokio::sync::watch::channel(None);
    let notifier = config.notify.enabled.then(|| {
        let notifier = Arc::new(DesktopNotifier::new(config.notify.timeout_ms));
        tokio::spawn(notify_worker(notifier, notices_rx, Duration::from_secs(5)))
    });
    let daemon = Daemon::new(
        chain,
        clock.clone(),
        gates,
        settings,
        notices_tx,
        Some(store.clone()),
    );
    let commands = daemon.commands();
    if let Some(n) = store_notice {
        let _ = commands.send(DaemonCommand::Notify(n)).await;
    }

    let (events_tx, events_rx) = tokio::sync::mpsc::channel(16);
    let control = WatchControl {
        paused: daemon.pause_flag(),
        interval_ms: Arc::new(AtomicU64::new(
            config.clipboard.poll_interval.as_millis() as u64
        )),
        ..WatchControl::default()
    };
    let watch_control = control.clone();
    let max_chars = config.clipboard.gates.max_chars;
    std::thread::Builder::new()
        .name("yaku-clipboard".into())
        .spawn(move || watch(SystemClipboard::new(max_chars), events_tx, watch_control))
        .context("cannot start the clipboard thread")?;

    // Reloads, from the control socket or SIGHUP, are built here and handed to the daemon.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let reloader = {
        let (commands, clock, interval) =
            (commands.clone(), clock.clone(), control.interval_ms.clone());
        let path = config.path.clone();
        tokio::spawn(async move {
            while let Some(reply) = reload_rx.recv().await {
                let result = reload(&path, clock.clone(), &commands, &interval).await;
                let _ = reply.send(result);
            }
        })
    };
    let socket = control::socket_path(&dirs.runtime);
    let control_task = tokio::spawn({
        let (commands, reload_tx) = (commands.clone(), reload_tx.clone());
        let socket = socket.clone();
        async move {
            #[cfg(unix)]
            if let Err(e) = control::serve(socket.clone(), commands, reload_tx, started).await {
                tracing::warn!(path = %socket.display(), error = %e, "no control socket: `yaku status`, `pause` and `reload` will not reach this daemon");
            }
        }
    });
    let hangup = tokio::spawn(reload_on_sighup(reload_tx));
    let retention = tokio::spawn({
        let (store, rows, days) = (
            store.clone(),
            config.memory.history_max_rows,
            config.memory.history_max_days,
        );
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                store.with("applied the retention", |s| {
                    s.prune(rows, days, std::time::SystemTime::now())
                });
            }
        }
    });

    tracing::info!(
        poll_ms = config.clipboard.poll_interval.as_millis() as u64,
        "watching the clipboard"
    );
    let counts = daemon.run(events_rx, shutdown_signal()).await;
    control.stop.store(true, Ordering::Relaxed);
    for task in [control_task, hangup, retention, reloader] {
        task.abort();
    }
    if let Some(task) = notifier {
        task.abort();
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!(
        accepted = counts.accepted,
        translated = counts.translated,
        cached = counts.cached,
        failed = counts.failed,
        superseded = counts.superseded,
        rejected = counts.rejected,
        "session summary"
    );
    Ok(())
}

/// Reads the config again and hands the daemon its new parts. A broken config is refused
/// (logged and shown) and the running one stays in force.
async fn reload(
    path: &Path,
    clock: Arc<dyn Clock>,
    commands: &tokio::sync::mpsc::Sender<DaemonCommand>,
    interval_ms: &AtomicU64,
) -> Result<(), String> {
    let built = Config::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|c| Ok((build_parts(&c, clock)?, c)));
    match built {
        Ok((
            Parts {
                chain,
                gates,
                settings,
            },
            config,
        )) => {
            interval_ms.store(
                config.clipboard.poll_interval.as_millis() as u64,
                Ordering::Relaxed,
            );
            let _ = commands
                .send(DaemonCommand::Reconfigure(Box::new(Reconfig {
                    chain,
                    gates,
                    settings,
                })))
                .await;
            tracing::info!(config = %path.display(), "reloaded the config");
            Ok(())
        }
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(
                "the new config was rejected; the running one stays in force: {message}"
            );
            let notice = Notice {
                summary: "yaku: config not reloaded".into(),
                body: crate::core::notice::escape(&format!(
                    "{message} — the running config stays in force."
                )),
            };
            let _ = commands.send(DaemonCommand::Notify(notice)).await;
            Err(message)
        }
    }
}

async fn reload_on_sighup(reloads: tokio::sync::mpsc::Sender<ReloadRequest>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let (tx, _rx) = tokio::sync::oneshot::channel();
            if reloads.send(tx).await.is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    drop(reloads);
}

/// The file `tail -F` should follow: the `yaku.log` symlink (the file itself when logs do not
/// rotate).
pub fn current_log(config: &Config) -> anyhow::Result<PathBuf> {
    Ok(Dirs::resolve()?.log_dir(&config.log).join("yaku.log"))
}

/// `yaku logs [--follow]`.
pub fn logs(config: &Config, follow: bool) -> anyhow::Result<()> {
    let path = current_log(config)?;
    if !follow {
        println!("{}", path.display());
        return Ok(());
    }
    follow_file(&path, &mut std::io::stdout().lock(), || false)
}

/// Writes the last `n` lines of `f` (from its last 16 KiB) and leaves it at its end.
fn write_last_lines(f: &mut File, out: &mut impl Write, n: usize) -> anyhow::Result<()> {
    let len = f.metadata()?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            tail.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < tail.len())
        .collect();
    let from = starts.len().saturating_sub(n);
    if let Some(&start) = starts.get(from) {
        out.write_all(&tail[start..])?;
    }
    Ok(())
}

/// Copies `path` to `out` as it grows, reopening it when the symlink moves to a new file or
/// the file is truncated, until `stop` says so (never, from the command line).
pub fn follow_file(
    path: &Path,
    out: &mut impl Write,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let mut current: Option<(File, PathBuf)> = None;
    let mut waited_notice = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let target = std::fs::canonicalize(path).ok();
        let moved = match (&current, &target) {
            (Some((_, open)), Some(t)) => open != t,
            (None, Some(_)) => true,
            _ => false,
        };
        if moved {
            if let Some(t) = target {
                match File::open(&t) {
                    Ok(f) => {
                        let first = current.is_none() && !waited_notice;
                        current = Some((f, t));
                        if first && let Some((f, _)) = current.as_mut() {
                            write_last_lines(f, out, 10)?;
                        }
                    }
                    Err(_) => current = None,
                }
            }
        } else if target.is_none() && current.is_none() && !waited_notice {
            eprintln!(
                "yaku: waiting for {} to appear (is `yaku run` running?)",
                path.display()
            );
            waited_notice = true;
        }
        if let Some((f, _)) = current.as_mut() {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if f.stream_position()? > len {
                f.rewind()?; // truncated
            }
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
            out.flush()?;
        }
        if stop() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_shows_the_last_lines_then_follows_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("yaku.2026-11-27.log");
        let second = dir.path().join("yaku.2026-11-28.log");
        let link = dir.path().join("yaku.log");
        let old: String = (1..=15).map(|i| format!("old {i}\n")).collect();
        std::fs::write(&first, old).unwrap();
        std::os::unix::fs::symlink(&first, &link).unwrap();
        let mut out = Vec::new();
        let mut step = 0;
        follow_file(&link, &mut out, || {
            step += 1;
            match step {
                1 => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&first)
                        .unwrap();
                    writeln!(f, "appended").unwrap();
                }
                2 => {
                    std::fs::write(&second, "new day\n").unwrap();
                    std::fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(&second, &link).unwrap();
                }
                _ => {}
            }
            step > 3
        })
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected: String =
            (6..=15).map(|i| format!("old {i}\n")).collect::<String>() + "appended\nnew day\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_second_lock_reports_the_pid_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire_lock(dir.path()).unwrap();
        assert!(first.is_ok());
        assert_eq!(
            acquire_lock(dir.path()).unwrap().err(),
            Some(Some(std::process::id()))
        );
        drop(first);
        assert!(acquire_lock(dir.path()).unwrap().is_ok());
    }
}
