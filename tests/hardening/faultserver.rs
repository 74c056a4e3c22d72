//! A fault-injecting HTTP/1.1 server on 127.0.0.1 for what status codes cannot express:
//! headers that never come, a body that trickles, a body cut short, a connection reset in the
//! middle of the body, a 10 MB body, a chunked body that never ends, an HTTP/1.0
//! close-delimited body. A script decides, per request, which fault to serve; the server
//! records what it did with each request (when it arrived, how many body bytes it managed to
//! write, and whether it finished or the client went away first).
//!
//! One request per connection (`Connection: close`), so a request's end is its connection's.
//! Every loop is bounded in bytes and time, and everything stops when the server is dropped.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

/// No connection is held longer than this, whatever the fault.
const MAX_HOLD: Duration = Duration::from_secs(90);
/// No fault writes more than this many bytes.
const MAX_BYTES: usize = 64 << 20;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    pub method: String,
    /// The request target, with its query string.
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub arrived: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The model asked for: in the path for Gemini (`/models/M:generateContent`), in the body
    /// for OpenAI-compatible APIs.
    pub fn model(&self) -> Option<String> {
        if let Some(rest) = self.target.split("/models/").nth(1) {
            return rest.split(':').next().map(str::to_string);
        }
        self.json()?.get("model")?.as_str().map(str::to_string)
    }

    /// The copied line, parsed back out of the prompt of either wire format.
    pub fn line(&self) -> Option<String> {
        line_of_body(&self.body)
    }
}

/// The user message of a request body of either wire format.
pub fn user_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    if let Some(text) = body.pointer("/contents/0/parts/0/text") {
        return text.as_str().map(str::to_string);
    }
    let messages = body.get("messages")?.as_array()?;
    messages
        .iter()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?
        .get("content")?
        .as_str()
        .map(str::to_string)
}

/// The copied line in a request body of either wire format: the user message is
/// `...:\n{"line": "<text>", ...}`.
pub fn line_of_body(body: &[u8]) -> Option<String> {
    let user = user_message(body)?;
    let (_, object) = user.split_once('\n')?;
    let object: Value = serde_json::from_str(object.trim()).ok()?;
    object.get("line")?.as_str().map(str::to_string)
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// A whole reply after `delay`.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    },
    /// Reads the request and never sends a byte (until the client leaves).
    NoHeaders,
    /// Headers at once (`Content-Length` of the whole body), then one body byte per `every`.
    Trickle { body: Vec<u8>, every: Duration },
    /// Announces `body`, sends its first `sent` bytes, then closes the connection (FIN).
    CutShort { body: Vec<u8>, sent: usize },
    /// Announces `body`, sends its first `sent` bytes, then resets the connection (RST: SO_LINGER 0).
    ResetMidBody { body: Vec<u8>, sent: usize },
    /// A 200 announcing `bytes` of body and writing them as fast as the client takes them.
    Huge { bytes: usize },
    /// A chunked 200 whose chunks never end: one 1 KiB chunk every `every` (`None`: as fast
    /// as the client takes them).
    ChunkedEndless { every: Option<Duration> },
    /// An HTTP/1.0 200 whose body ends when the connection closes; `cut`: only that many bytes.
    Http10 { body: Vec<u8>, cut: Option<usize> },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Reply { .. } => "reply",
            Fault::NoHeaders => "no_headers",
            Fault::Trickle { .. } => "trickle",
            Fault::CutShort { .. } => "cut_short",
            Fault::ResetMidBody { .. } => "reset_mid_body",
            Fault::Huge { .. } => "huge",
            Fault::ChunkedEndless { .. } => "chunked_endless",
            Fault::Http10 { .. } => "http10",
        }
    }

    pub fn reply(status: u16, body: &Value) -> Fault {
        Fault::Reply {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec(body).unwrap(),
            delay: Duration::ZERO,
        }
    }

    pub fn reply_with(status: u16, headers: &[(&str, &str)], body: &Value) -> Fault {
        Fault::Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: serde_json::to_vec(body).unwrap(),
            delay: Duration::ZERO,
        }
    }
}

/// How a request ended, from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The whole reply was written.
    Completed,
    /// The client closed or reset the connection before the reply was complete.
    ClientGone,
    /// The server cut the reply on purpose (CutShort, ResetMidBody, a cut HTTP/1.0 body).
    Cut,
    /// Held for `MAX_HOLD` or stopped with the server.
    Abandoned,
}

/// What the server did with one request.
#[derive(Debug, Clone)]
pub struct Served {
    pub id: u64,
    pub target: String,
    pub model: Option<String>,
    pub line: Option<String>,
    pub fault: &'static str,
    /// The reply's status (0 when no status line was sent).
    pub status: u16,
    pub arrived: Instant,
    pub ended: Option<Instant>,
    pub end: Option<End>,
    /// Taken just before the reply's last write (or the cut): a client cannot have seen the
    /// whole reply (or its cut) before this instant.
    pub final_write: Option<Instant>,
    /// Body bytes written to the socket (accepted by the kernel) before the end.
    pub body_written: usize,
}

