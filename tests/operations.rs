//! Operations, with the real binary on a real (virtual) desktop (tests/desktop/): SIGTERM
//! during a hung request, kill -9 during a request and a restart, the notification server
//! restarted mid-run, and a log dir that cannot be created. What must hold: the daemon exits 0
//! within 2 s and leaves no `pending` history row; after a crash the row becomes
//! `interrupted` and no line is lost or duplicated; notifications resume; translating goes on
//! without logs, and stderr says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hardening/mod.rs"]
mod hardening;

#[allow(unused_imports)]
#[path = "desktop/mod.rs"]
mod desktop;

#[path = "hardening/desktop_ext.rs"]
mod desktop_ext;

use std::time::Instant;

use desktop::provider::best_option;
use desktop::wait::secs;
use desktop::{DesktopEnv, YakuConfig};
use desktop_ext::{await_polling, await_state, history};

// No `名前：` shape: such a line would be sent without its speaker (see core speaker.rs).
const LINE1: &str = "一行目、おはよう、先輩。";
const LINE2: &str = "二行目、今日も早いですね。";
const LINE3: &str = "三行目、待ってください！";
const LINE4: &str = "四行目、また明日。";

fn config(env: &DesktopEnv) -> YakuConfig {
    YakuConfig::new(&env.provider.url()).poll_interval_ms(50)
}

fn notified(env: &DesktopEnv, line: &str) -> bool {
    env.yaku_notifications()
        .iter()
        .any(|n| n.summary == best_option(line))
}

fn requested(env: &DesktopEnv, line: &str) -> bool {
    env.provider.lines().iter().any(|l| l == line)
}

fn rows(env: &DesktopEnv) -> Vec<(String, String)> {
    history(&desktop_ext::default_db(env))
}

fn status_of(env: &DesktopEnv, line: &str) -> Option<String> {
    rows(env)
        .into_iter()
        .find(|(t, _)| t == line)
        .map(|(_, s)| s)
}

#[test]
fn sigterm_during_a_hung_request_exits_0_within_2s_and_leaves_no_pending_row() {
    let env = DesktopEnv::start();
    env.provider.hang();
    let yaku = env.spawn_yaku(&config(&env));
    await_polling(&env, &yaku);
    env.set_clipboard(LINE1);
    await_state(&env, &yaku, secs(5), "the (hanging) request", || {
        requested(&env, LINE1)
    });
    await_state(&env, &yaku, secs(5), "the pending history row", || {
        status_of(&env, LINE1).as_deref() == Some("pending")
    });

    yaku.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = yaku.wait_exit(secs(2));
    let Some(status) = status else {
        panic!("yaku still running 2 s after SIGTERM\n{}", env.report());
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{status} after {:?}\n{}",
        sent.elapsed(),
        env.report()
    );
    let rows = rows(&env);
    assert_eq!(
        rows,
        vec![(LINE1.to_string(), "interrupted".to_string())],
        "the line in flight must end interrupted (or final), never pending"
    );
}

#[test]
fn kill_9_during_a_request_then_a_restart_marks_the_line_interrupted_and_loses_or_duplicates_nothing()
 {
    let env = DesktopEnv::start();
    let first = env.spawn_yaku(&config(&env));
    await_polling(&env, &first);
    for line in [LINE1, LINE2] {
        env.set_clipboard(line);
        await_state(
            &env,
            &first,
            secs(5),
            &format!("{line}'s notification"),
            || notified(&env, line),
        );
    }
    env.provider.hang();
    env.set_clipboard(LINE3);
    await_state(
        &env,
        &first,
        secs(5),
        "the third line's (hanging) request",
        || requested(&env, LINE3),
    );
    await_state(
        &env,
        &first,
        secs(5),
        "the third line's pending row",
        || status_of(&env, LINE3).as_deref() == Some("pending"),
    );
    first.signal(libc::SIGKILL);
    let killed = first
        .wait_exit(secs(5))
        .expect("kill -9 did not end the daemon");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(libc::SIGKILL)
    );
    drop(first);

    env.provider.set_delay(std::time::Duration::ZERO);
    let second = env.spawn_yaku(&config(&env));
    await_polling(&env, &second);
    await_state(
        &env,
        &second,
        secs(5),
        "the crashed line to become interrupted",
        || status_of(&env, LINE3).as_deref() == Some("interrupted"),
    );
    // The restarted daemon answers on its control socket (the old one was left behind).
    let (code, out, err) = env.yaku_command(&["status"]);
    assert!(
        code.success(),
        "`yaku status` after the restart: {out}{err}"
    );

    env.set_clipboard(LINE4);
    await_state(
        &env,
        &second,
        secs(5),
        "the fourth line's notification",
        || notified(&env, LINE4),
    );
    await_state(
        &env,
        &second,
        secs(5),
        "the fourth line's final row",
        || status_of(&env, LINE4).as_deref() == Some("translated"),
    );
    let want: Vec<(String, String)> = [
        (LINE1, "translated"),
        (LINE2, "translated"),
        (LINE3, "interrupted"),
        (LINE4, "translated"),
    ]
    .iter()
    .map(|(t, s)| (t.to_string(), s.to_string()))
    .collect();
    assert_eq!(
        rows(&env),
        want,
        "one row per copied line, none lost, none twice"
    );
}

#[test]
fn the_notification_server_restarted_mid_run_gets_the_next_notifications() {
    let mut env = DesktopEnv::start();
    let yaku = env.spawn_yaku(&config(&env));
    await_polling(&env, &yaku);
    env.set_clipboard(LINE1);
    await_state(&env, &yaku, secs(5), "the first notification", || {
        notified(&env, LINE1)
    });

    env.stop_notification_server();
    env.set_clipboard(LINE2);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the second line translated with no notification server",
        || requested(&env, LINE2) && yaku.log().contains(&best_option(LINE2)),
    );

    env.start_notification_server();
    env.set_clipboard(LINE3);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the third line's notification, once dunst is back",
        || notified(&env, LINE3),
    );
    assert!(yaku.is_running());
}

#[test]
fn a_log_dir_that_cannot_be_created_leaves_translating_on_and_says_why_on_stderr() {
    let env = DesktopEnv::start();
    // A path under a regular file: creating it fails even for root.
    let blocker = env.dir.path().join("not-a-directory");
    std::fs::write(&blocker, "a file").unwrap();
    let log_dir = blocker.join("logs");
    let toml = config(&env)
        .to_toml()
        .replace("dir = \"\"", &format!("dir = \"{}\"", log_dir.display()));
    assert!(
        toml.contains(&log_dir.display().to_string()),
        "the config has no [log] dir key any more"
    );
    let yaku = desktop_ext::spawn_custom(&env, &toml, &[]);
    await_polling(&env, &yaku);
    env.set_clipboard(LINE1);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the line's notification without a log file",
        || notified(&env, LINE1),
    );
    let stderr = desktop_ext::Running::stderr(&yaku);
    assert!(
        stderr.contains("cannot write logs in") && stderr.contains(&log_dir.display().to_string()),
        "stderr does not say the logs cannot be written:\n{stderr}"
    );
    // The log lines go to stderr instead.
    await_state(
        &env,
        &yaku,
        secs(5),
        "the translation logged on stderr",
        || desktop_ext::Running::stderr(&yaku).contains(&best_option(LINE1)),
    );
    assert!(yaku.is_running());
    yaku.signal(libc::SIGTERM);
    let status = yaku
        .wait_exit(secs(2))
        .expect("no exit within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}
