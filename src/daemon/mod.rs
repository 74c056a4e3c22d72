//! `yaku run`: the daemon's composition — single instance, log files, the clipboard thread,
//! the notifier worker, the pipeline, the control socket (a named pipe on Windows), reloads,
//! and shutdown on SIGINT/SIGTERM (Windows: Ctrl-C, Ctrl-Break, console close, sign-out,
//! shutdown) or `yaku stop`.

pub mod control;
pub mod lock;
pub mod logging;
mod reload;
#[cfg(windows)]
mod session;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::adapters::notify::DesktopNotifier;
use crate::adapters::window::SystemActiveWindow;
use crate::config::Config;
use crate::core::clock::{Clock, TokioClock};
use crate::core::daemon::{Daemon, DaemonCommand, notify_worker};
use crate::core::intake::{ClipEvent, WatchControl, watch};
use crate::sys::dirs::Dirs;
use crate::wire::{self, Parts};
use control::ReloadRequest;
use reload::reload;
#[cfg(unix)]
use reload::reload_on_sighup;

/// The signals the daemon acts on, registered before anything slow happens: from then on a
/// SIGHUP, SIGTERM or SIGINT is caught and queued (acted on once serving), never the default
/// action that would kill a daemon still opening its store.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    ctrl_c: Option<tokio::signal::windows::CtrlC>,
    #[cfg(windows)]
    ctrl_break: Option<tokio::signal::windows::CtrlBreak>,
    /// The console window is being closed: Windows ends the process once the handler
    /// returns, and tokio's handler waits, so the stop below runs to its end.
    #[cfg(windows)]
    ctrl_close: Option<tokio::signal::windows::CtrlClose>,
    #[cfg(windows)]
    ctrl_logoff: Option<tokio::signal::windows::CtrlLogoff>,
    #[cfg(windows)]
    ctrl_shutdown: Option<tokio::signal::windows::CtrlShutdown>,
    /// Sign-out or shutdown told to the hidden window, as a windowless yaku learns of it.
    #[cfg(windows)]
    session_end: Option<tokio::sync::mpsc::Receiver<()>>,
}

impl Signals {
    /// Must run inside the runtime (`Runtime::enter`).
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
                hangup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            Signals {
                ctrl_c: windows::ctrl_c().ok(),
                ctrl_break: windows::ctrl_break().ok(),
                ctrl_close: windows::ctrl_close().ok(),
                ctrl_logoff: windows::ctrl_logoff().ok(),
                ctrl_shutdown: windows::ctrl_shutdown().ok(),
                session_end: session::watch(),
            }
        }
        #[cfg(not(any(unix, windows)))]
        Signals {}
    }
}

