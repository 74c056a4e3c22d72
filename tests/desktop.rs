//! `yaku run` on a real (virtual) desktop: each test has its own Xvfb, session bus, dunst,
//! notification capture (dbus-monitor) and loopback provider (see tests/desktop/). The tests
//! copy lines the way a user or a text hooker does and check what reaches the provider, what
//! notifications are sent and what the log holds. They need Xvfb, xclip, dbus-daemon,
//! dbus-monitor and dunst, which `scripts/test` installs; a missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "desktop/mod.rs"]
mod desktop;
#[path = "setup/pty.rs"]
#[allow(dead_code)] // shared with tests/setup.rs, which uses all of it
mod pty;

use std::time::{Duration, Instant};

use desktop::owner::{ClipboardOwner, KDE_PASSWORD_HINT, Served};
use desktop::provider::{best_option, second_option};
use desktop::*;

const LINE: &str = "おはよう、先輩。今日も早いですね。";
const LINE2: &str = "待ってください、まだ話が終わっていません。";

/// Starts `yaku run` and waits until it polls the clipboard: an owner offering a text that no
/// gate lets through sees its TARGETS read. (What is on the clipboard before the daemon's
/// first read is thus never what a test copies.)
fn start_yaku(env: &DesktopEnv, config: &YakuConfig) -> Yaku {
    start_yaku_env(env, config, &[])
}

fn start_yaku_env(env: &DesktopEnv, config: &YakuConfig, vars: &[(&str, &str)]) -> Yaku {
    let yaku = env.spawn_yaku_env(config, vars);
    let owner = env.clipboard_owner();
    let probe = owner.offer("yaku desktop test: is the daemon polling the clipboard?");
    await_state(
        env,
        &yaku,
        secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
    );
    // The owner stays until a test's copy takes the CLIPBOARD over (see keep_owner).
    env.keep_owner(owner);
    yaku
}

/// Waits until the daemon has read `offer` through twice (so it has dealt with it), and
/// returns right after a complete read, so that the next offer cannot land between the
/// daemon's TARGETS and UTF8_STRING requests (which would pair one offer's targets with the
/// next one's text). An offer with the password-manager hint may legitimately never have its
/// text read: three TARGETS reads then do.
fn await_read(env: &DesktopEnv, yaku: &Yaku, owner: &ClipboardOwner, offer: u64, what: &str) {
    await_state(
        env,
        yaku,
        secs(5),
        &format!("the daemon to read {what}"),
        || {
            let served = owner.served(offer);
            served.text >= 2 || served.targets >= 3
        },
    );
}

fn summaries(env: &DesktopEnv) -> Vec<String> {
    env.yaku_notifications()
        .into_iter()
        .map(|n| n.summary)
        .collect()
}

fn requested(env: &DesktopEnv, line: &str) -> bool {
    env.provider.lines().iter().any(|l| l == line)
}

// ---- the harness itself ----

#[test]
fn harness_runs_its_own_x_server_clipboard_bus_and_notification_server() {
    let mut env = DesktopEnv::start();

    // The clipboard through xclip, and a second xclip taking it over.
    env.set_clipboard("ハーネスの試験です。");
    assert_eq!(
        env.read_clipboard("UTF8_STRING").unwrap(),
        "ハーネスの試験です。"
    );
    env.set_clipboard("二つ目のコピー");
    assert_eq!(env.read_clipboard("UTF8_STRING").unwrap(), "二つ目のコピー");

    // The in-process owner: the password-manager hint in TARGETS, and what was asked of it.
    let owner = env.clipboard_owner();
    let offer = owner.offer_concealed("秘密の台詞です。");
    let targets = env.read_clipboard("TARGETS").unwrap();
    for target in ["TARGETS", "UTF8_STRING", KDE_PASSWORD_HINT] {
        assert!(
            targets.lines().any(|t| t == target),
            "{target} missing from TARGETS: {targets:?}"
        );
    }
    assert_eq!(
        env.read_clipboard("UTF8_STRING").unwrap(),
        "秘密の台詞です。"
    );
    assert_eq!(env.read_clipboard(KDE_PASSWORD_HINT).unwrap(), "secret");
    assert_eq!(
        owner.served(offer),
        Served {
            targets: 1,
            text: 1,
            hint: 1
        }
    );
    let plain = owner.offer("普通の台詞です。");
    let targets = env.read_clipboard("TARGETS").unwrap();
    assert!(!targets.contains(KDE_PASSWORD_HINT), "{targets:?}");
    assert_eq!(
        env.read_clipboard("UTF8_STRING").unwrap(),
        "普通の台詞です。"
    );
    assert_eq!(
        owner.served(plain),
        Served {
            targets: 1,
            text: 1,
            hint: 0
        }
    );
    drop(owner);

    // A Notify on the private bus: captured with its arguments (a body of several lines,
    // quotes and markup included) and answered by dunst with an id.
    let body = "2. \"two\" & <three>\n   string \"not an argument\"\n原文の行";
    let id = env.send_notification("harness", 0, "Tom & Jerry", body);
    assert!(id > 0);
    wait_until(
        secs(5),
        "the Notify call in the capture",
        || {
            env.notifications()
                .iter()
                .any(|n| n.returned_id == Some(id))
        },
        || env.report(),
    );
    let n = env
        .notifications()
        .into_iter()
        .find(|n| n.returned_id == Some(id))
        .unwrap();
    assert_eq!(
        (
            n.app_name.as_str(),
            n.replaces_id,
            n.summary.as_str(),
            n.body.as_str()
        ),
        ("harness", 0, "Tom & Jerry", body)
    );
    assert_eq!(n.expire_timeout, 5000);
    let replaced = env.send_notification("harness", id, "replaced", "");
    assert_eq!(
        replaced, id,
        "dunst answers a replacement with the replaced id"
    );
    wait_until(
        secs(5),
        "the replacing Notify in the capture",
        || env.notifications().len() == 2,
        || env.report(),
    );
    assert_eq!(env.notifications()[1].replaces_id, id);

    // Killing X: the clipboard is gone, and the display number stays reserved: an X server
    // started meanwhile gets another one.
    let display = env.display();
    env.kill_x();
    assert_eq!(env.selection_owner(), None);
    assert!(
        env.read_clipboard("UTF8_STRING").is_err(),
        "the clipboard is readable with X down"
    );
    let (other, other_display) = env.spawn_other_xvfb();
    assert_ne!(
        other_display,
        env.display_number(),
        "another Xvfb took the down display's number"
    );
    drop(other);

    // Restarting X on the same display, with dunst back on it.
    env.restart_x();
    assert_eq!(env.display(), display);
    env.set_clipboard("再起動の後です。");
    assert_eq!(
        env.read_clipboard("UTF8_STRING").unwrap(),
        "再起動の後です。"
    );
    assert!(env.send_notification("harness", 0, "after the restart", "") > 0);
}

