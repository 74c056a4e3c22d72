//! The control channel: a Unix domain socket (0600) in yaku's runtime dir, or on Windows a
//! named pipe only the current user can open (control/pipe.rs), that the daemon serves and
//! `yaku status`, `pause`, `resume`, `reload` and `stop` use (the protocol is in
//! `crate::protocol`). Whether yaku runs is judged by an answer on it, never by a PID file.
//!
//! The server bounds itself: at most [`MAX_CONNECTIONS`] at once (more are closed at once),
//! [`READ_TIMEOUT`] to send a request, and a pause after an accept error (a full descriptor
//! table) so that it can never spin; such errors are logged at most once a minute.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::core::daemon::{DaemonCommand, DaemonStatus};
use crate::protocol::{self, Request};
#[cfg(unix)]
use {std::sync::Arc, tokio::sync::Semaphore};

#[cfg(any(windows, test))]
mod pipe;
#[cfg(windows)]
pub use pipe::{request, serve};

/// Connections served at once; the CLI needs one.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits after a failed accept before the next one.
#[cfg(any(unix, windows))]
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// A failure to talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("yaku is not running")]
    NotRunning,
    #[error("yaku did not answer: {0}")]
    Broken(String),
    #[error("{0}")]
    Refused(String),
    /// The pipe's server is not the user's own process (Windows): nothing was sent to it.
    #[cfg(windows)]
    #[error("{0}")]
    NotYaku(String),
}

/// The socket's path in the runtime dir.
#[cfg(not(windows))]
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("yaku.sock")
}

/// The control pipe's name (`\\.\pipe\yaku-<user SID>`): one per user, whatever the
/// runtime dir.
#[cfg(windows)]
pub fn socket_path(_runtime_dir: &Path) -> PathBuf {
    PathBuf::from(pipe::pipe_name())
}

/// Asks a reload of the composition root; the reply says whether the new config was taken.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What a connection needs to answer, whatever transport carried the request.
#[derive(Clone)]
pub struct Handles {
    pub commands: mpsc::Sender<DaemonCommand>,
    pub reloads: mpsc::Sender<ReloadRequest>,
    /// Asks the daemon to stop as on SIGTERM (capacity 1: a second stop adds nothing).
    pub stop: mpsc::Sender<()>,
    pub started: Instant,
}

/// Serves the socket until the task is dropped.
#[cfg(unix)]
pub async fn serve(path: PathBuf, handles: Handles) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // We hold the instance lock, so a socket left here is from a yaku that died.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    // bind() never follows a symlink; chmod would, so check what is there first.
    {
        use std::os::unix::fs::FileTypeExt;
        if !std::fs::symlink_metadata(&path)?.file_type().is_socket() {
            return Err(std::io::Error::other("the socket path is not our socket"));
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut last_warning: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "control socket accept failed; retrying (logged once a minute)");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Beyond the cap a connection is dropped at once: its descriptor is freed now.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let handles = handles.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            if let Err(e) = handle(&mut stream, &handles).await {
                tracing::debug!(error = %e, "control connection ended badly");
            }
            drop(slot);
        });
    }
}

/// Reads one request line from a connection, whatever the transport, and writes the reply.
async fn handle<S>(stream: &mut S, handles: &Handles) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut line = Vec::new();
    let read = {
        // A request is a short line; a client sending more is cut off there.
        let mut reader = BufReader::new((&mut *stream).take(protocol::MAX_REQUEST_BYTES));
        tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await
    };
    let reply = match read {
        Err(_) => protocol::error_reply("no request within 5 s"),
        Ok(read) => {
            read?;
            match Request::parse(&line) {
                Ok(req) => answer(req, handles).await,
                Err(e) => protocol::error_reply(&e.to_string()),
            }
        }
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        stream.write_all(format!("{reply}\n").as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    Ok(())
}

/// Acts on one validated request and returns the reply: the same for every transport.
pub async fn answer(req: Request, h: &Handles) -> Value {
    let gone = || protocol::error_reply("the daemon is shutting down");
    let status = |st: DaemonStatus| {
        let mut v = protocol::status_json(&st, h.started.elapsed());
        v["ok"] = true.into();
        v
    };
    let (tx, rx) = oneshot::channel();
    let command = match req {
        Request::Status => DaemonCommand::Status(tx),
        Request::Pause { .. } => match req.pause_for() {
            Ok(duration) => DaemonCommand::Pause {
                duration,
                reply: tx,
            },
            Err(e) => return protocol::error_reply(&e.to_string()),
        },
        Request::Resume => DaemonCommand::Resume(tx),
        Request::Stop => {
            // Full means a stop is already asked for; closed means the daemon is stopping.
            let _ = h.stop.try_send(());
            return serde_json::json!({ "ok": true, "pid": std::process::id() });
        }
        Request::Reload => {
            let (tx, rx) = oneshot::channel();
            if h.reloads.send(tx).await.is_err() {
                return gone();
            }
            return match rx.await {
                Ok(Ok(())) => serde_json::json!({ "ok": true }),
                Ok(Err(e)) => protocol::error_reply(&e),
                Err(_) => gone(),
            };
        }
    };
    if h.commands.send(command).await.is_err() {
        return gone();
    }
    rx.await.map_or_else(|_| gone(), status)
}

/// Sends one request to the daemon and returns its reply.
#[cfg(unix)]
pub fn request(path: &Path, req: &Request) -> Result<Value, ControlError> {
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
    stream.write_all(req.to_line().as_bytes()).map_err(broken)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(broken)?;
    reply_of(&line)
}

/// The daemon's reply line: its JSON when it says `ok`, else why it refused.
#[cfg(any(unix, windows))]
fn reply_of(line: &str) -> Result<Value, ControlError> {
    let v: Value = serde_json::from_str(line).map_err(|e| ControlError::Broken(e.to_string()))?;
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

#[cfg(not(any(unix, windows)))]
pub fn request(_path: &Path, _req: &Request) -> Result<Value, ControlError> {
    Err(ControlError::Broken(
        "the control socket is not built for this platform yet".into(),
    ))
}
