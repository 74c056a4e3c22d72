//! Warm provider connections (`[connections]`, `core::warm`): the real daemon on a virtual
//! desktop (tests/desktop/) against a loopback provider that counts its TCP connections, TLS
//! handshakes, translation requests and warming `GET /models` requests (tests/support/
//! counting.rs), over real TLS with a test CA that only yaku's `SSL_CERT_FILE` trusts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/counting.rs"]
mod counting;
#[path = "desktop/mod.rs"]
mod desktop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use counting::{Answer, CountingProvider, TestCa};
use desktop::provider::{best_option, chat_completion, line_of};
use desktop::*;

const LINE: &str = "おはよう、先輩。今日も早いですね。";
const LINE2: &str = "待ってください、まだ話が終わっていません。";

/// Answers each line with "EN <line>", as the desktop suite's provider does.
fn answer() -> Answer {
    Arc::new(|body: &str| {
        let line = line_of(body).unwrap_or_default();
        chat_completion(&[best_option(&line)]).to_string()
    })
}

/// Rows in the history's `lines` and `attempts` tables (what `yaku stats` counts).
fn lines_and_attempts(env: &DesktopEnv) -> (i64, i64) {
    let db = rusqlite::Connection::open(env.dir.path().join("data/yaku/yaku.db")).unwrap();
    let count = |table: &str| {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("lines"), count("attempts"))
}

#[test]
fn the_first_line_after_start_reuses_the_warm_tls_connection_and_warming_is_never_billed() {
    let env = DesktopEnv::start();
    let ca = TestCa::new(env.dir.path());
    let server = CountingProvider::start(Some(&ca), secs(120), answer());
    let config = env.write_config_text(&YakuConfig::new(&server.url()).to_toml());
    let cert_file = ca.pem_path.to_str().unwrap();
    let yaku = env.spawn_yaku_at_env(&config, &[("SSL_CERT_FILE", cert_file)]);
    await_state(
        &env,
        &yaku,
        secs(20),
        "the warming request at start",
        || !server.warms().is_empty(),
    );
    assert_eq!(
        (server.connections(), server.handshakes(), server.posts()),
        (1, 1, 0),
        "warming opened one connection and sent no translation request"
    );

    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(20), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });
    assert_eq!(server.posts(), 1);
    assert_eq!(
        (server.connections(), server.handshakes()),
        (1, 1),
        "the line went over the warm connection: no handshake on its way"
    );
    assert_eq!(
        lines_and_attempts(&env),
        (1, 1),
        "one line, one attempt: warming is no request in the history or stats"
    );
    let log = env.log();
    assert!(!log.contains("warming failed"), "{log}");
}

#[test]
fn an_https_provider_whose_ca_is_not_trusted_is_refused_and_ssl_cert_file_trusts_it() {
    let env = DesktopEnv::start();
    let ca = TestCa::new(env.dir.path());
    let server = CountingProvider::start(Some(&ca), secs(120), answer());
    let config = env.write_config_text(&YakuConfig::new(&server.url()).to_toml());
    let config = config.to_str().unwrap();
    let (status, _, stderr) = env.yaku_command(&["translate", "--config", config, LINE]);
    assert!(!status.success(), "an unknown CA must not be trusted");
    assert_eq!(
        (server.handshakes(), server.posts()),
        (0, 0),
        "no TLS session, no request: {stderr}"
    );
    let cert_file = ca.pem_path.to_str().unwrap();
    let (status, stdout, stderr) = env.yaku_command_env(
        &["translate", "--config", config, LINE],
        &[("SSL_CERT_FILE", cert_file)],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&best_option(LINE)), "{stdout}");
    assert_eq!(server.posts(), 1);
}