#[test]
fn harness_provider_speaks_the_openai_format_that_yaku_translate_sends() {
    let provider = FakeProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[translation]\nreply_checks = false\n\n[[providers]]\nname = \"fake\"\nkind = \"openai\"\nmodel = \"test-model\"\nbase_url = \"{}\"\n\
             requests_per_minute = 0\ntimeout_secs = 5\njson_mode = true\n",
            provider.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yaku"))
        .args(["translate", "--json", "--config"])
        .arg(&config)
        .arg(LINE)
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "yaku translate: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["best"], best_option(LINE));
    assert_eq!(
        json["options"],
        serde_json::json!([best_option(LINE), second_option(LINE)])
    );
    let requests = provider.requests();
    assert_eq!(
        provider.lines(),
        vec![LINE.to_owned()],
        "the line parsed back out of the prompt"
    );
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/chat/completions")
    );
    assert_eq!(
        requests[0].authorization, None,
        "a keyless provider sends no key"
    );
}

// ---- the daemon ----

#[test]
fn copied_japanese_line_is_shown_as_a_notification_and_logged() {
    let env = DesktopEnv::start();
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()));

    env.set_clipboard(LINE);
    let copied = Instant::now();
    await_state(
        &env,
        &yaku,
        secs(2),
        "a notification from yaku with the best option within 2 s",
        || notified(&env, &best_option(LINE)),
    );
    let n = env
        .yaku_notifications()
        .into_iter()
        .find(|n| n.summary == best_option(LINE))
        .unwrap();
    assert!(n.seen_at.duration_since(copied) <= secs(2));
    assert_eq!(n.app_name, "yaku");
    assert_eq!(env.provider.lines(), vec![LINE.to_owned()]);
    assert_eq!(
        env.provider.requests()[0].authorization,
        None,
        "a keyless provider sends no key"
    );

    // The log, through the yaku.log symlink: one line with the line's id, the provider, the
    // latency, the original text and the best translation (the writer may lag: poll).
    let translated_entry = |log: &str| {
        log.lines().any(|l| {
            l.contains(LINE)
                && l.contains(&best_option(LINE))
                && l.contains("fake")
                && l.contains("line_id")
                && l.contains("latency")
        })
    };
    await_state(
        &env,
        &yaku,
        secs(5),
        "a log line with line_id, provider, latency, the line and its translation",
        || translated_entry(&env.log()),
    );
    let link = env.log_path();
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{} is not a symlink to the current log file",
        link.display()
    );
}

#[test]
fn a_line_naming_its_speaker_is_sent_without_the_name_and_notified_as_name_colon_translation() {
    let env = DesktopEnv::start();
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()));

    env.set_clipboard("春香「ねえ、聞いてる？」");
    let shown = format!("春香: {}", best_option("「ねえ、聞いてる？」"));
    await_state(
        &env,
        &yaku,
        secs(5),
        "a notification naming the speaker before the best option",
        || notified(&env, &shown),
    );
    assert_eq!(
        env.provider.lines(),
        vec!["「ねえ、聞いてる？」".to_owned()],
        "the provider's line holds no name"
    );
}

#[test]
fn notification_escapes_markup_numbers_the_other_options_and_replaces_the_previous_one() {
    let env = DesktopEnv::start();
    env.provider.translate_with(|line| {
        if line == LINE {
            vec![
                "Tom & Jerry <3".into(),
                "Second > first".into(),
                "Third".into(),
            ]
        } else {
            vec![best_option(line), second_option(line)]
        }
    });
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()));

    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the first notification", || {
        notified(&env, "Tom &amp; Jerry &lt;3")
    });
    let first = env
        .yaku_notifications()
        .into_iter()
        .find(|n| n.summary == "Tom &amp; Jerry &lt;3")
        .unwrap();
    assert_eq!(
        first.body.lines().collect::<Vec<_>>(),
        ["2. Second &gt; first", "3. Third", LINE],
        "body: {:?}",
        first.body
    );
    assert_eq!(
        first.expire_timeout, 8000,
        "expire_timeout is [notify] timeout_ms"
    );

    await_state(
        &env,
        &yaku,
        secs(5),
        "dunst's id for the first notification",
        || {
            env.yaku_notifications()
                .iter()
                .any(|n| n.summary == first.summary && n.returned_id.is_some())
        },
    );
    let first_id = env
        .yaku_notifications()
        .into_iter()
        .find(|n| n.summary == first.summary)
        .unwrap()
        .returned_id;

    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the second notification", || {
        notified(&env, &best_option(LINE2))
    });
    let second = env
        .yaku_notifications()
        .into_iter()
        .find(|n| n.summary == best_option(LINE2))
        .unwrap();
    assert_eq!(
        second.body.lines().collect::<Vec<_>>(),
        [format!("2. {}", second_option(LINE2)).as_str(), LINE2]
    );
    assert_eq!(
        Some(second.replaces_id),
        first_id,
        "the second notification replaces the first"
    );
}