/// Waits for `signal` if it could be registered, else never.
#[cfg(windows)]
async fn or_never<F: std::future::Future<Output = Option<()>>>(signal: Option<F>) -> Option<()> {
    match signal {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Resolves when SIGINT or SIGTERM arrives (Windows: a console control event or the end of
/// the session).
async fn shutdown_signal(signals: &mut Signals) {
    #[cfg(unix)]
    {
        match (signals.terminate.as_mut(), signals.interrupt.as_mut()) {
            (Some(term), Some(int)) => {
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
    #[cfg(windows)]
    {
        let s = signals;
        tokio::select! {
            Some(()) = or_never(s.ctrl_c.as_mut().map(|c| c.recv())) => tracing::info!("Ctrl-C: stopping"),
            Some(()) = or_never(s.ctrl_break.as_mut().map(|c| c.recv())) => tracing::info!("Ctrl-Break: stopping"),
            Some(()) = or_never(s.ctrl_close.as_mut().map(|c| c.recv())) => tracing::info!("console closed: stopping"),
            Some(()) = or_never(s.ctrl_logoff.as_mut().map(|c| c.recv())) => tracing::info!("signing out: stopping"),
            Some(()) = or_never(s.ctrl_shutdown.as_mut().map(|c| c.recv())) => tracing::info!("shutting down: stopping"),
            Some(()) = or_never(s.session_end.as_mut().map(|c| c.recv())) => tracing::info!("the Windows session is ending: stopping"),
            // No event can arrive: `yaku stop` still can.
            else => std::future::pending().await,
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = signals;
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: stopping");
    }
}

/// Runs the daemon until a signal. Returns after the logs are flushed.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("yaku-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    crate::sys::private::private_umask();
    let mut dirs = Dirs::resolve()?;
    let untrusted = dirs.runtime.clone();
    dirs.runtime = dirs.runtime_for_daemon()?;
    let _lock = match lock::acquire_lock(&dirs.runtime)? {
        Ok(lock) => lock,
        Err(pid) => {
            // Windows locks are mandatory: the lock file cannot be read while it is held, so
            // the running daemon is asked its pid.
            #[cfg(windows)]
            let pid = pid.or_else(|| running_pid(&dirs.runtime));
            match pid {
                Some(pid) => println!("yaku is already running (pid {pid})"),
                None => println!("yaku is already running"),
            }
            return Ok(());
        }
    };
    // Only the daemon that holds the lock: a second instance makes no window (Windows' session
    // watch) that would still be starting as it exits.
    let mut signals = {
        let _inside = runtime.enter();
        Signals::install()
    };
    let log_dir = config.log_dir(&dirs);
    let guard = logging::init(&config.log, &log_dir);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        config = %config.source.as_deref().map_or("(defaults)".into(), |p| p.display().to_string()),
        log_dir = %log_dir.display(),
        "yaku starting"
    );
    if dirs.runtime != untrusted {
        tracing::warn!(untrusted = %untrusted.display(), using = %dirs.runtime.display(), "the runtime dir is not private to this user (another user made it, or others may enter it); using another");
    }
    if let Some(guard) = &guard {
        runtime.spawn(logging::report_dropped(guard.dropped()));
    }
    let result = runtime.block_on(serve(config, &dirs, started, &mut signals));
    // In-flight HTTP requests were dropped with the pipeline; do not wait on anything else.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match &result {
        Ok(()) => tracing::info!("yaku stopped"),
        Err(e) => tracing::error!("yaku stopped: {e:#}"),
    }
    drop(guard);
    // A held WM_ENDSESSION may return now: everything is written.
    #[cfg(windows)]
    session::stopped();
    result
}

async fn serve(
    config: &Config,
    dirs: &Dirs,
    started: std::time::Instant,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let Parts {
        chain,
        gates,
        settings,
    } = wire::build_parts(config, clock.clone())?;
    let (store, store_notice, opened_store) = wire::open_daemon_store(config, clock.clone());

    let (notices_tx, notices_rx) = tokio::sync::watch::channel(None);
    let notifier = config.notify.enabled.then(|| {
        let notifier = Arc::new(DesktopNotifier::new(config.notify.timeout_ms));
        tokio::spawn(notify_worker(notifier, notices_rx, Duration::from_secs(5)))
    });
    let mut daemon = Daemon::new(
        chain,
        clock.clone(),
        gates,
        settings,
        notices_tx,
        Some(store.clone()),
    );
    // Asked only while the config has [[games]], so a reload that adds some takes effect.
    daemon.watch_window(Arc::new(SystemActiveWindow::new()));
    let commands = daemon.commands();
    if let Some(n) = store_notice {
        let _ = commands.send(DaemonCommand::Notify(n)).await;
    }

    let (control, events_rx) = watch_clipboard(config, &mut daemon)?;
    // Warm connections: started with the daemon, so the first line finds its connection open.
    let warm = config.connections.keep_warm.map(|cfg| {
        tokio::spawn(crate::core::warm::keep_warm(
            clock.clone(),
            cfg,
            daemon.chains(),
            daemon.counts(),
            daemon.pause_flag(),
        ))
    });
    let (reload_tx, reloader) = spawn_reloader(config, clock.clone(), &commands, &control);
    let socket = control::socket_path(&dirs.runtime);
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel(1);
    let control_task = tokio::spawn(serve_control(
        socket.clone(),
        control::Handles {
            commands: commands.clone(),
            reloads: reload_tx.clone(),
            stop: stop_tx,
            started,
        },
    ));
    let watcher = tokio::spawn(watch::watch_config(config.path.clone(), reload_tx.clone()));
    #[cfg(unix)]
    let hangup = tokio::spawn(reload_on_sighup(signals.hangup.take(), reload_tx));
    #[cfg(not(unix))]
    let hangup = tokio::spawn(async move { drop(reload_tx) });
    let retention = tokio::spawn(wire::maintain_store(
        store.clone(),
        opened_store,
        commands.clone(),
        config.store.history_max_rows,
        config.store.history_max_days,
    ));

    tracing::info!(
        watch = ?config.clipboard.watch,
        poll_ms = config.clipboard.poll_interval.as_millis() as u64,
        "watching the clipboard"
    );
    let shutdown = async {
        tokio::select! {
            () = shutdown_signal(signals) => {}
            // No sender left (no control socket) disables this branch; it never stops us.
            Some(()) = stop_rx.recv() => tracing::info!("yaku stop: stopping"),
        }
    };
    let counts = daemon.run(events_rx, shutdown).await;
    control.stop.store(true, Ordering::Relaxed);
    for task in [control_task, hangup, retention, reloader, watcher] {
        task.abort();
    }
    if let Some(task) = notifier {
        task.abort();
    }
    if let Some(task) = warm {
        task.abort();
    }
    #[cfg(unix)]
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

/// The clipboard poll loop on its own thread (a hung owner can block a read for seconds),
/// steered by the daemon's pause flag and marks; and the WebSocket's lines, when
/// `[intake] websocket` is set, into the same channel.
fn watch_clipboard(
    config: &Config,
    daemon: &mut Daemon,
) -> anyhow::Result<(WatchControl, tokio::sync::mpsc::Receiver<ClipEvent>)> {
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(16);
    let control = WatchControl {
        paused: daemon.pause_flag(),
        interval_ms: Arc::new(AtomicU64::new(
            config.clipboard.poll_interval.as_millis() as u64
        )),
        ..WatchControl::default()
    };
    daemon.follow_marks(&control);
    if let Some(url) = config.intake.websocket.clone() {
        // The same size limit as the clipboard's: a longer text is no game line.
        let max_bytes = config.clipboard.gates.max_chars.saturating_mul(4).max(64);
        tokio::spawn(crate::adapters::websocket::run(
            url,
            max_bytes,
            daemon.pause_flag(),
            events_tx.clone(),
        ));
    }
    let watch_control = control.clone();
    let clipboard = wire::clipboard(config);
    std::thread::Builder::new()
        .name("yaku-clipboard".into())
        .spawn(move || watch(clipboard, events_tx, watch_control))
        .context("cannot start the clipboard thread")?;
    Ok((control, events_rx))
}

/// Reloads, from the control socket or SIGHUP, are built by this task and handed to the
/// daemon; the poll interval a reload sets goes to the poll loop.
fn spawn_reloader(
    config: &Config,
    clock: Arc<dyn Clock>,
    commands: &tokio::sync::mpsc::Sender<DaemonCommand>,
    control: &WatchControl,
) -> (
    tokio::sync::mpsc::Sender<ReloadRequest>,
    tokio::task::JoinHandle<()>,
) {
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let (commands, interval) = (commands.clone(), control.interval_ms.clone());
    let path = config.path.clone();
    let task = tokio::spawn(async move {
        while let Some(reply) = reload_rx.recv().await {
            let result = reload(&path, clock.clone(), &commands, &interval).await;
            let _ = reply.send(result);
        }
    });
    (reload_tx, task)
}

/// The control socket (pipe); without it the daemon still translates, and says so once.
async fn serve_control(socket: std::path::PathBuf, handles: control::Handles) {
    #[cfg(any(unix, windows))]
    if let Err(e) = control::serve(socket.clone(), handles).await {
        tracing::warn!(path = %socket.display(), error = %e, "no control socket: `yaku status`, `pause` and `reload` will not reach this daemon");
    }
    #[cfg(not(any(unix, windows)))]
    drop((socket, handles));
}

/// The pid the running daemon gives in its status, if it answers.
#[cfg(windows)]
fn running_pid(runtime: &std::path::Path) -> Option<u32> {
    let status = control::request(
        &control::socket_path(runtime),
        &crate::protocol::Request::Status,
    )
    .ok()?;
    status["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}