type Script = dyn Fn(&Request) -> Fault + Send + Sync;
type OnEnd = dyn Fn(&Served) + Send + Sync;

struct State {
    next_id: u64,
    /// Requests that have arrived and not ended yet.
    live: HashMap<u64, Served>,
    /// Every request that ended, unless the server is lean.
    served: Vec<Served>,
    requests: Vec<Request>,
    /// Requests that arrived, in all.
    count: usize,
    /// Whether requests and their records are kept; a lean server keeps only what is live
    /// and hands each ended record to `on_end`.
    keep: bool,
}

/// The server; stops (and drops every connection it holds) when dropped.
pub struct FaultServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Serves every request with `fault`.
    pub async fn always(fault: Fault) -> FaultServer {
        FaultServer::start(move |_| fault.clone()).await
    }

    /// Serves each request with what `script` returns for it.
    pub async fn start(script: impl Fn(&Request) -> Fault + Send + Sync + 'static) -> FaultServer {
        Self::start_with(script, None).await
    }

    /// [`start`](Self::start) keeping nothing once a request has ended: its record (with no
    /// target and no line) goes to `on_end`. For long runs whose memory is measured.
    pub async fn start_lean(
        script: impl Fn(&Request) -> Fault + Send + Sync + 'static,
        on_end: impl Fn(&Served) + Send + Sync + 'static,
    ) -> FaultServer {
        Self::start_with(script, Some(Arc::new(on_end))).await
    }

    async fn start_with(
        script: impl Fn(&Request) -> Fault + Send + Sync + 'static,
        on_end: Option<Arc<OnEnd>>,
    ) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            next_id: 0,
            live: HashMap::new(),
            served: Vec::new(),
            requests: Vec::new(),
            count: 0,
            keep: on_end.is_none(),
        }));
        let (stop, stop_rx) = watch::channel(false);
        let script: Arc<Script> = Arc::new(script);
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let _ = socket.set_nodelay(true);
                    let (state, script, stop_rx) = (state.clone(), script.clone(), stop_rx.clone());
                    let on_end = on_end.clone();
                    tokio::spawn(async move {
                        serve(socket, state, script, on_end, stop_rx).await;
                    });
                }
            })
        };
        FaultServer {
            addr,
            state,
            stop,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The records of the requests that ended, then of those still live (not for a lean
    /// server, which keeps only the live ones).
    pub fn served(&self) -> Vec<Served> {
        let st = self.lock();
        let mut all = st.served.clone();
        let mut live: Vec<Served> = st.live.values().cloned().collect();
        live.sort_by_key(|s| s.id);
        all.extend(live);
        all
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Requests that arrived, in all.
    pub fn count(&self) -> usize {
        self.lock().count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
    }
}

/// A `http://127.0.0.1:PORT` where nothing listens (connections are refused).
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn serve(
    socket: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    script: Arc<Script>,
    on_end: Option<Arc<OnEnd>>,
    stop: watch::Receiver<bool>,
) {
    let fd = socket.as_raw_fd();
    let (mut rd, mut wr) = socket.into_split();
    let Some(mut request) = read_request(&mut rd).await else {
        return;
    };
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.next_id += 1;
        request.id = st.next_id;
        st.count += 1;
        if st.keep {
            st.requests.push(request.clone());
        }
        request.id
    };
    let id = fault;
    let fault = script(&request);
    let status = match &fault {
        Fault::Reply { status, .. } => *status,
        Fault::NoHeaders => 0,
        _ => 200,
    };
    {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let keep = st.keep;
        st.live.insert(
            id,
            Served {
                id,
                target: if keep {
                    request.target.clone()
                } else {
                    String::new()
                },
                model: request.model(),
                line: if keep { request.line() } else { None },
                fault: fault.name(),
                status,
                arrived: request.arrived,
                ended: None,
                end: None,
                final_write: None,
                body_written: 0,
            },
        );
    }
    let mut written = 0usize;
    let mut final_write = None;
    let end = tokio::select! {
        end = perform(&fault, &mut rd, &mut wr, fd, &mut written, &mut final_write) => end,
        () = stopped(stop) => End::Abandoned,
        () = tokio::time::sleep(MAX_HOLD) => End::Abandoned,
    };
    let record = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = st.live.remove(&id);
        if let Some(s) = record.as_mut() {
            s.ended = Some(Instant::now());
            s.end = Some(end);
            s.final_write = final_write;
            s.body_written = written;
            if st.keep {
                st.served.push(s.clone());
            }
        }
        record
    };
    if let (Some(on_end), Some(record)) = (on_end, record) {
        on_end(&record);
    }
    if end == End::Cut {
        if matches!(fault, Fault::ResetMidBody { .. }) {
            // No FIN first (dropping a write half shuts it down): close with linger 0 = RST.
            wr.forget();
            drop(rd);
        }
        return;
    }
    let _ = wr.shutdown().await;
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves when the client closes or resets its side (reads and drops anything it sends).
async fn client_gone(rd: &mut OwnedReadHalf) {
    let mut buf = [0u8; 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn head(status: u16, length: Option<usize>, extra: &[(String, String)]) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nConnection: close\r\n",
        reason(status)
    );
    if let Some(n) = length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Sets SO_LINGER {on, 0}: closing the socket then sends RST instead of FIN.
fn linger_zero(fd: i32) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket fd we own, with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

/// A small send buffer, so the count of bytes written tracks what the client read.
fn small_send_buffer(fd: i32) {
    let size: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt on a socket fd we own, with an int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const size).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8], written: &mut usize) -> bool {
    match wr.write_all(bytes).await {
        Ok(()) => {
            *written += bytes.len();
            true
        }
        Err(_) => false,
    }
}