#[test]
fn rejected_texts_never_reach_the_provider_or_the_log() {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url())
        .poll_interval_ms(100)
        .log_level("debug");
    let yaku = start_yaku_env(&env, &config, &[("YAKU_LOG", "debug")]);

    let api_key = format!(
        "gsk_{}",
        "Xb7Qm2Lp9Rt4Wz8Kc3Nd6Fh1Jv5Gs0Ya7Ue2Io9Pk4Mn8Bq3Cx6D"
    );
    assert_eq!(api_key.len(), 4 + 52);
    let rejected: [(&str, &str, bool); 4] = [
        ("an ASCII password", "hunter2-Qx7!vLp9#Rw", false),
        ("an API key", &api_key, false),
        (
            "an English sentence",
            "Meet me on the roof after school tomorrow.",
            false,
        ),
        (
            "a Japanese line offered with the password-manager hint",
            "金庫の暗証番号は四五一九です。",
            true,
        ),
    ];
    let owner = env.clipboard_owner();
    for (what, text, concealed) in rejected {
        let offer = if concealed {
            owner.offer_concealed(text)
        } else {
            owner.offer(text)
        };
        await_read(&env, &yaku, &owner, offer, what);
    }

    // The daemon was polling all along: a valid line gets through.
    env.set_clipboard(LINE);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the valid line's notification",
        || notified(&env, &best_option(LINE)),
    );
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned()],
        "only the valid line reaches the provider"
    );

    await_state(&env, &yaku, secs(5), "the valid line in the log", || {
        env.log().contains(LINE)
    });
    let (log, stderr, stdout) = (env.log(), yaku.stderr(), yaku.stdout());
    for (what, text, _) in rejected {
        for (name, out) in [
            ("the log file", &log),
            ("stderr", &stderr),
            ("stdout", &stdout),
        ] {
            assert!(
                !out.contains(text),
                "{what} ({text:?}) appears in {name}:\n{out}"
            );
        }
    }
    assert!(
        !log.contains("Xb7Qm2Lp9Rt4"),
        "part of the API key is in the log:\n{log}"
    );
}

#[test]
fn repeated_line_and_copied_translations_are_not_translated_again() {
    let env = DesktopEnv::start();
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(100),
    );

    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });

    let owner = env.clipboard_owner();
    let copies = [
        ("the same line from a new owner", LINE.to_owned()),
        ("the best option copied back", best_option(LINE)),
        ("the second option copied back", second_option(LINE)),
        ("the line again, after other text", LINE.to_owned()),
    ];
    for (what, text) in &copies {
        let offer = owner.offer(text);
        await_read(&env, &yaku, &owner, offer, what);
    }
    env.keep_owner(owner);

    // A new line still gets through, so the daemon was polling all along.
    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the new line's notification", || {
        notified(&env, &best_option(LINE2))
    });
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned(), LINE2.to_owned()],
        "one request per distinct line"
    );
    assert_eq!(summaries(&env), vec![best_option(LINE), best_option(LINE2)]);
}

#[test]
fn a_line_whose_translation_failed_is_sent_again_when_copied_again() {
    let env = DesktopEnv::start();
    // No usable option in the answer: the line fails.
    env.provider.translate_with(|_| Vec::new());
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(100),
    );
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(20), "the failed line in the log", || {
        env.log().contains("no provider could translate the line")
    });
    let failed_requests = env.provider.count();
    assert!(failed_requests >= 1);

    env.provider
        .translate_with(|line| vec![best_option(line), second_option(line)]);
    let owner = env.clipboard_owner();
    let other = owner.offer("Meet me on the roof after school tomorrow.");
    await_read(&env, &yaku, &owner, other, "other text");
    let again = owner.offer(LINE);
    await_read(&env, &yaku, &owner, again, "the failed line again");
    env.keep_owner(owner);
    await_state(
        &env,
        &yaku,
        secs(10),
        "the retried line's notification",
        || notified(&env, &best_option(LINE)),
    );
    let lines = env.provider.lines();
    assert!(
        lines.len() > failed_requests && lines.iter().all(|l| l == LINE),
        "the failed line was sent again: {lines:?}"
    );
}

#[test]
fn each_rejection_is_one_info_log_line_with_gate_and_length_and_status_counts_them_by_gate() {
    let env = DesktopEnv::start();
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(100),
    );
    let english = "Meet me on the roof after school tomorrow.";
    // Past max_chars (500), in distinct kanji (collapse_repeats would shorten a repeated
    // phrase): the length gate.
    let long: String = (0..560u32)
        .filter_map(|i| char::from_u32(0x4E00 + i))
        .collect();
    let owner = env.clipboard_owner();
    for (what, text) in [
        ("an English sentence", english),
        ("a line too long", long.as_str()),
        (
            "another English sentence",
            "See you at the station at nine.",
        ),
    ] {
        let offer = owner.offer(text);
        await_read(&env, &yaku, &owner, offer, what);
    }
    env.keep_owner(owner);
    let rejections = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("clipboard text rejected"))
            .map(str::to_owned)
            .collect()
    };
    // The harness's start-up probe may be rejected too, or taken as already seen.
    await_state(&env, &yaku, secs(5), "the rejections in the log", || {
        rejections(&env.log()).len() >= 3
    });
    let log = env.log();
    let lines = rejections(&log);
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" INFO ") && l.contains("gate=")),
        "{lines:#?}"
    );
    let english_len = format!("chars={}", english.chars().count());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("gate=\"wrong_script\"") || l.contains("gate=wrong_script"))
            && lines.iter().any(|l| l.contains(&english_len)),
        "the gate and the length of the English sentence: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("too_long") && l.contains("chars=560")),
        "{lines:#?}"
    );
    assert!(!log.contains(english) && !log.contains(&long), "{log}");

    let (st, out, err) = env.yaku_command(&["status", "--json"]);
    assert!(st.success(), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let by_gate = &v["rejected_by_gate"];
    assert_eq!(by_gate["too_long"], 1, "{v}");
    assert!(by_gate["wrong_script"].as_u64().unwrap() >= 2, "{v}");
    let total: u64 = by_gate
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(Some(total), v["lines"]["rejected"].as_u64(), "{v}");
    let (st, out, _) = env.yaku_command(&["status"]);
    assert!(st.success());
    assert!(
        out.lines()
            .any(|l| l.starts_with("rejected: ") && l.contains("too_long 1")),
        "{out}"
    );
}