#[test]
fn no_warming_while_paused_a_resume_warms_and_an_idle_reader_is_left_alone_until_a_line() {
    let env = DesktopEnv::start();
    let server = CountingProvider::start(None, secs(120), answer());
    let text = YakuConfig::new(&server.url()).to_toml()
        + "\n[connections]\nkeep_warm = true\nwarm_every_secs = 0.5\nidle_after_secs = 6\n";
    let yaku = env.spawn_yaku_at(&env.write_config_text(&text));
    await_state(&env, &yaku, secs(20), "warming to repeat", || {
        server.warms().len() >= 2
    });

    let (status, out, err) = env.yaku_command(&["pause"]);
    assert!(status.success(), "{out}{err}");
    // Four warm intervals without a warm (one in flight at the pause may still land).
    wait_quiet(secs(3), secs(2), "no warming while paused", || {
        server.warms().last().copied()
    });

    let (status, out, err) = env.yaku_command(&["resume"]);
    assert!(status.success(), "{out}{err}");
    let resumed_at = Instant::now();
    await_state(&env, &yaku, secs(10), "a warm after the resume", || {
        server.warms().iter().any(|t| *t > resumed_at)
    });
    // Then, with no line for 6 s, the reader counts as gone: warming stops.
    wait_quiet(secs(30), secs(1.5), "warming to stop once idle", || {
        server.warms().last().copied()
    });
    let after_resume = server.warms().iter().filter(|t| **t > resumed_at).count();
    assert!(
        (4..=18).contains(&after_resume),
        "warmed {after_resume} times in the 6 s after the resume"
    );
    assert_eq!(server.posts(), 0, "warming sends no translation request");

    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(20), "the line's notification", || {
        notified(&env, &best_option(LINE2))
    });
    let line_at = Instant::now();
    await_state(
        &env,
        &yaku,
        secs(10),
        "warming again after the line",
        || server.warms().iter().any(|t| *t > line_at),
    );
    assert_eq!(server.posts(), 1);
    assert_eq!(lines_and_attempts(&env), (1, 1));
}

/// The adapters' warm request, on each wire format: a free model-list `GET` with the key in
/// its usual header (never the URL); any HTTP answer is a warm connection, a refused connection
/// is a transient failure in our own words.
#[tokio::test]
async fn warming_is_a_model_list_get_with_the_key_in_its_header_and_any_answer_counts() {
    use ::yaku::adapters::provider::{Settings, gemini::Gemini, openai::OpenAi};
    use ::yaku::core::provider::{FailureClass, Provider};
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "AIzaSyWarmKey0123456789abcdefghijk";
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_string("{}"))
        .mount(&server)
        .await;
    let settings = |base_url: String| Settings {
        name: "p".into(),
        model: "m".into(),
        base_url,
        api_key: Some(KEY.into()),
        timeout: Duration::from_secs(5),
        extra: serde_json::Value::Null,
        json_mode: true,
    };
    let gemini = Gemini::new(settings(format!("{}/v1beta", server.uri()))).unwrap();
    let openai = OpenAi::new(settings(format!("{}/openai/v1", server.uri()))).unwrap();
    gemini
        .warm()
        .await
        .expect("a 401 still warms the connection");
    openai
        .warm()
        .await
        .expect("a 401 still warms the connection");
    let sent = server.received_requests().await.unwrap();
    let seen: Vec<(String, String, Option<String>, Option<String>)> = sent
        .iter()
        .map(|r| {
            let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_string());
            (
                r.method.to_string(),
                match r.url.query() {
                    Some(q) => format!("{}?{q}", r.url.path()),
                    None => r.url.path().to_string(),
                },
                header("x-goog-api-key"),
                header("authorization"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "GET".into(),
                "/v1beta/models?pageSize=1".into(),
                Some(KEY.into()),
                None
            ),
            (
                "GET".into(),
                "/openai/v1/models".into(),
                None,
                Some(format!("Bearer {KEY}"))
            ),
        ]
    );

    // Nothing listens there any more: a transport failure, with no key or URL in it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let f = OpenAi::new(settings(closed.clone()))
        .unwrap()
        .warm()
        .await
        .unwrap_err();
    assert_eq!(f.class, FailureClass::Transient);
    assert!(
        !f.detail.contains(&KEY[..8]) && !f.detail.contains(&closed),
        "{f}"
    );
}
