//! `[intake] websocket`: `yaku run` takes lines from a text hooker's WebSocket, here a real
//! tokio-tungstenite server on loopback, on a virtual desktop (tests/desktop/) for the
//! notifications and the loopback provider: lines, junk, binary and 1 MB frames, the server
//! going away and coming back, and 1,000 lines a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "desktop/mod.rs"]
mod desktop;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use desktop::provider::best_option;
use desktop::*;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

const LINE: &str = "おはよう、先輩。今日も早いですね。";
const LINE2: &str = "待ってください、まだ話が終わっていません。";

/// A text hooker's WebSocket server: every connected client gets each message sent.
struct WsServer {
    addr: SocketAddr,
    messages: broadcast::Sender<Message>,
    connections: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl WsServer {
    fn start(port: u16) -> WsServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (messages, _) = broadcast::channel(4096);
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, count) = (messages.clone(), connections.clone());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut rx = tx.subscribe();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Ok(m) => if ws.send(m).await.is_err() { break },
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(_) => break,
                            },
                            incoming = ws.next() => if incoming.is_none_or(|m| m.is_err()) { break },
                        }
                    }
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        WsServer {
            addr,
            messages,
            connections,
            runtime: Some(runtime),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn connected(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn send(&self, m: Message) {
        let _ = self.messages.send(m);
    }

    fn text(&self, t: &str) {
        self.send(Message::text(t));
    }

    /// The server goes away: listener and connections closed.
    fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn config_with(env: &DesktopEnv, url: &str) -> String {
    YakuConfig::new(&env.provider.url()).to_toml() + &format!("\n[intake]\nwebsocket = \"{url}\"\n")
}

fn sources(env: &DesktopEnv) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(env.dir.path().join("data/yaku/yaku.db")).unwrap();
    let mut st = db
        .prepare("SELECT source, text FROM lines ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn websocket_lines_are_shown_and_stored_and_junk_binary_and_1_mb_frames_are_not() {
    let env = DesktopEnv::start();
    let server = WsServer::start(0);
    let yaku = env.spawn_yaku_at(&env.write_config_text(&config_with(&env, &server.url())));
    await_state(
        &env,
        &yaku,
        secs(10),
        "the daemon's WebSocket connection",
        || server.connected() == 1,
    );

    server.text(LINE);
    await_state(&env, &yaku, secs(10), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });

    server.send(Message::binary(vec![0xff; 64]));
    server.text("Meet me on the roof after school tomorrow.");
    server.text("");
    server.send(Message::text("あ".repeat(350_000))); // about 1 MB, far over max_chars
    // A refused frame ends that connection; the daemon connects again.
    await_state(&env, &yaku, secs(10), "the daemon to connect again", || {
        env.log().contains("the WebSocket failed") && server.connected() == 1
    });
    server.text(LINE2);
    await_state(
        &env,
        &yaku,
        secs(10),
        "the second line's notification",
        || notified(&env, &best_option(LINE2)),
    );
    // The same line copied as well (Textractor copying and serving it): translated once.
    env.set_clipboard(LINE2);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the clipboard copy to be read",
        || env.log().contains("gate=repeat") || env.log().contains("gate=\"repeat\""),
    );
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned(), LINE2.to_owned()]
    );
    assert_eq!(
        sources(&env),
        vec![
            ("websocket".to_owned(), LINE.to_owned()),
            ("websocket".to_owned(), LINE2.to_owned())
        ]
    );
    let log = env.log();
    assert!(
        !log.contains("Meet me on the roof") && !log.contains(&"あ".repeat(100)),
        "{log}"
    );
    server.stop();
}

#[test]
fn a_websocket_server_that_goes_away_is_warned_about_once_and_its_lines_flow_again_when_back() {
    let env = DesktopEnv::start();
    let server = WsServer::start(0);
    let port = server.addr.port();
    let yaku = env.spawn_yaku_at(&env.write_config_text(&config_with(&env, &server.url())));
    await_state(
        &env,
        &yaku,
        secs(10),
        "the daemon's WebSocket connection",
        || server.connected() == 1,
    );
    server.stop();
    // Away for 3 s: several attempts (250 ms, 500 ms, 1 s, 2 s apart) fail meanwhile.
    std::thread::sleep(secs(3.0));
    let server = WsServer::start(port);
    await_state(
        &env,
        &yaku,
        secs(10),
        "the connection to the server that came back",
        || server.connected() == 1,
    );
    server.text(LINE);
    await_state(&env, &yaku, secs(10), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });
    let log = env.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot connect to the WebSocket"))
        .count();
    assert_eq!(warnings, 1, "one warning for the outage:\n{log}");
    assert!(log.contains("connected to the WebSocket again"), "{log}");
    server.stop();
}

#[test]
fn a_thousand_websocket_lines_a_second_end_on_the_last_line_with_few_requests() {
    let env = DesktopEnv::start();
    env.provider.set_delay(Duration::from_millis(300));
    let server = WsServer::start(0);
    let yaku = env.spawn_yaku_at(&env.write_config_text(&config_with(&env, &server.url())));
    await_state(
        &env,
        &yaku,
        secs(10),
        "the daemon's WebSocket connection",
        || server.connected() == 1,
    );
    let lines: Vec<String> = (1..=1000)
        .map(|n| format!("{n}番目の台詞が画面に出ました。"))
        .collect();
    let last = lines.last().unwrap().clone();
    let start = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        let due = start + Duration::from_millis(i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        server.text(line);
    }
    let sent_in = start.elapsed();
    assert!(
        sent_in < secs(1.5),
        "sending took {sent_in:?}: not 1,000 a second"
    );
    await_state(
        &env,
        &yaku,
        secs(60),
        "the last line's notification",
        || notified(&env, &best_option(&last)),
    );
    wait_quiet(secs(30), secs(1), "the provider", || {
        env.provider.last_activity()
    });
    let requested = env.provider.lines();
    assert_eq!(requested.last(), Some(&last), "{requested:?}");
    assert!(
        requested.len() <= 20,
        "1,000 lines made {} requests",
        requested.len()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", yaku.pid())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    eprintln!(
        "1,000 lines sent in {sent_in:?}, last shown after {:?}: {} requests, RSS {rss_kb} kB",
        start.elapsed(),
        requested.len()
    );
    assert!(rss_kb < 200_000, "RSS {rss_kb} kB");
    server.stop();
}