#[test]
fn started_from_a_terminal_the_log_file_has_no_ansi_codes_though_the_terminal_copy_has() {
    let env = DesktopEnv::start();
    let config = env.write_config(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    let mut terminal = pty::Pty::spawn(env.yaku_run_command(&config));
    terminal.expect("watching the clipboard", secs(10));
    // The log line can come before the first read, which takes what it finds as seen: copy
    // only once that read is done.
    let owner = env.clipboard_owner();
    let probe = owner.offer("yaku desktop test: is the daemon polling the clipboard?");
    wait_until(
        secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
        || env.report(),
    );
    env.keep_owner(owner);
    env.set_clipboard(LINE);
    // The translated line is logged inside the line's span, whose fields the terminal
    // layer formats with ANSI italics.
    wait_until(
        secs(10),
        "the translated line in the log file",
        || env.log().contains("translated"),
        || env.report(),
    );
    terminal.expect("translated", secs(5));
    let log = env.log();
    assert!(log.contains("line{line_id=1}: translated"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI codes in the log file: {log:?}");
    assert!(
        terminal.transcript().contains('\x1b'),
        "the terminal copy is coloured (else this test shows nothing)"
    );
    terminal.send_raw(&[3]); // Ctrl-C
    assert!(terminal.wait(secs(5)).success());
}

#[test]
fn what_is_on_the_clipboard_at_start_is_taken_as_seen_and_never_sent() {
    let env = DesktopEnv::start();
    let owner = env.clipboard_owner();
    let before = owner.offer(LINE);
    let yaku = env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    await_read(
        &env,
        &yaku,
        &owner,
        before,
        "the line copied before the start",
    );
    env.keep_owner(owner);
    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the new line's notification", || {
        notified(&env, &best_option(LINE2))
    });
    assert_eq!(
        env.provider.lines(),
        vec![LINE2.to_owned()],
        "only the line copied after the start is sent"
    );
}

#[test]
fn line_ids_in_the_log_go_on_from_the_history_ids() {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url()).poll_interval_ms(100);
    let path = env.write_config(&config);
    let path = path.to_str().unwrap();
    for text in ["一つ目の行です。", "二つ目の行です。"] {
        let (st, out, err) = env.yaku_command(&["translate", "--config", path, text]);
        assert!(st.success(), "{out}{err}");
    }
    let yaku = start_yaku(&env, &config);
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });
    let log = env.log();
    assert!(
        log.contains("line accepted line_id=3 ") && log.contains("line{line_id=3}: translated"),
        "two lines are in the history before this one:\n{log}"
    );
}

#[test]
fn a_restart_or_reload_never_gives_back_requests_spent_today_and_status_agrees_with_stats() {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url()).poll_interval_ms(100);
    let text = config.to_toml().replace(
        "requests_per_minute = 0\n",
        "requests_per_minute = 0\nrequests_per_day = 100\n",
    );
    let path = env.write_config_text(&text);
    let p = path.to_str().unwrap();
    for line in ["一つ目の行です。", "二つ目の行です。", "三つ目の行です。"]
    {
        let (st, out, err) = env.yaku_command(&["translate", "--config", p, line]);
        assert!(st.success(), "{out}{err}");
    }
    let yaku = env.spawn_yaku_at(&path);
    let status = || {
        let (st, out, _) = env.yaku_command(&["status", "--json"]);
        st.success()
            .then(|| serde_json::from_str::<serde_json::Value>(&out).unwrap())
    };
    await_state(&env, &yaku, secs(10), "yaku status to answer", || {
        status().is_some()
    });
    let left = |v: serde_json::Value| v["providers"][0]["daily_remaining"].clone();
    assert_eq!(
        left(status().unwrap()),
        97,
        "three requests were made today"
    );
    let (st, out, err) = env.yaku_command(&["stats", "--since", "24h", "--json", "--config", p]);
    assert!(st.success(), "{out}{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["providers"][0]["requests"], 3, "{stats}");

    let (st, out, err) = env.yaku_command(&["reload"]);
    assert!(st.success(), "{out}{err}");
    assert_eq!(left(status().unwrap()), 97, "the reload gave requests back");
    let (_, out, _) = env.yaku_command(&["status"]);
    assert!(out.contains("97 requests left today"), "{out}");
}

#[test]
fn burst_of_ten_lines_shows_the_last_line_last_with_few_requests() {
    let env = DesktopEnv::start();
    env.provider.set_delay(Duration::from_millis(300));
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(20),
    );

    let numbers = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
    let lines: Vec<String> = numbers
        .iter()
        .map(|n| format!("{n}番目の台詞が画面に出ました。"))
        .collect();
    let last = lines.last().unwrap().clone();
    let owner = env.clipboard_owner();
    let start = Instant::now();
    let mut offers = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // The burst's pace: one line every 10 ms, as a text hooker does while skipping.
        let due = start + Duration::from_millis(10 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        offers.push(owner.offer(line));
    }
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "the burst took {:?}",
        start.elapsed()
    );

    await_state(&env, &yaku, secs(5), "the last line's notification", || {
        notified(&env, &best_option(&last))
    });
    // Nothing may come after it: wait until the provider has answered everything and no
    // notification has arrived for a second.
    wait_quiet(
        secs(15),
        secs(1),
        "the provider and the notifications",
        || {
            let last_notice = env.notifications().last().map(|n| n.seen_at);
            env.provider.last_activity().max(last_notice)
        },
    );

    // The daemon (polling every 20 ms) saw several lines of the burst, so the queue had
    // lines to replace while the first request was out.
    let read = offers
        .iter()
        .filter(|&&o| owner.served(o).text >= 1)
        .count();
    assert!(
        read >= 3,
        "the daemon read only {read} of the burst's 10 lines: too few to exercise the queue"
    );
    let requested = env.provider.lines();
    assert!(
        !requested.is_empty() && requested.len() <= 4,
        "a burst of 10 lines made {} requests: {requested:?}",
        requested.len()
    );
    assert_eq!(
        requested.last(),
        Some(&last),
        "the last request is for the last line: {requested:?}"
    );
    let shown = env.yaku_notifications();
    assert_eq!(
        shown.last().map(|n| n.summary.clone()),
        Some(best_option(&last)),
        "shown: {:?}",
        summaries(&env)
    );
    for pair in shown.windows(2) {
        assert_eq!(
            Some(pair[1].replaces_id),
            pair[0].returned_id,
            "each notification replaces the previous one: {:?}",
            shown
                .iter()
                .map(|n| (n.replaces_id, n.returned_id))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn clipboard_is_picked_up_again_after_the_x_server_restarts() {
    let mut env = DesktopEnv::start();
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(100),
    );
    env.set_clipboard(LINE);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the first line's notification",
        || notified(&env, &best_option(LINE)),
    );
    let pid = yaku.pid();

    env.kill_x();
    // The display stays away for a second: several polls fail meanwhile.
    std::thread::sleep(secs(1.0));
    assert!(
        yaku.is_running(),
        "yaku exited when the X server went away\n{}",
        env.report()
    );
    env.restart_x();
    let back = Instant::now();

    env.set_clipboard(LINE2);
    await_state(
        &env,
        &yaku,
        secs(10).saturating_sub(back.elapsed()),
        "the line copied after the X restart (10 s)",
        || notified(&env, &best_option(LINE2)),
    );
    assert!(yaku.is_running());
    assert_eq!(yaku.pid(), pid, "the same daemon");
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned(), LINE2.to_owned()]
    );
}

