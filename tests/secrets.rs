//! Secrets never leak: an API key never appears in a log file, stderr, `--json` output, a
//! notification, an error message or a panic message, whatever the command and whatever the
//! provider does with it (401, a 400 that echoes the key, 429, 5xx, a timeout); Gemini's key
//! travels only in its header; a key in a file others can read is refused with the chmod fix;
//! and secret-shaped clipboard text never reaches a provider while real game lines do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hardening/mod.rs"]
mod hardening;

#[allow(unused_imports)]
#[path = "desktop/mod.rs"]
mod desktop;

#[path = "hardening/desktop_ext.rs"]
mod desktop_ext;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hardening::bin::{self, Home, Out};
use hardening::echo::{EchoServer, Mode};
use hardening::replies::Format;
use hardening::rig::{self, Rig, ScriptProvider};
use yaku::core::breaker::BreakerConfig;
use yaku::core::chain::ChainConfig;
use yaku::core::clock::TokioClock;

/// Distinctive fake keys, shaped like real ones.
const GEMINI_KEY: &str = "AIzaSyHardeningGeminiKey0123456789abcde";
const GROQ_KEY: &str = "gsk_HardeningGroqKey0123456789abcdefghijklmnopqrstuvwxyz01";
const FILE_KEY: &str = "sk-hardening-file-key-0123456789abcdefghij";
const KEYS: [&str; 3] = [GEMINI_KEY, GROQ_KEY, FILE_KEY];

/// Every 12-character piece of `key` after its public prefix (`AIza`, `gsk_`, `sk-h`).
fn fragments(key: &str) -> Vec<&str> {
    (4..=key.len() - 12).map(|i| &key[i..i + 12]).collect()
}

