//! Controlling a running `yaku run` on a real (virtual) desktop: `yaku status`, `pause`,
//! `resume`, `reload` and `stop` over the control socket (see tests/desktop/ for the harness).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "desktop/mod.rs"]
mod desktop;
#[path = "hardening/desktop_ext.rs"]
mod desktop_ext;

use std::time::Duration;

use desktop::owner::ClipboardOwner;
use desktop::*;
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Starts the daemon and waits for its first clipboard read.
fn start(env: &DesktopEnv, yaku: Yaku) -> Yaku {
    let owner = env.clipboard_owner();
    let probe = owner.offer("control test: is the daemon polling?");
    wait_until(
        secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
        || env.report(),
    );
    env.keep_owner(owner);
    yaku
}

fn status(env: &DesktopEnv) -> Value {
    let (st, out, err) = env.yaku_command(&["status", "--json"]);
    assert!(st.success(), "yaku status failed: {out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
}

/// Offers `text` on a fresh owner and returns it (the owner counts the daemon's reads).
fn copy(env: &DesktopEnv, text: &str) -> (ClipboardOwner, u64) {
    let owner = env.clipboard_owner();
    let id = owner.offer(text);
    (owner, id)
}

#[test]
fn status_says_not_running_when_nothing_answers() {
    let env = DesktopEnv::start();
    let (st, out, err) = env.yaku_command(&["status"]);
    assert_eq!(st.code(), Some(1), "{out}");
    assert_eq!(err.trim(), "yaku is not running");
    let (st, _, err) = env.yaku_command(&["pause"]);
    assert_eq!((st.code(), err.trim()), (Some(1), "yaku is not running"));
}

#[test]
fn status_json_then_pause_reads_nothing_and_after_resume_only_a_new_copy_is_translated() {
    let env = DesktopEnv::start();
    let yaku = start(
        &env,
        env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100)),
    );
    let v = status(&env);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cache_hit_rate",
            "game",
            "last_latency_ms",
            "lines",
            "lookahead",
            "paused",
            "paused_for_secs",
            "pid",
            "providers",
            "queue",
            "rejected_by_gate",
            "running",
            "uptime_secs",
            "watch"
        ]
    );
    assert_eq!(v["pid"].as_u64(), Some(u64::from(yaku.pid())));
    assert_eq!(
        v["watch"], "poll",
        "the harness polls unless a test says otherwise"
    );
    assert_eq!(v["paused"], false);
    assert!(v["lookahead"].is_null(), "no [lookahead] script: null");
    assert_eq!(v["providers"][0]["state"], "closed");

    let (st, out, _) = env.yaku_command(&["pause", "--for", "10m"]);
    assert!(st.success() && out.contains("paused for 10 min"), "{out}");
    let v = status(&env);
    assert_eq!(v["paused"], true);
    assert!(v["paused_for_secs"].as_u64().unwrap() > 590);
    wait_until(
        secs(5),
        "the paused notice",
        || {
            env.yaku_notifications()
                .iter()
                .any(|n| n.summary == "yaku is paused")
        },
        || env.report(),
    );

    let line = "一時停止中にコピーした行です。";
    let (owner, offer) = copy(&env, line);
    // Ten poll intervals of quiet: the paused daemon does not even ask for the targets.
    let mut read_at = None;
    wait_quiet(
        secs(3),
        Duration::from_secs(1),
        "a paused daemon's clipboard",
        || {
            if owner.served(offer).targets > 0 {
                read_at.get_or_insert_with(std::time::Instant::now);
            }
            read_at
        },
    );
    assert_eq!(
        owner.served(offer).targets,
        0,
        "a paused daemon read the clipboard"
    );
    assert_eq!(env.provider.count(), 0);

    let (st, out, _) = env.yaku_command(&["resume"]);
    assert!(st.success(), "{out}");
    // Resume answers once the clipboard has been read as already seen: the line copied while
    // paused is not sent, and a line copied right after the answer is.
    assert!(
        owner.served(offer).targets >= 1,
        "resume answered before the mark"
    );
    let after = "再開の直後にコピーした行です。";
    let (next, _) = copy(&env, after);
    wait_until(
        secs(5),
        "the line copied right after resume to be translated",
        || env.provider.lines().iter().any(|l| l == after),
        || env.report(),
    );
    assert_eq!(
        env.provider.lines(),
        vec![after.to_owned()],
        "the line copied while paused was sent"
    );
    assert_eq!(status(&env)["paused"], false);
    env.keep_owner(owner);
    env.keep_owner(next);
    drop(yaku);
}