#[test]
fn daemon_started_without_a_display_picks_up_the_clipboard_once_x_is_there() {
    let mut env = DesktopEnv::start();
    env.kill_x();
    let yaku = env.spawn_yaku(&YakuConfig::new(&env.provider.url()).poll_interval_ms(100));
    await_state(&env, &yaku, secs(10), "the daemon's lock file", || {
        env.lock_path().exists()
    });
    // No display for a second: the daemon keeps retrying.
    std::thread::sleep(secs(1.0));
    assert!(
        yaku.is_running(),
        "yaku exited without a display\n{}",
        env.report()
    );

    env.restart_x();
    let back = Instant::now();
    // Nothing on the clipboard yet is read as a change; this line is.
    env.set_clipboard(LINE);
    await_state(
        &env,
        &yaku,
        secs(10).saturating_sub(back.elapsed()),
        "the line copied once X is there (10 s)",
        || notified(&env, &best_option(LINE)),
    );
}

#[test]
fn without_a_notification_server_lines_are_still_translated_and_the_warning_is_given_once() {
    let mut env = DesktopEnv::start();
    env.stop_notification_server();
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(50),
    );

    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the first line's request", || {
        requested(&env, LINE)
    });
    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the second line's request", || {
        requested(&env, LINE2)
    });
    await_state(
        &env,
        &yaku,
        secs(5),
        "the second line's translation in the log",
        || env.log().contains(&best_option(LINE2)),
    );
    // A second warning would come with the second line: give it time to show up in the log.
    let (mut len, mut changed) = (env.log().len(), Instant::now());
    wait_quiet(secs(10), secs(0.5), "the log file", || {
        let now = env.log().len();
        if now != len {
            (len, changed) = (now, Instant::now());
        }
        Some(changed)
    });
    assert!(yaku.is_running());
    let log = env.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.to_lowercase().contains("notif"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning about the missing notification server, for two lines:\n{log}"
    );
    assert!(
        warnings[0].contains("no notification server"),
        "the failure is told apart as a missing server (NotifyError::NoServer): {}",
        warnings[0]
    );
}

fn stops_within_2s_with_exit_0_during_a_hanging_request(sig: i32, name: &str) {
    let env = DesktopEnv::start();
    env.provider.hang();
    let yaku = start_yaku(
        &env,
        &YakuConfig::new(&env.provider.url()).poll_interval_ms(50),
    );
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the request (which hangs)", || {
        requested(&env, LINE)
    });

    yaku.signal(sig);
    let sent = Instant::now();
    let status = yaku.wait_exit(secs(2));
    let Some(status) = status else {
        panic!("yaku still running 2 s after {name}\n{}", env.report());
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after {name} ({:?}): {status}\n{}",
        sent.elapsed(),
        env.report()
    );
}