/// Where in `text` a piece of one of the keys appears, if anywhere.
fn leak(text: &str) -> Option<String> {
    for key in KEYS {
        for piece in fragments(key) {
            if let Some(at) = text.find(piece) {
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .nth(60)
                    .map_or(0, |(i, _)| i);
                let end = (at + 80).min(text.len());
                let end = (end..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap();
                return Some(format!("{piece:?} in …{}…", &text[start..end]));
            }
        }
    }
    None
}

/// Every file under `dir` but those in `skip` (which hold keys on purpose), as (path, text).
fn files_under(dir: &Path, skip: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && !skip.contains(&p) {
                out.push((p.clone(), bin::read_lossy(&p)));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Every command, every failure, every place a key can come from
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeySource {
    /// `api_key_env`, set in the environment.
    Env,
    /// `yaku key set NAME` (credentials.toml beside the config).
    Credentials,
    /// `api_key = "..."` in the (0600) config file.
    ConfigFile,
}

fn key_line(source: KeySource, var: &str, key: &str) -> String {
    match source {
        KeySource::Env | KeySource::Credentials => format!("api_key_env = \"{var}\""),
        KeySource::ConfigFile => format!("api_key = \"{key}\""),
    }
}

/// Three providers: gemini and groq (keys from `source`), and a third whose key is always in
/// the config file.
fn config(source: KeySource, gemini: &str, groq: &str, file: &str, timeout_secs: u32) -> String {
    format!(
        r#"[translation]
deadline_secs = 3
reply_checks = false   # the echo server answers "EN <line>", mostly Japanese

[log]
include_text = true

[[providers]]
name = "gemini"
kind = "gemini"
model = "gemini-test"
base_url = "{gemini}"
{}
requests_per_minute = 0
timeout_secs = {timeout_secs}

[[providers]]
name = "groq"
kind = "openai"
model = "groq-test"
base_url = "{groq}"
{}
requests_per_minute = 0
timeout_secs = {timeout_secs}

[[providers]]
name = "filekey"
kind = "openai"
model = "local-test"
base_url = "{file}"
api_key = "{FILE_KEY}"
requests_per_minute = 0
timeout_secs = {timeout_secs}
"#,
        key_line(source, "GEMINI_API_KEY", GEMINI_KEY),
        key_line(source, "GROQ_API_KEY", GROQ_KEY),
    )
}

/// What one (key source, provider mode) run produced: every output and every file.
struct Run {
    source: KeySource,
    mode: Mode,
    outputs: Vec<(String, Out)>,
    files: Vec<(PathBuf, String)>,
    requests: usize,
    keys_sent: bool,
}

fn run_every_command(source: KeySource, mode: Mode) -> Run {
    let servers = [
        EchoServer::start(Format::Gemini, &[], mode),
        EchoServer::start(Format::OpenAi, &[], mode),
        EchoServer::start(Format::OpenAi, &[], mode),
    ];
    let home = Home::new();
    let cfg = home.write(
        "config/yaku/config.toml",
        &config(
            source,
            &servers[0].url(),
            &servers[1].url(),
            &servers[2].url(),
            1,
        ),
        0o600,
    );
    let c = cfg.display().to_string();
    let mut env = home.env();
    env.extend(bin::vars(&[("YAKU_LOG", "trace"), ("RUST_BACKTRACE", "1")]));
    let mut outputs = Vec::new();
    match source {
        KeySource::Env => env.extend(bin::vars(&[
            ("GEMINI_API_KEY", GEMINI_KEY),
            ("GROQ_API_KEY", GROQ_KEY),
        ])),
        KeySource::Credentials => {
            for (name, key) in [("gemini", GEMINI_KEY), ("groq", GROQ_KEY)] {
                let out = bin::yaku(
                    // Untested: some modes answer "unauthorized", which would store nothing.
                    &["key", "set", name, "--no-test", "--config", &c],
                    &env,
                    Some(&format!("{key}\n")),
                    Duration::from_secs(20),
                );
                assert_eq!(out.code, Some(0), "key set {name}: {}", out.all());
                outputs.push((format!("key set {name}"), out));
            }
        }
        KeySource::ConfigFile => {}
    }
    let line = "秘密は守られるか？";
    let commands: [&[&str]; 8] = [
        &["translate", "--config", &c, line],
        &["translate", "--json", "--config", &c, line],
        &["check", "--config", &c],
        &["check", "--json", "--config", &c],
        &["key", "list", "--config", &c],
        &["key", "list", "--json", "--config", &c],
        &["status", "--config", &c],
        &["config", "path", "--config", &c],
    ];
    for args in commands {
        let out = bin::yaku(args, &env, None, Duration::from_secs(30));
        assert!(
            out.code.is_some(),
            "`yaku {}` was killed after 30 s: {}",
            args.join(" "),
            out.all()
        );
        outputs.push((args.join(" "), out));
    }
    let skip = vec![cfg.clone(), cfg.with_file_name("credentials.toml")];
    let files = files_under(home.dir.path(), &skip);
    let seen: Vec<_> = servers.iter().flat_map(EchoServer::seen).collect();
    let keys_sent = seen.iter().any(|s| {
        s.headers
            .iter()
            .any(|(_, v)| KEYS.iter().any(|k| v.contains(k)))
    });
    Run {
        source,
        mode,
        outputs,
        files,
        requests: seen.len(),
        keys_sent,
    }
}

#[test]
fn no_command_prints_or_writes_a_key_whatever_the_provider_answers_and_wherever_the_key_is() {
    let sources = [
        KeySource::Env,
        KeySource::Credentials,
        KeySource::ConfigFile,
    ];
    let combos: Vec<(KeySource, Mode)> = sources
        .iter()
        .flat_map(|s| Mode::ALL.iter().map(move |m| (*s, *m)))
        .collect();
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = combos
            .iter()
            .map(|&(s, m)| scope.spawn(move || run_every_command(s, m)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut leaks = Vec::new();
    for run in &runs {
        let tag = format!("{:?}/{:?}", run.source, run.mode);
        assert!(
            run.requests > 0 && run.keys_sent,
            "{tag}: the providers got {} requests{}: nothing was tested",
            run.requests,
            if run.keys_sent { "" } else { " and no key" }
        );
        for (cmd, out) in &run.outputs {
            for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                if let Some(l) = leak(text) {
                    leaks.push(format!("{tag}: `yaku {cmd}` {stream}: {l}"));
                }
                if text.contains("panicked") {
                    leaks.push(format!("{tag}: `yaku {cmd}` panicked: {text}"));
                }
            }
        }
        for (path, text) in &run.files {
            if let Some(l) = leak(text) {
                leaks.push(format!("{tag}: file {}: {l}", path.display()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn gemini_sends_its_key_only_in_the_x_goog_api_key_header_and_groq_only_in_authorization() {
    let gemini = EchoServer::start(Format::Gemini, &[Mode::ServerError], Mode::Ok);
    let groq = EchoServer::start(Format::OpenAi, &[], Mode::Ok);
    let file = EchoServer::start(Format::OpenAi, &[], Mode::Ok);
    let home = Home::new();
    let cfg = home.write(
        "config/yaku/config.toml",
        &config(KeySource::Env, &gemini.url(), &groq.url(), &file.url(), 5),
        0o600,
    );
    let c = cfg.display().to_string();
    let mut env = home.env();
    env.extend(bin::vars(&[
        ("GEMINI_API_KEY", GEMINI_KEY),
        ("GROQ_API_KEY", GROQ_KEY),
    ]));
    for args in [
        vec!["translate", "--config", &c, "鍵はヘッダーだけ"],
        vec![
            "translate",
            "--provider",
            "gemini",
            "--config",
            &c,
            "鍵はヘッダーだけ",
        ],
        vec!["check", "--config", &c],
    ] {
        let out = bin::yaku(&args, &env, None, Duration::from_secs(30));
        assert!(out.code.is_some(), "{}", out.all());
    }
    let expect = [
        (&gemini, "x-goog-api-key", GEMINI_KEY.to_string()),
        (&groq, "authorization", format!("Bearer {GROQ_KEY}")),
        (&file, "authorization", format!("Bearer {FILE_KEY}")),
    ];
    for (server, header, value) in expect {
        let seen = server.seen();
        assert!(!seen.is_empty(), "{header}: no request");
        for s in &seen {
            assert!(
                !s.url.contains("key=") && leak(&s.url).is_none(),
                "a key in the URL: {}",
                s.url
            );
            assert!(leak(&s.body).is_none(), "a key in the body: {}", s.body);
            let carrying: Vec<&str> = s
                .headers
                .iter()
                .filter(|(_, v)| leak(v).is_some())
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(carrying, [header], "headers carrying a key in {s:?}");
            assert_eq!(
                s.headers.iter().find(|(k, _)| k == header).map(|(_, v)| v),
                Some(&value)
            );
        }
    }
}

#[test]
fn a_key_in_a_config_or_credentials_file_others_can_read_is_refused_with_the_chmod_fix() {
    let server = EchoServer::start(Format::OpenAi, &[], Mode::Ok);
    let url = server.url();
    let mut wrong = Vec::new();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o666, 0o606] {
        // The key in the config file.
        let home = Home::new();
        let text = format!(
            "[[providers]]\nname = \"local\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\napi_key = \"{FILE_KEY}\"\nrequests_per_minute = 0\n"
        );
        let cfg = home.write("config/yaku/config.toml", &text, mode);
        let c = cfg.display().to_string();
        let out = bin::yaku(
            &["translate", "--config", &c, "テスト"],
            &home.env(),
            None,
            Duration::from_secs(20),
        );
        let fix = format!("chmod 600 {c}");
        if out.code != Some(78)
            || !out.stderr.contains(&fix)
            || !out.stderr.contains("line 6")
            || !out.stderr.contains("api_key")
            || leak(&out.all()).is_some()
        {
            wrong.push(format!(
                "config mode {mode:o}: exit {:?}: {}",
                out.code,
                out.all()
            ));
        }

        // The key in credentials.toml.
        let home = Home::new();
        let text = format!(
            "[[providers]]\nname = \"local\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\napi_key_env = \"LOCAL_KEY\"\nrequests_per_minute = 0\n"
        );
        let cfg = home.write("config/yaku/config.toml", &text, 0o600);
        let creds = home.write(
            "config/yaku/credentials.toml",
            &format!("[keys]\nlocal = \"{FILE_KEY}\"\n"),
            mode,
        );
        let c = cfg.display().to_string();
        let fix = format!("chmod 600 {}", creds.display());
        for args in [
            vec!["translate", "--config", &c, "テスト"],
            vec!["key", "list", "--config", &c],
        ] {
            let out = bin::yaku(&args, &home.env(), None, Duration::from_secs(20));
            if out.code != Some(78) || !out.stderr.contains(&fix) || leak(&out.all()).is_some() {
                wrong.push(format!(
                    "credentials mode {mode:o}, `yaku {}`: exit {:?}: {}",
                    args[0],
                    out.code,
                    out.all()
                ));
            }
        }
    }
    // Private files are used: the key reaches the provider (in its header).
    for mode in [0o600, 0o400] {
        let home = Home::new();
        let text = format!(
            "[translation]\nreply_checks = false\n\n[[providers]]\nname = \"local\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\napi_key = \"{FILE_KEY}\"\nrequests_per_minute = 0\n"
        );
        let cfg = home.write("config/yaku/config.toml", &text, mode);
        let c = cfg.display().to_string();
        let out = bin::yaku(
            &["translate", "--config", &c, "テスト"],
            &home.env(),
            None,
            Duration::from_secs(20),
        );
        if out.code != Some(0) {
            wrong.push(format!("config mode {mode:o} was refused: {}", out.all()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The daemon, on a real desktop, through provider failures
// ---------------------------------------------------------------------------------------------

#[test]
fn the_daemon_never_logs_shows_or_stores_a_key_through_401_400_429_5xx_and_timeouts() {
    use desktop::DesktopEnv;
    use desktop::wait::secs;
    let env = DesktopEnv::start();
    let failures = [
        Mode::BadRequest,
        Mode::RateLimited,
        Mode::ServerError,
        Mode::ServerError,
        Mode::Timeout,
        Mode::Unauthorized,
    ];
    let gemini = EchoServer::start(Format::Gemini, &failures, Mode::Unauthorized);
    let groq = EchoServer::start(Format::OpenAi, &failures[1..], Mode::Unauthorized);
    let file = EchoServer::start(Format::OpenAi, &[Mode::ServerError], Mode::Unauthorized);
    // Short breaker periods, so that every failure is served before the keys are rejected.
    let toml = format!(
        "[clipboard]\npoll_interval_ms = 50\n\n[breaker]\nopen_secs = 1\nmax_open_secs = 1\n\n{}",
        config(KeySource::Env, &gemini.url(), &groq.url(), &file.url(), 1)
            .replace("deadline_secs = 3", "deadline_secs = 5")
            .replace(
                "api_key_env = \"GROQ_API_KEY\"",
                "api_key_env = \"GROQ_KEY_NOT_SET\""
            )
    );
    let cfg = desktop_ext::write_config(&env, &toml);
    // groq's key comes from `yaku key set`.
    let out = bin::yaku(
        &["key", "set", "groq", "--config", &cfg.display().to_string()],
        &desktop_ext::desktop_vars(&env),
        Some(&format!("{GROQ_KEY}\n")),
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    let yaku = desktop_ext::spawn_with_config(
        &env,
        &cfg,
        &[("GEMINI_API_KEY", GEMINI_KEY), ("YAKU_LOG", "trace")],
    );
    desktop_ext::await_polling(&env, &yaku);

    let lines: Vec<String> = (1..=8)
        .map(|i| format!("{i}行目、鍵は漏れない。"))
        .collect();
    let owner = env.clipboard_owner();
    for (i, line) in lines.iter().enumerate() {
        owner.offer(line.as_str());
        // Each line ends as failed (or translated) in the log; the last ones find every
        // provider disabled by its rejected key.
        desktop_ext::await_state(
            &env,
            &yaku,
            secs(15),
            &format!("line {} to finish", i + 1),
            || {
                let log = env.log();
                let done = log
                    .lines()
                    .filter(|l| {
                        l.contains("no provider could translate the line")
                            || l.contains(" translated ")
                    })
                    .count();
                done > i
            },
        );
    }
    env.keep_owner(owner);
    // The outage notification, with each provider's reason.
    desktop_ext::await_state(&env, &yaku, secs(5), "a notification", || {
        !env.yaku_notifications().is_empty()
    });
    yaku.signal(libc::SIGTERM);
    assert!(yaku.wait_exit(secs(5)).is_some(), "the daemon did not stop");

    let sent_keys = [&gemini, &groq, &file]
        .iter()
        .flat_map(|s| s.seen())
        .filter(|s| s.headers.iter().any(|(_, v)| leak(v).is_some()))
        .count();
    assert!(
        sent_keys >= 6,
        "only {sent_keys} requests carried a key: nothing was tested"
    );
    for (name, server) in [("gemini", &gemini), ("groq", &groq)] {
        let modes: Vec<Mode> = server.seen().iter().map(|s| s.mode).collect();
        for m in [
            Mode::RateLimited,
            Mode::ServerError,
            Mode::Timeout,
            Mode::Unauthorized,
        ] {
            assert!(modes.contains(&m), "{name} never answered {m:?}: {modes:?}");
        }
    }

    let mut leaks = Vec::new();
    for (what, text) in [
        ("stdout", yaku.stdout()),
        ("stderr", desktop_ext::Running::stderr(&yaku)),
    ] {
        if let Some(l) = leak(&text) {
            leaks.push(format!("daemon {what}: {l}"));
        }
    }
    for n in env.notifications() {
        if let Some(l) = leak(&format!("{} {}", n.summary, n.body)) {
            leaks.push(format!("notification: {l}"));
        }
    }
    let skip = vec![cfg.clone(), cfg.with_file_name("credentials.toml")];
    let files = files_under(env.dir.path(), &skip);
    assert!(
        files
            .iter()
            .any(|(p, t)| p.ends_with("yaku.db") || t.contains("line accepted")),
        "neither the log nor the history file was found"
    );
    for (path, text) in &files {
        if let Some(l) = leak(text) {
            leaks.push(format!("file {}: {l}", path.display()));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Secret-shaped clipboard text never leaves; game text always does
// ---------------------------------------------------------------------------------------------

/// (what is copied, the part that must never be sent).
const SECRETS: &[(&str, &str)] = &[
    ("hunter2", "hunter2"),
    ("P@ssw0rd!", "P@ssw0rd!"),
    (
        "correct horse battery staple",
        "correct horse battery staple",
    ),
    ("Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("qwerty123456", "qwerty123456"),
    ("パスワード：hunter2abc", "hunter2abc"),
    ("パスワード=Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("暗証番号：4821", "4821"),
    ("パスコード: 839201", "839201"),
    ("password: s3cr3t-value", "s3cr3t-value"),
    ("パスワードは Tr0ub4dor&3 だよ", "Tr0ub4dor&3"),
    ("Wi-Fiのパスワード: K7#mPq2xL9", "K7#mPq2xL9"),
    ("【重要】仮パスワード：Xk92-Lp07-Qz", "Xk92-Lp07-Qz"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
    (
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "アクセスキーはAKIAIOSFODNN7EXAMPLEです",
        "AKIAIOSFODNN7EXAMPLE",
    ),
    (
        "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
        "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
    ),
    (
        "APIキー：AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
        "SyDdI0hCZtE6vySjMm",
    ),
    (
        "gsk_4f8JkLmN2pQrStUvWxYz0123456789abcdefABCDEFGHIJKL",
        "4f8JkLmN2pQrStUvWxYz",
    ),
    (
        "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90",
        "Ab12Cd34Ef56Gh78Ij90",
    ),
    (
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd",
        "AbCdEfGhIjKlMnOpQrSt",
    ),
    (
        "sk-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1HgFeDcBa0987",
        "Zx9Yw8Vu7Ts6Rq5Po4Nm",
    ),
    (
        "キーはsk-proj-abcdefghijklmnopqrstuvwx です",
        "abcdefghijklmnopqrstuvwx",
    ),
    (
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "4eC39HqLyjWDarjtT1zdp7dc",
    ),
    (
        "rk_test_51HqLyjWDarjtT1zdp7dcAbCd",
        "51HqLyjWDarjtT1zdp7dcAbCd",
    ),
    (
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "16C7e42F292c6912E7710c",
    ),
    (
        "gho_16C7e42F292c6912E7710c838347Ae178B4b",
        "16C7e42F292c6912E7710c",
    ),
    (
        "このトークン ghp_26C7e42F292c6912E7710c838347Ae178B4a を使って",
        "26C7e42F292c6912E7710c",
    ),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
        "11ABCDEFG0123456789_abcdef",
    ),
    (
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "xoxp-123456789012-123456789012-123456789012-abcdef0123456789abcdef0123456789",
        "abcdef0123456789abcdef",
    ),
    (
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
    ),
    (
        "トークン：eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0YXJvIn0.c2lnbmF0dXJlLXZhbHVl",
        "eyJzdWIiOiJ0YXJvIn0",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq98ydcQ3ZGvG4IjS9Bpx1gRuaVQbJjRrSMRg6yUnGqg0Yo\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA7bq98ydcQ3ZGvG4I",
    ),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU",
    ),
    (
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIm0ZnlrYlzkJzKu3p7tPHHnVYzD4dGmiyQ\n-----END EC PRIVATE KEY-----",
        "MHcCAQEEIIm0ZnlrYlzkJzKu3p7t",
    ),
    (
        "秘密鍵です\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEF",
    ),
    (
        "5f4dcc3b5aa765d61d8327deb882cf99",
        "5f4dcc3b5aa765d61d8327deb882cf99",
    ),
    (
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "da39a3ee5e6b4b0d3255bfef",
    ),
    (
        "ハッシュ：9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "9f86d081884c7d659a2feaa0c55ad015",
    ),
    (
        "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZSAxMjM0NQ==",
        "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2",
    ),
    (
        "Q7vK9mZ2xR4tY8wP1nB6cL3jH5gF0dSa",
        "Q7vK9mZ2xR4tY8wP1nB6cL3jH5gF0dSa",
    ),
    (
        "セッションID Q8vK9mZ2xR4tY8wP1nB6cL3jH5gF0dSaXy",
        "Q8vK9mZ2xR4tY8wP1nB6",
    ),
    ("aZ3$kL9#pQ2!xW7&", "aZ3$kL9#pQ2!xW7&"),
    ("4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("5500005555555559", "5500005555555559"),
    ("378282246310005", "378282246310005"),
    ("カード番号は4111111111111111です", "4111111111111111"),
    (
        "クレジットカード：5555 5555 5555 4444 有効期限 12/28",
        "5555 5555 5555 4444",
    ),
    ("taro@example.com:hunter2!", "hunter2!"),
    ("hanako.yamada@example.co.jp password123", "password123"),
    ("user@example.com | Pa55w0rd", "Pa55w0rd"),
    (
        "ログイン：taro.suzuki@example.jp パスワード：Sakura2024",
        "Sakura2024",
    ),
    ("メール taro@example.com / hunter2xyz", "hunter2xyz"),
    ("https://admin:s3cretpw@example.com/", "s3cretpw"),
    (
        "postgres://app:Sup3rS3cret@db.example.com:5432/prod",
        "Sup3rS3cret",
    ),
    (
        "接続先：mysql://root:Tokyo2024pw@localhost/game",
        "Tokyo2024pw",
    ),
];

/// Real-looking visual-novel lines: dialogue 「…」, names in 【…】, ellipses, kanji with no
/// ruby, a few ASCII words.
const VN_LINES: &[&str] = &[
    "「おはよう、先輩。今日も早いですね」",
    "【春香】「待ってよ、置いていかないで！」",
    "……そう、あの日も雨が降っていた。",
    "「べ、別にあんたのために作ったんじゃないんだからね！」",
    "【ユウ】「ふーん、そういうことか」",
    "放課後の教室には、誰もいなかった。",
    "「えっ……今、なんて言ったの？」",
    "【謎の声】『目を覚ませ……』",
    "彼女は小さく頷いて、窓の外に視線を移した。",
    "「ちょっと待って。それ、本当なの？」",
    "【美咲】「明日の約束、忘れないでね」",
    "桜の花びらが、風に乗って舞い上がる。",
    "「……ごめん。俺には、何も言えない」",
    "【先生】「はい、席に着いてー。HRを始めるぞ」",
    "「このゲーム、RPGなんだけどさ、結構難しいんだよね」",
    "【春香】「スマホの充電、切れちゃった……」",
    "「OK、じゃあ三時に駅前で」",
    "私たちの夏は、まだ終わらない。",
    "【店員】「いらっしゃいませ！ご注文はお決まりですか？」",
    "「なんでいつもそうなのよ！　もう知らない！」",
    "遠くで、電車の警笛が鳴った。",
    "【ユウ】「Lv.99になるまでやめられないって」",
    "「ねえ、聞いてる？　ねえってば！」",
    "「……うん」",
    "【母】「ご飯できたわよー！」",
    "月明かりの下で、二人は黙ったまま歩いた。",
    "「君の名前は？」",
    "【???】「知りたければ、屋上に来い」",
    "「SNSに上げるのは禁止だからね」",
    "【生徒会長】「校則第三条、廊下を走ってはならない」",
    "「はぁ……疲れた。もう一歩も動けない」",
    "魔法陣が青白い光を放ち始めた。",
    "「先輩って、好きな人いるんですか？」",
    "【春香】「PCの電源、落としておいたよ」",
    "「大丈夫、私がついてるから」",
    "その言葉を聞いた瞬間、胸の奥が熱くなった。",
    "【ユウ】「ったく、しょうがねえな」",
    "「どうして……どうして黙ってたの？」",
    "【美咲】「ケーキ、半分こしよう？」",
    "時計の針は、午前二時を指していた。",
    "「ただいまー。あれ、誰もいないの？」",
    "【先生】「テストは来週の月曜日だ。範囲は教科書の45ページから」",
    "「うん、また明日ね！」",
    "静寂を破ったのは、一発の銃声だった。",
    "【謎の少女】「あなたは、選ばれたの」",
    "「もしもし？　聞こえる？」",
    "「こんな所で何してるの？」",
    "【春香】「えへへ、バレちゃった？」",
    "夕焼けが、二人の影を長く伸ばしていた。",
    "「約束だよ。絶対に、帰ってきてね」",
    "【ユウ】「HPが残り1だって？　回復しろよ！」",
    "「あ、あの……これ、受け取ってください！」",
    "【店長】「バイト代は月末に振り込むから」",
    "彼は振り返らずに、ただ手を振った。",
    "「さよなら、またいつか」",
];

#[tokio::test(start_paused = true)]
async fn secret_shaped_clipboard_text_never_reaches_a_provider_and_game_lines_always_do() {
    assert!(SECRETS.len() >= 50 && VN_LINES.len() >= 50);
    let provider = Arc::new(ScriptProvider::echo("fake", Duration::from_millis(20)));
    let chain = rig::chain_of(
        vec![provider.clone()],
        BreakerConfig::default(),
        ChainConfig::default(),
        Arc::new(TokioClock),
    );
    let mut rig = Rig::start(chain, rig::default_gates(), rig::settings(true, 4), None);
    // Interleaved, so that accepted lines sit in the context while secrets are copied.
    let mut secrets = SECRETS.iter();
    for line in VN_LINES {
        if let Some((text, _)) = secrets.next() {
            rig.copy(text).await;
            rig.idle(Duration::from_secs(60)).await;
        }
        rig.copy(line).await;
        rig.idle(Duration::from_secs(60)).await;
    }
    for (text, _) in secrets {
        rig.copy(text).await;
        rig.idle(Duration::from_secs(60)).await;
    }
    let counts = rig.stop().await;
    let sent = provider.everything_sent();
    let leaked: Vec<&str> = SECRETS
        .iter()
        .filter(|(_, secret)| sent.contains(secret))
        .map(|(text, _)| *text)
        .collect();
    assert!(
        leaked.is_empty(),
        "{} of {} secrets reached the provider:\n{}",
        leaked.len(),
        SECRETS.len(),
        leaked.join("\n")
    );
    let lines = provider.lines();
    // A line naming its speaker (【春香】「…」) is sent without the name, which travels apart.
    let sent_as = |l: &str| yaku::core::speaker::split(l).line.to_string();
    let missing: Vec<&&str> = VN_LINES
        .iter()
        .filter(|l| !lines.iter().any(|x| *x == sent_as(l)))
        .collect();
    assert!(missing.is_empty(), "game lines never sent: {missing:?}");
    assert_eq!(lines.len(), VN_LINES.len(), "{lines:?}");
    assert_eq!(
        (counts.accepted as usize, counts.rejected as usize),
        (VN_LINES.len(), SECRETS.len())
    );
}

#[test]
fn secrets_copied_on_the_real_x11_clipboard_never_reach_the_provider_or_the_log() {
    use desktop::provider::best_option;
    use desktop::wait::secs;
    use desktop::{DesktopEnv, YakuConfig};
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url())
        .poll_interval_ms(50)
        .log_level("debug");
    let yaku = env.spawn_yaku_env(&config, &[("YAKU_LOG", "debug")]);
    desktop_ext::await_polling(&env, &yaku);
    // Mostly secrets wrapped in Japanese (the script gate alone would stop bare ASCII ones).
    let picks: Vec<usize> = (0..SECRETS.len())
        .filter(|&i| !SECRETS[i].0.is_ascii())
        .step_by(2)
        .take(7)
        .chain([13, 52])
        .collect();
    let owner = env.clipboard_owner();
    let copy = |text: &str| {
        let offer = owner.offer(text);
        // Read whole (targets and text) twice, so the daemon has dealt with it.
        desktop_ext::await_state(&env, &yaku, secs(5), "the daemon to read the copy", || {
            owner.served(offer).text >= 2
        });
    };
    for (i, &p) in picks.iter().enumerate() {
        copy(SECRETS[p].0);
        if i % 3 == 2 {
            copy(VN_LINES[i]);
        }
    }
    let game: Vec<String> = (0..picks.len())
        .filter(|i| i % 3 == 2)
        .map(|i| VN_LINES[i].to_string())
        .collect();
    desktop_ext::await_state(
        &env,
        &yaku,
        secs(5),
        "the game lines' notifications",
        || {
            let shown = env.yaku_notifications();
            game.iter()
                .all(|l| shown.iter().any(|n| n.summary.contains(&best_option(l))))
        },
    );
    env.keep_owner(owner);
    assert_eq!(env.provider.lines(), game, "only the game lines were sent");
    let log = env.log();
    let db = desktop_ext::history(&desktop_ext::default_db(&env));
    for &p in &picks {
        let secret = SECRETS[p].1;
        let in_db = db.iter().any(|(t, _)| t.contains(secret));
        assert!(
            !log.contains(secret) && !in_db,
            "{secret:?} in the log or the history"
        );
    }
    assert!(
        log.contains("clipboard text rejected"),
        "the rejections were not logged (debug)"
    );
}

// ---------------------------------------------------------------------------------------------
// Fragments of a key: split, reordered, URL-encoded, JSON-escaped
// ---------------------------------------------------------------------------------------------

/// A key with characters that URL-encoding and JSON-escaping change.
const SPLIT_KEY: &str = "sk-h12/Split+Key=Qx7Vb9Lm2Np4Rt6Wz8SECRET";

/// The key as text may carry it: as is, URL-encoded (both hex cases), JSON-escaped.
fn split_key_forms() -> Vec<String> {
    let url = SPLIT_KEY
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    vec![
        SPLIT_KEY.to_string(),
        url.clone(),
        url.replace("%2F", "%2f")
            .replace("%2B", "%2b")
            .replace("%3D", "%3d"),
        SPLIT_KEY.replace('/', "\\/"),
    ]
}

/// Any run of 8 characters of the key, in any of its forms, in `text`.
fn fragment_leak(text: &str) -> Option<String> {
    for form in split_key_forms() {
        for i in 0..=form.len() - 8 {
            let piece = &form[i..i + 8];
            if let Some(at) = text.find(piece) {
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .nth(40)
                    .map_or(0, |(i, _)| i);
                let end = (at + 48..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                return Some(format!("{piece:?} in …{}…", &text[start..end]));
            }
        }
    }
    None
}

/// A provider that answers every request with a 400 whose raw body is `body`.
fn echoing_provider(rt: &tokio::runtime::Runtime, body: String) -> wiremock::MockServer {
    rt.block_on(async {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(
                wiremock::ResponseTemplate::new(400)
                    .set_body_raw(body.into_bytes(), "application/json"),
            )
            .mount(&server)
            .await;
        server
    })
}

#[test]
fn a_key_echoed_split_reversed_url_encoded_or_json_escaped_never_reaches_stderr_history_or_export()
{
    let (a, b) = SPLIT_KEY.split_at(SPLIT_KEY.len() / 2);
    let url = &split_key_forms()[1];
    let json_escaped = &split_key_forms()[3];
    let messages: Vec<(&str, String)> = vec![
        ("whole", format!("Incorrect API key provided: {SPLIT_KEY}.")),
        (
            "split in two",
            format!("key prefix {a}… (checked) …suffix {b} is not valid"),
        ),
        ("halves reversed", format!("key {b}{a} is not valid")),
        ("URL-encoded", format!("GET /v1/models?key={url} failed")),
        (
            "URL-encoded, lower hex",
            format!("GET /v1/models?key={} failed", split_key_forms()[2]),
        ),
        (
            "JSON-escaped",
            format!("the key \\\"{json_escaped}\\\" was refused"),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut leaks = Vec::new();
    for (what, message) in &messages {
        // Written by hand so the JSON escapes stay as the provider sent them.
        let body = format!(
            r#"{{"error": {{"message": "{message}", "type": "invalid_request_error", "param": null, "code": null}}}}"#
        );
        let server = echoing_provider(&rt, body);
        let home = Home::new();
        let cfg = home.write(
            "config/yaku/config.toml",
            &format!(
                "[[providers]]\nname = \"echo\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\napi_key = \"{SPLIT_KEY}\"\nrequests_per_minute = 0\ntimeout_secs = 5\n",
                server.uri()
            ),
            0o600,
        );
        let c = cfg.display().to_string();
        let mut env = home.env();
        env.extend(bin::vars(&[("YAKU_LOG", "trace")]));
        let translate = bin::yaku(
            &["translate", "--config", &c, "鍵の断片は漏れないか？"],
            &env,
            None,
            Duration::from_secs(30),
        );
        assert_ne!(translate.code, Some(0), "{what}: {}", translate.all());
        let history = bin::yaku(
            &["history", "--json", "--config", &c],
            &env,
            None,
            Duration::from_secs(30),
        );
        assert!(
            history.stdout.contains("[redacted]"),
            "{what}: the provider's reason was not kept (redacted) in the history: {}",
            history.all()
        );
        let csv = home.path("export.csv");
        let export = bin::yaku(
            &[
                "history",
                "export",
                "--format",
                "csv",
                "--output",
                csv.to_str().unwrap(),
                "--config",
                &c,
            ],
            &env,
            None,
            Duration::from_secs(30),
        );
        assert_eq!(export.code, Some(0), "{what}: {}", export.all());
        let mut texts = vec![
            ("translate stdout", translate.stdout.clone()),
            ("translate stderr", translate.stderr.clone()),
            ("history --json", history.all()),
            ("export", export.all()),
        ];
        texts.extend(
            files_under(home.dir.path(), std::slice::from_ref(&cfg))
                .into_iter()
                .map(|(p, t)| ("file", format!("{}: {t}", p.display()))),
        );
        for (place, text) in texts {
            if let Some(l) = fragment_leak(&text) {
                leaks.push(format!("{what}: {place}: {l}"));
            }
        }
        let sent = rt.block_on(server.received_requests()).unwrap_or_default();
        assert!(!sent.is_empty(), "{what}: the provider was never asked");
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
