//! The control socket: a Unix domain socket (0600) in yaku's runtime dir that the daemon
//! serves and `yaku status`, `pause`, `resume` and `reload` use. One JSON request line, one
//! JSON reply line. Whether yaku runs is judged by an answer on it, never by a PID file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::core::daemon::{DaemonCommand, DaemonStatus};

/// A failure to talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("yaku is not running")]
    NotRunning,
    #[error("yaku did not answer: {0}")]
    Broken(String),
    #[error("{0}")]
    Refused(String),
}

/// The socket's path in the runtime dir.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("yaku.sock")
}

/// Asks a reload of the composition root; the reply says whether the new config was taken.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Renders the daemon's status as the `yaku status --json` object.
pub fn status_json(st: &DaemonStatus, uptime: Duration) -> Value {
    let c = &st.counts;
    let served = c.cached + c.translated;
    json!({
        "running": true,
        "pid": std::process::id(),
        "uptime_secs": uptime.as_secs(),
        "paused": st.paused,
        "paused_for_secs": st.paused_for.map(|d| d.as_secs()),
        "queue": st.queue,
        "last_latency_ms": st.last_latency_ms,
        "cache_hit_rate": (served > 0).then(|| c.cached as f64 / served as f64),
        "lines": {
            "accepted": c.accepted,
            "translated": c.translated,
            "cached": c.cached,
            "failed": c.failed,
            "skipped": c.superseded,
            "rejected": c.rejected,
        },
        "providers": st.providers.iter().map(|p| json!({
            "name": p.name,
            "state": p.state,
            "open_for_secs": p.open_for.map(|d| d.as_secs()),
            "reason": p.reason,
            "daily_remaining": p.daily_remaining,
        })).collect::<Vec<_>>(),
    })
}

/// Serves the socket until the task is dropped.
#[cfg(unix)]
pub async fn serve(
    path: PathBuf,
    commands: mpsc::Sender<DaemonCommand>,
    reloads: mpsc::Sender<ReloadRequest>,
    started: Instant,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // We hold the instance lock, so a socket left here is from a yaku that died.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        let (commands, reloads) = (commands.clone(), reloads.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, commands, reloads, started).await {
                tracing::debug!(error = %e, "control connection ended badly");
            }
        });
    }
}

#[cfg(unix)]
async fn handle(
    stream: tokio::net::UnixStream,
    commands: mpsc::Sender<DaemonCommand>,
    reloads: mpsc::Sender<ReloadRequest>,
    started: Instant,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A request is a short line; a client sending more is cut off there.
    let mut reader = BufReader::new(read.take(64 * 1024));
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Value>(&line) {
        Ok(req) => answer(&req, &commands, &reloads, started).await,
        Err(e) => json!({ "ok": false, "error": format!("not a JSON request: {e}") }),
    };
    write.write_all(format!("{reply}\n").as_bytes()).await?;
    write.shutdown().await
}

async fn answer(
    req: &Value,
    commands: &mpsc::Sender<DaemonCommand>,
    reloads: &mpsc::Sender<ReloadRequest>,
    started: Instant,
) -> Value {
    let gone = || json!({ "ok": false, "error": "the daemon is shutting down" });
    let status = |st: DaemonStatus| {
        let mut v = status_json(&st, started.elapsed());
        v["ok"] = true.into();
        v
    };
    match req.get("cmd").and_then(Value::as_str) {
        Some("status") => {
            let (tx, rx) = oneshot::channel();
            if commands.send(DaemonCommand::Status(tx)).await.is_err() {
                return gone();
            }
            rx.await.map_or_else(|_| gone(), status)
        }
        Some("pause") => {
            let duration = req
                .get("for_secs")
                .and_then(Value::as_f64)
                .map(Duration::from_secs_f64);
            let (tx, rx) = oneshot::channel();
            if commands
                .send(DaemonCommand::Pause {
                    duration,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return gone();
            }
            rx.await.map_or_else(|_| gone(), status)
        }
        Some("resume") => {
            let (tx, rx) = oneshot::channel();
            if commands.send(DaemonCommand::Resume(tx)).await.is_err() {
                return gone();
            }
            rx.await.map_or_else(|_| gone(), status)
        }
        Some("reload") => {
            let (tx, rx) = oneshot::channel();
            if reloads.send(tx).await.is_err() {
                return gone();
            }
            match rx.await {
                Ok(Ok(())) => json!({ "ok": true }),
                Ok(Err(e)) => json!({ "ok": false, "error": e }),
                Err(_) => gone(),
            }
        }
        _ => json!({ "ok": false, "error": "unknown command (status, pause, resume, reload)" }),
    }
}

/// Sends one request to the daemon and returns its reply.
#[cfg(unix)]
pub fn request(path: &Path, req: &Value) -> Result<Value, ControlError> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning);
        }
        Err(e) => return Err(ControlError::Broken(e.to_string())),
    };
    let broken = |e: std::io::Error| ControlError::Broken(e.to_string());
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(broken)?;
    stream
        .write_all(format!("{req}\n").as_bytes())
        .map_err(broken)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(broken)?;
    let v: Value = serde_json::from_str(&line).map_err(|e| ControlError::Broken(e.to_string()))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(v)
    } else {
        Err(ControlError::Refused(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string(),
        ))
    }
}

#[cfg(not(unix))]
pub fn request(_path: &Path, _req: &Value) -> Result<Value, ControlError> {
    Err(ControlError::Broken(
        "the control socket is not built for this platform yet".into(),
    ))
}