#[test]
fn sigterm_during_a_hanging_request_exits_0_within_2s() {
    stops_within_2s_with_exit_0_during_a_hanging_request(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_during_a_hanging_request_exits_0_within_2s() {
    stops_within_2s_with_exit_0_during_a_hanging_request(libc::SIGINT, "SIGINT");
}

#[test]
fn second_instance_says_already_running_with_the_pid_and_exits_0() {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url());
    let first = start_yaku(&env, &config);

    let second = env.spawn_yaku(&config);
    let Some(status) = second.wait_exit(secs(5)) else {
        panic!("a second `yaku run` did not exit\n{}", env.report());
    };
    let said = format!("{}{}", second.stdout(), second.stderr());
    assert_eq!(status.code(), Some(0), "{said}");
    let expected = format!("yaku is already running (pid {})", first.pid());
    assert!(
        said.contains(&expected),
        "expected {expected:?}, got:\n{said}"
    );
    assert!(
        first.is_running(),
        "the first daemon stopped\n{}",
        env.report()
    );
}

// ---- clipboard change events (`[clipboard] watch`) ----

const LINE3: &str = "明日の放課後、屋上で待っています。";

/// Waits until the daemon has read `offer` once (an event source reads each copy once).
fn await_read_once(env: &DesktopEnv, yaku: &Yaku, owner: &ClipboardOwner, offer: u64, what: &str) {
    await_state(
        env,
        yaku,
        secs(5),
        &format!("the daemon to read {what}"),
        || {
            let served = owner.served(offer);
            served.text >= 1 || served.targets >= 1 && served.hint >= 1
        },
    );
}

fn status_json(env: &DesktopEnv) -> serde_json::Value {
    let (st, out, err) = env.yaku_command(&["status", "--json"]);
    assert!(st.success(), "{out} {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn in_event_mode_a_copy_reaches_the_provider_within_50_ms_and_status_and_check_say_events() {
    let env = DesktopEnv::start();
    // Polling once a second could not be this fast: only the change event can.
    let config = YakuConfig::new(&env.provider.url())
        .watch("events")
        .poll_interval_ms(1000);
    let yaku = start_yaku(&env, &config);
    let owner = env.clipboard_owner();
    let mut seen = Vec::new();
    for i in 0..5 {
        let line = format!(
            "{}番目の台詞です、先輩。",
            ["一", "二", "三", "四", "五"][i]
        );
        let copied = Instant::now();
        owner.offer(&line);
        await_state(&env, &yaku, secs(5), "the line's request", || {
            requested(&env, &line)
        });
        let request = env
            .provider
            .requests()
            .into_iter()
            .find(|r| r.line.as_deref() == Some(line.as_str()))
            .unwrap();
        seen.push(request.at.saturating_duration_since(copied));
        await_state(&env, &yaku, secs(5), "the line's notification", || {
            notified(&env, &best_option(&line))
        });
    }
    env.keep_owner(owner);
    seen.sort();
    eprintln!("copy → request in event mode: {seen:?}");
    assert!(
        seen[2] <= Duration::from_millis(50),
        "the median copy took {:?} to reach the provider: {seen:?}",
        seen[2]
    );

    let v = status_json(&env);
    assert_eq!(v["watch"], "events", "{v}");
    let (st, out, _) = env.yaku_command(&["status"]);
    assert!(st.success());
    assert!(
        out.contains("watching the clipboard (change events)"),
        "{out}"
    );
    let config_path = yaku.config_path.to_str().unwrap();
    let (_, out, err) =
        env.yaku_command(&["check", "--offline", "--json", "--config", config_path]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(v["clipboard"]["watch"], "events", "{v}");
    assert_eq!(v["clipboard"]["ok"], true, "{v}");
}

#[test]
fn in_event_mode_repeats_and_own_output_are_not_sent_and_a_burst_ends_on_the_last_line() {
    let env = DesktopEnv::start();
    env.provider.set_delay(Duration::from_millis(300));
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()).watch("events"));
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });

    let owner = env.clipboard_owner();
    for (what, text) in [
        ("the same line from a new owner", LINE.to_owned()),
        ("the best option copied back", best_option(LINE)),
        ("the second option copied back", second_option(LINE)),
    ] {
        let offer = owner.offer(&text);
        await_read_once(&env, &yaku, &owner, offer, what);
    }
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned()],
        "nothing new was sent"
    );

    let lines: Vec<String> = (1..=10)
        .map(|n| format!("{n}番目の台詞が画面に出ました。"))
        .collect();
    let last = lines.last().unwrap().clone();
    let start = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        // One line every 10 ms, as a text hooker does while skipping.
        let due = start + Duration::from_millis(10 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        owner.offer(line);
    }
    env.keep_owner(owner);
    await_state(
        &env,
        &yaku,
        secs(10),
        "the last line's notification",
        || notified(&env, &best_option(&last)),
    );
    wait_quiet(
        secs(15),
        secs(1),
        "the provider and the notifications",
        || {
            let last_notice = env.notifications().last().map(|n| n.seen_at);
            env.provider.last_activity().max(last_notice)
        },
    );
    let requested = env.provider.lines();
    let burst = &requested[1..];
    assert!(
        !burst.is_empty() && burst.len() <= 4,
        "a burst of 10 lines made {} requests: {burst:?}",
        burst.len()
    );
    assert_eq!(burst.last(), Some(&last), "{requested:?}");
    assert_eq!(
        summaries(&env).last(),
        Some(&best_option(&last)),
        "the screen ends on the last line"
    );
}

#[test]
fn in_event_mode_nothing_is_read_while_paused_and_the_x_server_restart_is_survived() {
    let mut env = DesktopEnv::start();
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()).watch("events"));
    env.set_clipboard(LINE);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the first line's notification",
        || notified(&env, &best_option(LINE)),
    );

    let (st, _, err) = env.yaku_command(&["pause"]);
    assert!(st.success(), "{err}");
    let owner = env.clipboard_owner();
    let private = owner.offer("先輩への秘密の手紙です。");
    // Proving a read did not happen takes a wait: five of the daemon's 250 ms turns.
    std::thread::sleep(secs(1.25));
    assert_eq!(
        owner.served(private).targets,
        0,
        "the clipboard was read while paused"
    );
    let (st, _, err) = env.yaku_command(&["resume"]);
    assert!(st.success(), "{err}");
    env.keep_owner(owner);
    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the line after resume", || {
        notified(&env, &best_option(LINE2))
    });

    let pid = yaku.pid();
    env.kill_x();
    std::thread::sleep(secs(1.0));
    assert!(
        yaku.is_running(),
        "yaku exited with the X server\n{}",
        env.report()
    );
    env.restart_x();
    let back = Instant::now();
    // A change event from the new server: the daemon selected them again on reconnecting.
    env.set_clipboard(LINE3);
    await_state(
        &env,
        &yaku,
        secs(10).saturating_sub(back.elapsed()),
        "the line copied after the X restart (10 s)",
        || notified(&env, &best_option(LINE3)),
    );
    assert_eq!(yaku.pid(), pid, "the same daemon");
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_owned(), LINE2.to_owned(), LINE3.to_owned()],
        "the line copied while paused was never sent"
    );
    assert_eq!(status_json(&env)["watch"], "events");
}

/// Both providers fail a line; once they are back, the identical text copied again by a new
/// owner, with nothing copied in between, is asked for again and shown.
fn identical_recopy_after_a_failure_is_translated(watch: &str) {
    let env = DesktopEnv::start();
    env.provider.translate_with(|_| Vec::new());
    let mut config = YakuConfig::new(&env.provider.url())
        .watch(watch)
        .poll_interval_ms(100);
    config.deadline_secs = 5;
    let backup = format!(
        r#"
[[providers]]
name = "backup"
kind = "openai"
model = "test-model"
base_url = "{}"
requests_per_minute = 0
timeout_secs = 5
json_mode = true
"#,
        env.provider.url()
    );
    let path = env.write_config_text(&(config.to_toml() + &backup));
    let yaku = env.spawn_yaku_at(&path);
    let owner = env.clipboard_owner();
    let probe = owner.offer("yaku desktop test: is the daemon reading the clipboard?");
    await_state(&env, &yaku, secs(10), "the daemon's first read", || {
        owner.served(probe).targets >= 1
    });
    env.keep_owner(owner);

    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(20), "the outage notification", || {
        notified(&env, "yaku could not translate")
    });
    let failed = env.provider.count();
    assert!(failed >= 2, "both providers were asked: {failed}");

    env.provider
        .translate_with(|line| vec![best_option(line), second_option(line)]);
    env.set_clipboard(LINE);
    await_state(
        &env,
        &yaku,
        secs(10),
        "the retried line's notification",
        || notified(&env, &best_option(LINE)),
    );
    let lines = env.provider.lines();
    assert!(
        lines.len() > failed && lines.iter().all(|l| l == LINE),
        "the same line was asked for again: {lines:?}"
    );
}

