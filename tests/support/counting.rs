//! A loopback OpenAI-compatible provider that counts what warm connections are about: TCP
//! connections accepted, TLS handshakes completed, translation requests (`POST
//! /chat/completions`) and warming requests (`GET /models`). It speaks HTTP/1.1 with
//! keep-alive and closes a connection left idle for `idle`, as a real server's keep-alive
//! timeout does. Plain HTTP, or HTTPS with a certificate from a test CA made here ([`TestCa`]):
//! a client trusts it only through `SSL_CERT_FILE`, which the test sets for yaku alone.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// A CA made for one test, and a server certificate it signed for 127.0.0.1.
pub struct TestCa {
    /// The CA certificate (PEM), written to `pem_path`.
    pub pem_path: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Makes the CA and the server's certificate, and writes the CA's PEM into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "yaku test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let pem_path = dir.join("test-ca.pem");
        std::fs::write(&pem_path, ca_cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        TestCa {
            pem_path,
            server: Arc::new(server),
        }
    }
}

/// What the server saw.
#[derive(Default)]
pub struct Counts {
    pub connections: AtomicUsize,
    pub handshakes: AtomicUsize,
    pub posts: AtomicUsize,
    /// When each `GET /models` arrived.
    pub warms: Mutex<Vec<Instant>>,
}

/// The answer to a `POST /chat/completions` body: the reply's JSON text.
pub type Answer = Arc<dyn Fn(&str) -> String + Send + Sync>;

pub struct CountingProvider {
    addr: SocketAddr,
    tls: bool,
    pub counts: Arc<Counts>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CountingProvider {
    /// Serves on its own runtime (call it outside any other), over TLS when `ca` is given.
    pub fn start(ca: Option<&TestCa>, idle: Duration, answer: Answer) -> CountingProvider {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let acceptor = ca.map(|ca| tokio_rustls::TlsAcceptor::from(ca.server.clone()));
        let c = counts.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                // As real servers do: with Nagle on, a reply's last small write waits for the
                // client's delayed ACK (40 ms on Linux), a cost that is not yaku's.
                let _ = tcp.set_nodelay(true);
                let (c, answer, acceptor) = (c.clone(), answer.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(Ok(tls)) =
                                tokio::time::timeout(idle, acceptor.accept(tcp)).await
                            else {
                                return;
                            };
                            c.handshakes.fetch_add(1, Ordering::SeqCst);
                            serve(tls, &c, idle, &answer).await;
                        }
                        None => serve(tcp, &c, idle, &answer).await,
                    }
                });
            }
        });
        CountingProvider {
            addr,
            tls: ca.is_some(),
            counts,
            runtime: Some(runtime),
        }
    }

    /// The `base_url` for the config.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    pub fn handshakes(&self) -> usize {
        self.counts.handshakes.load(Ordering::SeqCst)
    }

    pub fn posts(&self) -> usize {
        self.counts.posts.load(Ordering::SeqCst)
    }

    pub fn warms(&self) -> Vec<Instant> {
        self.counts.warms.lock().unwrap().clone()
    }
}

impl Drop for CountingProvider {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// One connection: requests one after another until the client closes it or leaves it idle
/// for `idle`.
async fn serve(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    counts: &Counts,
    idle: Duration,
    answer: &Answer,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut s, &mut buf, idle).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            if !read_more(&mut s, &mut buf, idle).await {
                return;
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        buf.drain(..head_end + length);
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let (status, reply) = if head.starts_with("GET ") && target.ends_with("/models") {
            counts.warms.lock().unwrap().push(Instant::now());
            (200, MODELS.to_string())
        } else if head.starts_with("POST ") && target.ends_with("/chat/completions") {
            counts.posts.fetch_add(1, Ordering::SeqCst);
            (200, answer(&body))
        } else {
            (404, r#"{"error":{"message":"unknown path"}}"#.to_string())
        };
        let out = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            if status == 200 { "OK" } else { "Not Found" },
            reply.len()
        );
        if s.write_all(out.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

async fn read_more(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>, idle: Duration) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(idle, s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// An OpenAI-style model list, as `GET /models` answers.
const MODELS: &str = r#"{"object":"list","data":[{"id":"test-model","object":"model","created":1795767544,"owned_by":"yaku-tests"}]}"#;