async fn perform(
    fault: &Fault,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    fd: i32,
    written: &mut usize,
    final_write: &mut Option<Instant>,
) -> End {
    let mut head_bytes = 0usize;
    match fault {
        Fault::Reply {
            status,
            headers,
            body,
            delay,
        } => {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(*delay) => {}
                    () = client_gone(rd) => return End::ClientGone,
                }
            }
            *final_write = Some(Instant::now());
            if !write(
                wr,
                &head(*status, Some(body.len()), headers),
                &mut head_bytes,
            )
            .await
                || !write(wr, body, written).await
            {
                return End::ClientGone;
            }
            End::Completed
        }
        Fault::NoHeaders => {
            client_gone(rd).await;
            End::ClientGone
        }
        Fault::Trickle { body, every } => {
            if !write(wr, &head(200, Some(body.len()), &[]), &mut head_bytes).await {
                return End::ClientGone;
            }
            for b in body {
                tokio::select! {
                    () = tokio::time::sleep(*every) => {}
                    () = client_gone(rd) => return End::ClientGone,
                }
                *final_write = Some(Instant::now());
                if !write(wr, &[*b], written).await {
                    return End::ClientGone;
                }
            }
            End::Completed
        }
        Fault::CutShort { body, sent } | Fault::ResetMidBody { body, sent } => {
            let ok = write(wr, &head(200, Some(body.len()), &[]), &mut head_bytes).await
                && write(wr, &body[..(*sent).min(body.len())], written).await;
            let _ = wr.flush().await;
            if !ok {
                return End::ClientGone;
            }
            *final_write = Some(Instant::now());
            if matches!(fault, Fault::ResetMidBody { .. }) {
                // The caller closes the socket without a FIN: with linger 0 that is a reset.
                linger_zero(fd);
            } else {
                let _ = wr.shutdown().await;
            }
            End::Cut
        }
        Fault::Huge { bytes } => {
            small_send_buffer(fd);
            if !write(wr, &head(200, Some(*bytes), &[]), &mut head_bytes).await {
                return End::ClientGone;
            }
            let chunk = vec![b' '; 64 * 1024];
            let total = (*bytes).min(MAX_BYTES);
            while *written < total {
                let n = chunk.len().min(total - *written);
                *final_write = Some(Instant::now());
                if !write(wr, &chunk[..n], written).await {
                    return End::ClientGone;
                }
            }
            End::Completed
        }
        Fault::ChunkedEndless { every } => {
            let extra = [("Transfer-Encoding".to_string(), "chunked".to_string())];
            if !write(wr, &head(200, None, &extra), &mut head_bytes).await {
                return End::ClientGone;
            }
            let mut chunk = b"400\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b' ', 1024));
            chunk.extend_from_slice(b"\r\n");
            while *written < MAX_BYTES {
                if let Some(every) = every {
                    tokio::select! {
                        () = tokio::time::sleep(*every) => {}
                        () = client_gone(rd) => return End::ClientGone,
                    }
                }
                *final_write = Some(Instant::now());
                if !write(wr, &chunk, written).await {
                    return End::ClientGone;
                }
            }
            End::Abandoned
        }
        Fault::Http10 { body, cut } => {
            let h = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n";
            let part = &body[..cut.unwrap_or(body.len()).min(body.len())];
            *final_write = Some(Instant::now());
            if !write(wr, h, &mut head_bytes).await || !write(wr, part, written).await {
                return End::ClientGone;
            }
            let _ = wr.shutdown().await;
            if cut.is_some() {
                End::Cut
            } else {
                End::Completed
            }
        }
    }
}

/// Reads one request: the head, then `Content-Length` bytes of body. None if the client left.
async fn read_request(rd: &mut OwnedReadHalf) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Request {
        id: 0,
        method,
        target,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
        arrived: Instant::now(),
    })
}