#[test]
fn polling_the_identical_line_copied_again_after_a_failure_is_translated() {
    identical_recopy_after_a_failure_is_translated("poll");
}

#[test]
fn in_event_mode_the_identical_line_copied_again_after_a_failure_is_translated() {
    identical_recopy_after_a_failure_is_translated("events");
}

#[test]
fn without_xfixes_auto_polls_and_says_so_once_and_events_mode_says_why_it_cannot_read() {
    let env = DesktopEnv::start();
    let proxy = desktop::xproxy::XProxy::start(env.display_number(), "XFIXES");
    let display = proxy.display();
    let vars = [("DISPLAY", display.as_str())];
    let config = YakuConfig::new(&env.provider.url())
        .poll_interval_ms(100)
        .watch("auto");
    let yaku = start_yaku_env(&env, &config, &vars);
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });
    env.set_clipboard(LINE2);
    await_state(
        &env,
        &yaku,
        secs(5),
        "the second line's notification",
        || notified(&env, &best_option(LINE2)),
    );
    let log = env.log();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("no XFixes")).collect();
    assert_eq!(said.len(), 1, "one log line about the fallback:\n{log}");
    assert_eq!(status_json(&env)["watch"], "poll");

    let events = env.write_config(&YakuConfig::new(&env.provider.url()).watch("events"));
    let args = [
        "check",
        "--offline",
        "--json",
        "--config",
        events.to_str().unwrap(),
    ];
    let (_, out, err) = env.yaku_command_env(&args, &vars);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(v["clipboard"]["ok"], false, "{v}");
    let detail = v["clipboard"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("XFixes") && detail.contains("watch"),
        "{detail}"
    );
    // The same check on the real server: events are there.
    let (_, out, _) = env.yaku_command(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clipboard"]["watch"], "events", "{v}");
}

// ---- [lookahead] ----

/// A short script: every line distinct and Japanese enough for the gates.
const SCRIPT: [&str; 14] = [
    "朝の教室は静かだった。",
    "春香：「おはよう、今日は早いね。」",
    "窓の外では桜が散っている。",
    "先生がまだ来ていない。",
    "「宿題、やってきた？」と彼女が聞いた。",
    "僕は黙って首を振った。",
    "「やっぱりね」と春香は笑った。",
    "チャイムが鳴り、皆が席に着いた。",
    "扉が開いて先生が入ってきた。",
    "今日は転校生が来るらしい。",
    "教室がざわめき始めた。",
    "僕の隣の席が空いている。",
    "廊下から足音が聞こえてくる。",
    "そして、扉が再び開いた。",
];

/// `yaku run` with `[lookahead]` reading SCRIPT (as a file beside the config), polling the
/// clipboard once its first read is seen.
fn start_yaku_with_script(env: &DesktopEnv) -> Yaku {
    let script = env.dir.path().join("config/script.txt");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, SCRIPT.join("\n") + "\n").unwrap();
    let config = YakuConfig::new(&env.provider.url()).to_toml()
        + "\n[lookahead]\nscript = \"script.txt\"  # relative to the config file\nlines = 5\n";
    start_yaku_at(env, &env.write_config_text(&config))
}

/// `yaku run --config PATH`, polling the clipboard once its first read is seen.
fn start_yaku_at(env: &DesktopEnv, path: &std::path::Path) -> Yaku {
    let yaku = env.spawn_yaku_at(path);
    let owner = env.clipboard_owner();
    let probe = owner.offer("yaku desktop test: is the daemon polling the clipboard?");
    await_state(
        env,
        &yaku,
        secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
    );
    env.keep_owner(owner);
    yaku
}

#[test]
fn copying_a_script_line_asks_for_the_next_five_in_one_batch_and_copying_one_of_them_is_a_cache_hit()
 {
    let env = DesktopEnv::start();
    let yaku = start_yaku_with_script(&env);
    let k = 3;
    env.set_clipboard(SCRIPT[k]);
    await_state(&env, &yaku, secs(5), "line k's translation", || {
        notified(&env, &best_option(SCRIPT[k]))
    });
    await_state(&env, &yaku, secs(10), "one look-ahead batch", || {
        !env.provider.batches().is_empty()
    });
    let want: Vec<String> = SCRIPT[k + 1..=k + 5]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        env.provider.batches(),
        vec![want],
        "lines k+1..k+5 in one request"
    );
    await_state(&env, &yaku, secs(10), "status: 5 lines ready ahead", || {
        status_json(&env)["lookahead"]["ready_ahead"] == 5
    });
    let st = status_json(&env);
    assert_eq!(st["lookahead"]["position"], k + 1, "{st}");
    assert_eq!(st["lookahead"]["lines"], SCRIPT.len(), "{st}");
    assert_eq!(st["lookahead"]["in_flight"], false, "{st}");
    let (_, text, _) = env.yaku_command(&["status"]);
    assert!(
        text.contains(&format!("look-ahead: line {} of {}", k + 1, SCRIPT.len())),
        "{text}"
    );

    let before = env.provider.count();
    env.set_clipboard(SCRIPT[k + 2]);
    await_state(
        &env,
        &yaku,
        secs(5),
        "line k+2's translation, from the cache",
        || notified(&env, &best_option(SCRIPT[k + 2])),
    );
    let later = &env.provider.requests()[before..];
    assert!(
        later.iter().all(|r| r.line.is_none()
            && !r
                .batch
                .as_ref()
                .is_some_and(|b| b.iter().any(|l| l == SCRIPT[k + 2]))),
        "no request for line k+2: {:?}",
        later
            .iter()
            .map(|r| (&r.line, &r.batch))
            .collect::<Vec<_>>()
    );
    assert!(!requested(&env, SCRIPT[k + 2]));
    await_state(&env, &yaku, secs(10), "the cache hit in the log", || {
        env.log().lines().any(|l| l.contains("cached"))
    });

    // Stats count the look-ahead's request apart from the live one.
    let config = yaku.config_path.display().to_string();
    let (st, out, err) = env.yaku_command(&["stats", "--json", "--config", &config]);
    assert!(st.success(), "{out} {err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fake = &stats["providers"][0];
    assert_eq!(fake["provider"], "fake", "{stats}");
    assert!(fake["lookahead_requests"].as_u64() >= Some(1), "{stats}");
    assert_eq!(
        fake["requests"].as_u64().unwrap() - fake["lookahead_requests"].as_u64().unwrap(),
        1,
        "one live request (line k): {stats}"
    );
}