/// A provider that accepts only `Bearer good-key`.
fn keyed_provider(rt: &tokio::runtime::Runtime) -> MockServer {
    rt.block_on(async {
        let server = MockServer::start().await;
        let ok = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "{\"options\": [\"Translated with the good key.\"]}"}, "finish_reason": "stop"}]});
        let unauthorized = serde_json::json!({"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}});
        Mock::given(method("POST"))
            .and(path("/chat/completions"))
            .and(header("authorization", "Bearer good-key"))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(unauthorized))
            .with_priority(2)
            .mount(&server)
            .await;
        server
    })
}

fn keyed_config(url: &str, key: &str) -> String {
    format!(
        "[clipboard]\npoll_interval_ms = 100\n\n[[providers]]\nname = \"keyed\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\napi_key = \"{key}\"\nrequests_per_minute = 0\ntimeout_secs = 5\n"
    )
}

#[test]
fn a_broken_reload_keeps_the_old_config_and_a_reload_that_fixes_the_key_reenables_the_provider() {
    let env = DesktopEnv::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = keyed_provider(&rt);
    let config = env.write_config_text(&keyed_config(&server.uri(), "bad-key"));
    let yaku = start(&env, env.spawn_yaku_at(&config));

    let (owner, _) = copy(&env, "鍵が間違っている行です。");
    wait_until(
        secs(5),
        "the bad key to disable the provider",
        || status(&env)["providers"][0]["state"] == "disabled",
        || env.report(),
    );
    env.keep_owner(owner);
    assert!(
        status(&env)["providers"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized")
    );

    // A broken config is refused; the old one (and its disabled provider) stays.
    std::fs::write(&config, "[translation]\noptoins = 3\n").unwrap();
    let (st, _, err) = env.yaku_command(&["reload", "--config", config.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("optoins"), "{err}");
    assert_eq!(status(&env)["providers"][0]["state"], "disabled");
    wait_until(
        secs(5),
        "the rejected-reload notice",
        || {
            env.yaku_notifications()
                .iter()
                .any(|n| n.summary == "yaku: config not reloaded")
        },
        || env.report(),
    );

    // The fixed key: reload re-enables the provider, and the next line is translated.
    std::fs::write(&config, keyed_config(&server.uri(), "good-key")).unwrap();
    let (st, out, err) = env.yaku_command(&["reload"]);
    assert!(st.success(), "{out} {err}");
    assert_eq!(status(&env)["providers"][0]["state"], "closed");
    let (owner, _) = copy(&env, "鍵を直した後の行です。");
    wait_until(
        secs(5),
        "a translation with the fixed key",
        || {
            env.yaku_notifications()
                .iter()
                .any(|n| n.summary == "Translated with the good key.")
        },
        || env.report(),
    );
    env.keep_owner(owner);
    let log = env.log();
    assert!(
        !log.contains("good-key") && !log.contains("bad-key"),
        "a key reached the log"
    );
    drop(yaku);
}

#[test]
fn stop_ends_the_line_in_flight_exits_0_and_frees_the_lock_for_a_restart() {
    const LINE: &str = "止める前の台詞です。";
    let env = DesktopEnv::start();
    env.provider.hang();
    let config = YakuConfig::new(&env.provider.url()).poll_interval_ms(100);
    let yaku = start(&env, env.spawn_yaku(&config));
    env.set_clipboard(LINE);
    let db = desktop_ext::default_db(&env);
    desktop_ext::await_state(
        &env,
        &yaku,
        secs(10),
        "the (hanging) request's pending row",
        || {
            env.provider.lines().iter().any(|l| l == LINE)
                && desktop_ext::history(&db) == [(LINE.to_string(), "pending".to_string())]
        },
    );

    let (st, out, err) = env.yaku_command(&["stop"]);
    assert_eq!(st.code(), Some(0), "{out}{err}\n{}", env.report());
    assert_eq!(out.trim(), format!("yaku stopped (pid {})", yaku.pid()));
    // `yaku stop` returns once the lock is free: the daemon has exited by then.
    let exit = yaku
        .wait_exit(secs(2))
        .unwrap_or_else(|| panic!("yaku still running after `yaku stop`\n{}", env.report()));
    assert_eq!(exit.code(), Some(0), "{}", yaku.stderr());
    assert_eq!(
        desktop_ext::history(&db),
        [(LINE.to_string(), "interrupted".to_string())],
        "the line in flight is committed as interrupted, never left pending"
    );

    let (st, out, err) = env.yaku_command(&["stop"]);
    assert_eq!(
        (st.code(), err.trim()),
        (Some(1), "yaku is not running"),
        "{out}"
    );

    // Started again right after, it takes the lock and answers.
    let again = start(&env, env.spawn_yaku(&config));
    assert_eq!(status(&env)["pid"].as_u64(), Some(u64::from(again.pid())));
}