#[test]
fn a_copied_line_is_not_delayed_by_a_look_ahead_batch_in_flight() {
    let env = DesktopEnv::start();
    let yaku = start_yaku_with_script(&env);
    env.provider.set_batch_delay(secs(8));
    env.set_clipboard(SCRIPT[0]);
    await_state(&env, &yaku, secs(5), "line 0's translation", || {
        notified(&env, &best_option(SCRIPT[0]))
    });
    await_state(
        &env,
        &yaku,
        secs(10),
        "a look-ahead batch in flight",
        || !env.provider.batches().is_empty(),
    );
    let batch_answers = env
        .provider
        .requests()
        .iter()
        .find(|r| r.batch.is_some())
        .map(|r| r.answer_at)
        .unwrap();
    assert_eq!(status_json(&env)["lookahead"]["in_flight"], true);

    env.set_clipboard(LINE);
    let copied = Instant::now();
    await_state(
        &env,
        &yaku,
        secs(5),
        "the copied line's translation while the batch is in flight",
        || notified(&env, &best_option(LINE)),
    );
    let n = env
        .yaku_notifications()
        .into_iter()
        .find(|n| n.summary == best_option(LINE))
        .unwrap();
    assert!(
        n.seen_at < batch_answers,
        "shown before the batch's answer was due"
    );
    assert!(
        n.seen_at.duration_since(copied) <= secs(3),
        "not delayed: {:?}",
        n.seen_at.duration_since(copied)
    );
    assert!(requested(&env, LINE));
}

#[test]
fn a_missing_lookahead_script_is_a_warning_and_lines_are_translated_as_before() {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url()).to_toml()
        + "\n[lookahead]\nscript = \"no-such-script.txt\"\n";
    let yaku = start_yaku_at(&env, &env.write_config_text(&config));
    await_state(
        &env,
        &yaku,
        secs(10),
        "the warning about the script",
        || {
            env.log()
                .lines()
                .any(|l| l.contains("WARN") && l.contains("look-ahead is off"))
        },
    );
    assert!(yaku.is_running());
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's translation", || {
        notified(&env, &best_option(LINE))
    });
    assert!(status_json(&env)["lookahead"].is_null());
}

#[test]
fn a_saved_script_is_read_again_without_a_command() {
    let env = DesktopEnv::start();
    let yaku = start_yaku_with_script(&env);
    assert_eq!(status_json(&env)["lookahead"]["lines"], SCRIPT.len());
    // A save before the watch is set up would be missed (and the test with it).
    await_state(&env, &yaku, secs(10), "the file watch set up", || {
        env.log()
            .contains("watching the config files for saved edits")
    });
    let script = env.dir.path().join("config/script.txt");
    std::fs::write(&script, SCRIPT[..4].join("\n") + "\n").unwrap();
    await_state(&env, &yaku, secs(10), "the saved script in status", || {
        status_json(&env)["lookahead"]["lines"] == 4
    });
    // The new script's lines are looked ahead: copying its first asks for the other three.
    env.set_clipboard(SCRIPT[0]);
    await_state(&env, &yaku, secs(10), "one look-ahead batch", || {
        !env.provider.batches().is_empty()
    });
    assert_eq!(env.provider.batches()[0], SCRIPT[1..4].to_vec());
}

/// Context switches of yaku's clipboard watch thread so far (voluntary and involuntary).
fn watch_thread_switches(yaku: &Yaku) -> u64 {
    let tasks = format!("/proc/{}/task", yaku.pid());
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "yaku-clipboard" {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[test]
fn in_auto_mode_an_x_server_with_xfixes_is_watched_by_events_and_the_idle_watch_thread_is_not_woken()
 {
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url()).watch("auto");
    let yaku = start_yaku(&env, &config);
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the line's notification", || {
        notified(&env, &best_option(LINE))
    });
    let v = status_json(&env);
    assert_eq!(v["watch"], "events", "{v}");
    // Polling at 250 ms would wake the thread at least 8 times in 2 s; waiting for events it
    // sleeps in poll(2) until the next owner change.
    let before = watch_thread_switches(&yaku);
    assert!(before > 0, "no yaku-clipboard thread found");
    std::thread::sleep(secs(2));
    let woken = watch_thread_switches(&yaku) - before;
    assert!(
        woken <= 1,
        "the idle watch thread was woken {woken} times in 2 s"
    );
    // And it still wakes for a copy.
    env.set_clipboard(LINE2);
    await_state(&env, &yaku, secs(5), "the next line's notification", || {
        notified(&env, &best_option(LINE2))
    });
}

#[test]
fn in_event_mode_a_line_copied_after_a_text_too_large_to_read_is_seen_at_once() {
    let env = DesktopEnv::start();
    let yaku = start_yaku(&env, &YakuConfig::new(&env.provider.url()).watch("events"));
    // Over max_chars × 4 bytes: not read at all, and the connection is replaced afterwards.
    let huge: String = (0..800u32)
        .filter_map(|i| char::from_u32(0x4E00 + i))
        .collect();
    let owner = env.clipboard_owner();
    let offer = owner.offer(&huge);
    await_read_once(&env, &yaku, &owner, offer, "the oversized text's targets");
    await_state(&env, &yaku, secs(5), "the rejection in the log", || {
        env.log().contains("clipboard text rejected")
    });
    env.keep_owner(owner);
    // Well within the longest wait for an event (30 s): the new connection listens at once.
    let copied = Instant::now();
    env.set_clipboard(LINE);
    await_state(&env, &yaku, secs(5), "the next line's request", || {
        requested(&env, LINE)
    });
    eprintln!(
        "oversized, then a copy: requested after {:?}",
        copied.elapsed()
    );
    assert!(env.provider.lines().iter().all(|l| l == LINE));
}
