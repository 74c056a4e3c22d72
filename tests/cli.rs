//! `yaku translate` and `yaku config` as a user runs them: the real binary against loopback
//! servers that speak Gemini's and Groq's wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use serde_json::Value;
use support::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GEMINI_PATH: &str = "/models/gemini-test:generateContent";

struct Servers {
    gemini: MockServer,
    groq: MockServer,
    dir: tempfile::TempDir,
}

impl Servers {
    async fn start() -> Self {
        Self {
            gemini: MockServer::start().await,
            groq: MockServer::start().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> String {
        let path = write_config(
            self.dir.path(),
            &two_provider_config(&self.gemini.uri(), &self.groq.uri()),
            0o600,
        );
        path.to_string_lossy().into_owned()
    }

    async fn gemini_replies(&self, status: u16, body: Value) {
        Mock::given(method("POST"))
            .and(path(GEMINI_PATH))
            .and(header("x-goog-api-key", FAKE_KEY))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.gemini)
            .await;
    }

    async fn groq_replies(&self, status: u16, body: Value) {
        Mock::given(method("POST"))
            .and(path("/chat/completions"))
            .and(header(
                "authorization",
                format!("Bearer {FAKE_KEY}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.groq)
            .await;
    }

    /// Both providers reject the key.
    async fn both_reject_the_key(&self) {
        self.gemini_replies(400, gemini_bad_key()).await;
        self.groq_replies(401, openai_401()).await;
    }
}

/// `yaku history --json`, one object a row.
async fn history_rows(cfg: &str) -> Vec<Value> {
    let out = yaku(&["history", "--json", "--config", cfg], &[], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
        ("YAKU_TEST_GROQ_KEY", FAKE_KEY),
    ]
}

#[tokio::test]
async fn plain_output_is_the_best_option_then_the_others_numbered() {
    let s = Servers::start().await;
    s.gemini_replies(
        200,
        gemini_ok(&["Good morning, senpai.", "Morning, senpai!", "Hey, senpai."]),
    )
    .await;
    let cfg = s.config();
    let out = yaku(
        &["translate", "--config", &cfg, "おはよう、先輩。"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Good morning, senpai.\n  2. Morning, senpai!\n  3. Hey, senpai.\n"
    );
    let err = text(&out.stderr);
    assert!(err.contains("via gemini in "), "stderr: {err}");
    assert!(s.groq.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn reads_the_line_from_stdin_when_no_text_or_a_dash_is_given() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["Hello."])).await;
    let cfg = s.config();
    for args in [
        vec!["translate", "--config", &cfg],
        vec!["translate", "--config", &cfg, "-"],
    ] {
        let out = yaku(&args, &keys(), Some("こんにちは\n")).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "Hello.\n");
    }
    let sent: Value =
        serde_json::from_slice(&s.gemini.received_requests().await.unwrap()[0].body).unwrap();
    let user = sent["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(user.contains("こんにちは"), "{user}");
}

#[tokio::test]
async fn gemini_rate_limited_falls_back_to_groq_and_json_says_why() {
    let s = Servers::start().await;
    s.gemini_replies(429, gemini_429("37s")).await;
    s.groq_replies(200, openai_ok(&["Good morning, senpai.", "Morning!"]))
        .await;
    let cfg = s.config();
    let out = yaku(
        &["translate", "--json", "--config", &cfg, "おはよう、先輩。"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys_of = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys_of(&v),
        [
            "best",
            "latency_ms",
            "options",
            "provider",
            "skipped",
            "speaker",
            "text"
        ]
    );
    assert!(v["speaker"].is_null(), "the line names no speaker");
    assert_eq!(v["text"], "おはよう、先輩。");
    assert_eq!(v["best"], "Good morning, senpai.");
    assert_eq!(
        v["options"],
        serde_json::json!(["Good morning, senpai.", "Morning!"])
    );
    assert_eq!(v["provider"], "groq");
    assert_eq!(
        v["skipped"],
        serde_json::json!([{ "provider": "gemini", "reason": "rate_limited", "retry_after_ms": 37000 }])
    );
    assert!(v["latency_ms"].is_u64());
    assert_eq!(s.gemini.received_requests().await.unwrap().len(), 1);

    // Plain mode says the same on stderr (--fresh: the line is in the cache now).
    let out = yaku(
        &["translate", "--fresh", "--config", &cfg, "おはよう、先輩。"],
        &keys(),
        None,
    )
    .await;
    let err = text(&out.stderr);
    assert!(
        err.contains("via groq in ") && err.contains("(gemini: rate limited for 37 s)"),
        "{err}"
    );
}

#[tokio::test]
async fn all_providers_failing_exits_3_and_says_what_to_do_about_each() {
    let s = Servers::start().await;
    s.both_reject_the_key().await;
    let cfg = s.config();
    let out = yaku(&["translate", "--config", &cfg, "おはよう"], &keys(), None).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("gemini: key rejected — the key was rejected: check YAKU_TEST_GEMINI_KEY"),
        "{err}"
    );
    assert!(
        err.contains("groq: key rejected — the key was rejected: check YAKU_TEST_GROQ_KEY"),
        "{err}"
    );

    let out = yaku(
        &["translate", "--json", "--config", &cfg, "おはよう"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["best"], Value::Null);
    let reasons: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["unauthorized", "unauthorized"]);
}

#[tokio::test]
async fn missing_keys_skip_providers_with_a_reason_instead_of_failing_to_load() {
    let s = Servers::start().await;
    s.groq_replies(200, openai_ok(&["Hi."])).await;
    let cfg = s.config();
    let out = yaku(
        &["translate", "--json", "--config", &cfg, "やあ"],
        &[("YAKU_TEST_GROQ_KEY", FAKE_KEY)],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["skipped"],
        serde_json::json!([{ "provider": "gemini", "reason": "no_key", "retry_after_ms": null }])
    );
    assert!(s.gemini.received_requests().await.unwrap().is_empty());

    let out = yaku(
        &["translate", "--fresh", "--config", &cfg, "やあ"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("gemini: no API key — run `yaku key set gemini` (or set YAKU_TEST_GEMINI_KEY in the environment yaku runs in)"),
        "{err}"
    );
}

#[tokio::test]
async fn provider_flag_uses_only_that_provider_and_an_unknown_name_is_a_usage_error() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["From gemini."])).await;
    s.groq_replies(200, openai_ok(&["From groq."])).await;
    let cfg = s.config();
    let out = yaku(
        &["translate", "--provider", "groq", "--config", &cfg, "やあ"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(text(&out.stdout), "From groq.\n");
    assert!(s.gemini.received_requests().await.unwrap().is_empty());

    let out = yaku(
        &["translate", "--provider", "deepl", "--config", &cfg, "やあ"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no provider named \"deepl\"; configured: gemini, groq"));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("none.toml");
    let cfg = cfg.to_str().unwrap();
    let out = yaku(&["translate", "--config", cfg], &[], Some("   \n")).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nothing to translate"));
    let out = yaku(&["translate", "--no-such-flag"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    let out = yaku(&["frobnicate"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    let long = "あ".repeat(501);
    let out = yaku(&["translate", "--config", cfg], &[], Some(&long)).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("longer than 500 characters"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn config_errors_exit_78_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[translation]\noptoins = 3\n",
            "line 2: translation.optoins: unknown field `optoins`",
        ),
        (
            "[translation]\noptions = 9\n",
            "line 2: translation.options: 9 is out of range: must be 1 to 5",
        ),
        (
            "[translation]\ndeadline_secs = \"soon\"\n",
            "line 2: translation.deadline_secs: invalid type: string \"soon\", expected a number",
        ),
        (
            "[breaker]\nopen_secs = 60\nmax_open_secs = 30\n",
            "line 3: breaker.max_open_secs: must be at least `open_secs`",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"opnai\"\nmodel = \"m\"\n",
            "line 3: providers[0].kind: unknown variant `opnai`",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"http://example.com/v1\"\n",
            "line 5: providers[0].base_url: \"http://example.com/v1\" must use https://",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"gemini\"\nmodel = \"m\"\n\n[[providers]]\nname = \"x\"\nkind = \"gemini\"\nmodel = \"m\"\n",
            "line 7: providers[1].name: \"x\" is used by an earlier provider",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"gemini\"\n",
            "line 1: providers[0]: missing field `model`",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"gemini\"\nmodel = \"m\"\nrequests_per_minute = -1\n",
            "line 5: providers[0].requests_per_minute: -1 is out of range",
        ),
        ("[translation\n", "line 1"),
    ];
    for (toml, want) in cases {
        let cfg = write_config(dir.path(), toml, 0o600);
        let out = yaku(
            &["translate", "--config", cfg.to_str().unwrap(), "やあ"],
            &[],
            None,
        )
        .await;
        assert_eq!(out.status.code(), Some(78), "{toml}");
        let err = text(&out.stderr);
        assert!(
            err.contains(cfg.to_str().unwrap()) && err.contains(want),
            "for {toml:?}\nwanted: {want}\ngot: {err}"
        );
    }
}

#[tokio::test]
async fn a_config_that_is_a_directory_or_not_utf8_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = yaku(
        &[
            "translate",
            "--config",
            dir.path().to_str().unwrap(),
            "やあ",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("is a directory"),
        "{}",
        text(&out.stderr)
    );
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[translation]\ninstructions = \"caf\xe9\"\n").unwrap();
    let out = yaku(
        &["translate", "--config", path.to_str().unwrap(), "やあ"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("line 2: not UTF-8"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_key_in_a_config_file_others_can_read_is_refused_with_the_chmod_fix() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["Hi."])).await;
    let toml = format!(
        "[[providers]]\nname = \"gemini\"\nkind = \"gemini\"\nmodel = \"gemini-test\"\nbase_url = \"{}\"\napi_key = \"{FAKE_KEY}\"\n",
        s.gemini.uri()
    );
    let cfg = write_config(s.dir.path(), &toml, 0o644);
    let cfg = cfg.to_str().unwrap();
    let out = yaku(&["translate", "--config", cfg, "やあ"], &[], None).await;
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("run `chmod 600 {cfg}`")) && err.contains("line 6"),
        "{err}"
    );
    assert!(!err.contains(FAKE_KEY));
    assert!(s.gemini.received_requests().await.unwrap().is_empty());

    write_config(s.dir.path(), &toml, 0o600);
    let out = yaku(&["translate", "--config", cfg, "やあ"], &[], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hi.\n");
}

#[tokio::test]
async fn the_key_never_appears_in_any_output() {
    let s = Servers::start().await;
    // A reply that echoes the key back, as some proxies do.
    s.gemini_replies(400, serde_json::json!({ "error": { "code": 400, "message": format!("bad request for key {FAKE_KEY}"), "status": "INVALID_ARGUMENT" } })).await;
    s.groq_replies(503, serde_json::json!({ "error": { "message": format!("overloaded ({FAKE_KEY})"), "type": "server_error" } })).await;
    let cfg = s.config();
    for json in [false, true] {
        let mut args = vec!["translate", "--config", &cfg, "やあ"];
        if json {
            args.push("--json");
        }
        let mut env = keys();
        env.push(("YAKU_LOG", "trace"));
        let out = yaku(&args, &env, None).await;
        assert_eq!(out.status.code(), Some(3));
        assert!(
            !text(&out.stdout).contains(FAKE_KEY),
            "stdout leaks the key"
        );
        assert!(
            !text(&out.stderr).contains(FAKE_KEY),
            "stderr leaks the key: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn config_init_writes_a_private_example_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sub/config.toml");
    let cfg_s = cfg.to_str().unwrap();
    let out = yaku(&["config", "init", "--config", cfg_s], &[], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        include_str!("../config.example.toml")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(cfg.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
    std::fs::write(&cfg, "# mine\n").unwrap();
    let out = yaku(&["config", "init", "--config", cfg_s], &[], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "# mine\n");
    let out = yaku(&["config", "init", "--force", "--config", cfg_s], &[], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        include_str!("../config.example.toml")
    );
}

#[tokio::test]
async fn config_path_follows_the_flag_then_the_environment_then_the_platform_dir() {
    let out = yaku(
        &["config", "path", "--config", "/x/y.toml"],
        &[("YAKU_CONFIG", "/env/c.toml")],
        None,
    )
    .await;
    assert_eq!(text(&out.stdout), "/x/y.toml\n");
    let out = yaku(&["config", "path"], &[("YAKU_CONFIG", "/env/c.toml")], None).await;
    assert_eq!(text(&out.stdout), "/env/c.toml\n");
    let out = yaku(
        &["config", "path"],
        &[
            ("HOME", "/home/reader"),
            ("XDG_CONFIG_HOME", "/home/reader/.config"),
        ],
        None,
    )
    .await;
    assert_eq!(text(&out.stdout), "/home/reader/.config/yaku/config.toml\n");
}

#[tokio::test]
async fn key_set_stores_a_private_key_the_chain_then_uses_and_list_never_prints() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["From the stored key."]))
        .await;
    let cfg = s.config();
    let out = yaku(
        &["key", "set", "gemini", "--config", &cfg],
        &[],
        Some(&format!("{FAKE_KEY}\n")),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(FAKE_KEY) && !text(&out.stderr).contains(FAKE_KEY));
    let cred = s.dir.path().join("credentials.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // No environment at all: the key comes from the credentials file.
    let out = yaku(&["translate", "--config", &cfg, "やあ"], &[], None).await;
    assert_eq!(
        text(&out.stdout),
        "From the stored key.\n",
        "{}",
        text(&out.stderr)
    );

    let out = yaku(
        &["key", "list", "--config", &cfg],
        &[("YAKU_TEST_GROQ_KEY", FAKE_KEY)],
        None,
    )
    .await;
    let listed = text(&out.stdout);
    assert!(!listed.contains(FAKE_KEY), "{listed}");
    assert!(
        listed.contains("gemini") && listed.contains("credentials file"),
        "{listed}"
    );
    assert!(
        listed.contains("environment variable YAKU_TEST_GROQ_KEY"),
        "{listed}"
    );
    let out = yaku(&["key", "list", "--json", "--config", &cfg], &[], None).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["provider"], "gemini");
    assert_eq!(v[0]["found"], true);
    assert_eq!(v[1]["found"], false);
    assert!(!text(&out.stdout).contains(FAKE_KEY));

    // A credentials file others can read is refused, with the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = yaku(&["translate", "--config", &cfg, "やあ"], &[], None).await;
        assert_eq!(out.status.code(), Some(78));
        assert!(
            text(&out.stderr).contains("chmod 600"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn key_set_tests_the_key_first_a_rejected_key_is_not_stored_and_an_unreachable_provider_is_warned_of()
 {
    let s = Servers::start().await;
    s.gemini_replies(400, gemini_bad_key()).await;
    let cfg = s.config();
    let cred = s.dir.path().join("credentials.toml");
    let typed = format!("{FAKE_KEY}\n");
    let out = yaku(
        &["key", "set", "gemini", "--config", &cfg],
        &[],
        Some(&typed),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("gemini rejected the key (unauthorized); nothing was stored"),
        "{}",
        text(&out.stderr)
    );
    assert!(!cred.exists(), "a rejected key was stored");
    assert_eq!(s.gemini.received_requests().await.unwrap().len(), 1);

    let out = yaku(
        &["key", "set", "gemini", "--no-test", "--config", &cfg],
        &[],
        Some(&typed),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(cred.exists());
    assert_eq!(
        s.gemini.received_requests().await.unwrap().len(),
        1,
        "--no-test sends nothing"
    );

    // Nothing listens on the discard port: the key is stored, with a warning saying so.
    let dir = tempfile::tempdir().unwrap();
    let closed = write_config(
        dir.path(),
        &two_provider_config("http://127.0.0.1:9", &s.groq.uri()),
        0o600,
    );
    let closed = closed.to_str().unwrap();
    let out = yaku(
        &["key", "set", "gemini", "--config", closed],
        &[],
        Some(&typed),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: could not reach gemini to test the key")
            && text(&out.stderr).contains("could not reach 127.0.0.1 (network?)"),
        "{}",
        text(&out.stderr)
    );
    assert!(dir.path().join("credentials.toml").exists());
    assert!(!text(&out.stdout).contains(FAKE_KEY) && !text(&out.stderr).contains(FAKE_KEY));

    let out = yaku(&["key", "remove", "gemini", "--config", closed], &[], None).await;
    assert!(
        text(&out.stdout).starts_with("removed the key for gemini"),
        "{}",
        text(&out.stdout)
    );
    let out = yaku(&["key", "remove", "gemini", "--config", closed], &[], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("no key stored for gemini")
            && text(&out.stdout).contains("nothing to remove"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn key_set_for_an_unknown_provider_or_with_no_key_stores_nothing() {
    let s = Servers::start().await;
    let cfg = s.config();
    let out = yaku(&["key", "set", "deepl", "--config", &cfg], &[], Some("k\n")).await;
    assert_eq!(out.status.code(), Some(2));
    let out = yaku(&["key", "set", "gemini", "--config", &cfg], &[], Some("\n")).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(!s.dir.path().join("credentials.toml").exists());
}

#[tokio::test]
async fn check_probes_each_provider_and_says_what_to_do_without_printing_keys() {
    let s = Servers::start().await;
    s.gemini_replies(400, gemini_bad_key()).await;
    s.groq_replies(429, serde_json::json!({ "error": { "message": "Rate limit reached for model `openai/gpt-oss-120b`. Please try again in 7.5s.", "type": "requests", "code": "rate_limit_exceeded" } })).await;
    let cfg = s.config();
    let home = s.dir.path().join("home");
    let home = home.to_str().unwrap();
    let mut env = keys();
    env.extend([
        ("HOME", home),
        ("XDG_STATE_HOME", home),
        ("XDG_DATA_HOME", home),
        ("XDG_RUNTIME_DIR", home),
    ]);
    let out = yaku(&["check", "--json", "--config", &cfg], &env, None).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected key and a rate limit: nothing can translate now"
    );
    assert!(!text(&out.stdout).contains(FAKE_KEY) && !text(&out.stderr).contains(FAKE_KEY));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["ok"], true);
    assert_eq!(v["providers"][0]["outcome"], "unauthorized");
    assert_eq!(
        v["providers"][0]["key_detail"],
        "environment variable YAKU_TEST_GEMINI_KEY"
    );
    assert!(
        v["providers"][0]["message"]
            .as_str()
            .unwrap()
            .contains("check YAKU_TEST_GEMINI_KEY")
    );
    assert_eq!(v["providers"][1]["outcome"], "rate_limited");
    assert!(
        v["providers"][1]["message"]
            .as_str()
            .unwrap()
            .contains("rate limited for 8 s")
    );
    assert_eq!(v["can_translate"], false);
    assert_eq!(v["daemon"]["running"], false);
    assert!(v["service"]["installed"].is_boolean(), "{v}");
    for key in ["clipboard", "notifications", "log_dir", "store"] {
        assert!(v[key]["ok"].is_boolean(), "{key} missing: {v}");
    }

    // Fix groq: now one provider translates, and the plain report says so.
    s.groq.reset().await;
    s.groq_replies(200, openai_ok(&["Test."])).await;
    let out = yaku(&["check", "--config", &cfg], &env, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains("groq: ok, ")
            && report.contains("gemini: unauthorized — the key was rejected"),
        "{report}"
    );
}

#[tokio::test]
async fn check_offline_sends_nothing_and_judges_by_the_keys() {
    let s = Servers::start().await;
    let cfg = s.config();
    let home = s.dir.path().join("home");
    let home = home.to_str().unwrap();
    let base = [
        ("HOME", home),
        ("XDG_STATE_HOME", home),
        ("XDG_DATA_HOME", home),
        ("XDG_RUNTIME_DIR", home),
    ];
    let out = yaku(
        &["check", "--offline", "--json", "--config", &cfg],
        &base,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["providers"][0]["key"], "missing");
    let mut env = base.to_vec();
    env.push(("YAKU_TEST_GROQ_KEY", FAKE_KEY));
    let out = yaku(
        &["check", "--offline", "--json", "--config", &cfg],
        &env,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["providers"][1]["key"].as_str(),
            v["providers"][1]["outcome"].as_str()
        ),
        (Some("found"), Some("not_tried"))
    );
    assert!(
        s.gemini.received_requests().await.unwrap().is_empty()
            && s.groq.received_requests().await.unwrap().is_empty()
    );
}

#[tokio::test]
async fn service_install_without_a_user_manager_writes_autostart_and_warns_about_shell_only_keys() {
    let s = Servers::start().await;
    let cfg = s.config();
    let home = s.dir.path().join("home");
    let bin = s.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home_s = home.to_str().unwrap();
    let env = [
        ("PATH", path.as_str()),
        ("HOME", home_s),
        ("YAKU_TEST_GEMINI_KEY", FAKE_KEY),
        ("XDG_STATE_HOME", home_s),
    ];
    let out = yaku(&["service", "install", "--config", &cfg], &env, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let autostart = home.join(".config/autostart/yaku.desktop");
    assert!(autostart.exists(), "{}", text(&out.stdout));
    assert!(
        std::fs::read_to_string(&autostart)
            .unwrap()
            .contains(env!("CARGO_BIN_EXE_yaku"))
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("gemini's key is only in this shell's YAKU_TEST_GEMINI_KEY")
            && err.contains("yaku key set gemini"),
        "{err}"
    );
    assert!(
        !err.contains("groq's key"),
        "groq has no key at all: nothing to warn about here"
    );
    assert!(!err.contains(FAKE_KEY) && !text(&out.stdout).contains(FAKE_KEY));

    let out = yaku(
        &["service", "status", "--json", "--config", &cfg],
        &env,
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("autostart"), "{v}");
    let out = yaku(&["service", "uninstall", "--config", &cfg], &env, None).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!autostart.exists());
}

#[tokio::test]
async fn a_cached_line_makes_no_request_fresh_makes_one_and_history_records_every_cli_line() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["Good morning.", "Morning!"]))
        .await;
    let cfg = s.config();
    let run = |extra: &'static [&'static str]| {
        let cfg = cfg.clone();
        async move {
            let mut args = vec!["translate"];
            args.extend_from_slice(extra);
            args.extend(["--config", cfg.as_str(), "おはよう"]);
            yaku(&args, &keys(), None).await
        }
    };
    assert_eq!(
        text(&run(&[]).await.stdout),
        "Good morning.\n  2. Morning!\n"
    );
    assert_eq!(s.gemini.received_requests().await.unwrap().len(), 1);
    let out = run(&["--json"]).await;
    assert_eq!(
        s.gemini.received_requests().await.unwrap().len(),
        1,
        "a cache hit sends nothing"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["best"].as_str(), v["provider"].as_str()),
        (Some("Good morning."), Some("gemini"))
    );
    run(&["--fresh"]).await;
    assert_eq!(
        s.gemini.received_requests().await.unwrap().len(),
        2,
        "--fresh skips the cache"
    );

    let rows = history_rows(&cfg).await;
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["translated", "cached", "translated"]);
    let mut keys_of: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys_of.sort();
    assert_eq!(
        keys_of,
        [
            "at",
            "best",
            "chosen",
            "error",
            "game",
            "id",
            "latency_ms",
            "options",
            "provider",
            "speaker",
            "status",
            "text"
        ]
    );
    assert!(rows[0]["at"].as_str().unwrap().ends_with('Z'));

    let out = yaku(
        &["stats", "--json", "--since", "24h", "--config", &cfg],
        &[],
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["translated"].as_u64(), v["cached"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["providers"][0]["provider"], "gemini");
    assert_eq!(v["providers"][0]["requests"], 2);
    let out = yaku(&["stats", "--config", &cfg], &[], None).await;
    assert!(
        text(&out.stdout).contains("gemini"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn glossary_entries_that_apply_to_the_line_travel_with_the_request_and_no_others() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["Senpai, wait!"])).await;
    let tsv = s.dir.path().join("names.tsv");
    std::fs::write(&tsv, "春香\tHaruka\ta girl's name\n魔法\tmagic\n").unwrap();
    let mut toml = two_provider_config(&s.gemini.uri(), &s.groq.uri());
    toml = toml.replacen(
        "[translation]\n",
        "[translation]\nglossary_file = \"names.tsv\"\n",
        1,
    );
    toml.push_str("\n[glossary]\n\"先輩\" = \"senpai\"\n\"後輩\" = \"kouhai\"\n");
    let cfg = write_config(s.dir.path(), &toml, 0o600);
    let out = yaku(
        &[
            "translate",
            "--config",
            cfg.to_str().unwrap(),
            "春香先輩、待って！",
        ],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sent: Value =
        serde_json::from_slice(&s.gemini.received_requests().await.unwrap()[0].body).unwrap();
    let user = sent["contents"][0]["parts"][0]["text"].as_str().unwrap();
    let object: Value = serde_json::from_str(user.split_once('\n').unwrap().1).unwrap();
    let terms: Vec<&str> = object["glossary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["term"].as_str().unwrap())
        .collect();
    assert_eq!(terms, ["先輩", "春香"]);
    assert_eq!(object["glossary"][1]["note"], "a girl's name");
}

#[tokio::test]
async fn history_export_writes_every_line_and_clear_needs_yes() {
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["A, \"quoted\" line"]))
        .await;
    let cfg = s.config();
    for line in ["一行目", "二行目"] {
        yaku(&["translate", "--config", &cfg, line], &keys(), None).await;
    }
    let csv = s.dir.path().join("out.csv");
    let out = yaku(
        &[
            "history",
            "export",
            "--format",
            "csv",
            "--output",
            csv.to_str().unwrap(),
            "--config",
            &cfg,
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(written.starts_with("id,at,text,"), "{written}");
    assert!(
        written.contains("\"A, \"\"quoted\"\" line\"") && written.contains("二行目"),
        "{written}"
    );
    let out = yaku(
        &["history", "export", "--format", "jsonl", "--config", &cfg],
        &[],
        None,
    )
    .await;
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let out = yaku(&["history", "clear", "--config", &cfg], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    let out = yaku(&["history", "clear", "--yes", "--config", &cfg], &[], None).await;
    assert_eq!(out.status.code(), Some(0));
    let out = yaku(&["history", "--config", &cfg], &[], None).await;
    assert!(text(&out.stdout).is_empty());
}

#[tokio::test]
async fn a_failed_line_is_in_the_history_with_its_latency_and_each_providers_reason() {
    let s = Servers::start().await;
    s.both_reject_the_key().await;
    let cfg = s.config();
    let out = yaku(&["translate", "--config", &cfg, "おはよう"], &keys(), None).await;
    assert_eq!(out.status.code(), Some(3));
    let rows = history_rows(&cfg).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    assert!(rows[0]["latency_ms"].is_u64(), "{}", rows[0]);
    assert_eq!(rows[0]["error"], "gemini: key rejected; groq: key rejected");
}

/// Puts `n` finished lines at `at` into the store at `db`, each with one request to `provider`.
fn store_requests(db: &std::path::Path, provider: &str, at: std::time::SystemTime, n: usize) {
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let conn = rusqlite::Connection::open(db).unwrap();
    for i in 0..n {
        conn.execute(
            "INSERT INTO lines (at_ms, source, text, status, provider, model, best, options,
                                latency_ms, finished_ms)
             VALUES (?1, 'cli', ?2, 'translated', ?3, 'm', 'ok', '[\"ok\"]', 5, ?1)",
            rusqlite::params![at_ms, format!("行{provider}{at_ms}{i}"), provider],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO attempts (line_id, seq, provider, outcome, latency_ms, opened_breaker, at_ms)
             VALUES (last_insert_rowid(), 0, ?1, 'ok', 5, 0, ?2)",
            rusqlite::params![provider, at_ms],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn translate_counts_only_the_requests_of_each_providers_budget_day() {
    use std::time::{Duration, SystemTime};
    use yaku::core::calendar::DailyReset;
    let s = Servers::start().await;
    s.gemini_replies(200, gemini_ok(&["From gemini."])).await;
    s.groq_replies(200, openai_ok(&["From groq."])).await;
    let db = s.dir.path().join("history.db");
    let toml = two_provider_config(&s.gemini.uri(), &s.groq.uri())
        .replace(
            "requests_per_minute = 600\n",
            "requests_per_minute = 600\nrequests_per_day = 3\n",
        )
        .replace(
            "[translation]",
            &format!(
                "[store]\npath = {:?}\n\n[translation]",
                db.to_str().unwrap()
            ),
        );
    let cfg = write_config(s.dir.path(), &toml, 0o600);
    let cfg = cfg.to_str().unwrap();
    drop(yaku::adapters::store::SqliteStore::open(&db).unwrap());
    let now = SystemTime::now();
    // Gemini's day began at midnight in California, Groq's at midnight UTC. A second before
    // that is still within the last 24 hours: the requests of yesterday's budget day.
    let pacific = DailyReset::PacificMidnight.day_start(now);
    let utc = DailyReset::UtcMidnight.day_start(now);
    store_requests(&db, "gemini", pacific - Duration::from_secs(1), 5);
    store_requests(
        &db,
        "gemini",
        pacific + (now.duration_since(pacific).unwrap() / 2),
        3,
    );
    store_requests(&db, "groq", utc - Duration::from_secs(1), 5);
    store_requests(&db, "groq", utc + (now.duration_since(utc).unwrap() / 2), 2);

    // Gemini's three for today are spent; Groq has one left.
    let out = yaku(
        &["translate", "--config", cfg, "一行目です。"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "From groq.\n");
    let out = yaku(
        &["translate", "--config", cfg, "二行目です。"],
        &keys(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("gemini") && err.contains("groq"), "{err}");
    assert!(s.gemini.received_requests().await.unwrap().is_empty());
    assert_eq!(s.groq.received_requests().await.unwrap().len(), 1);
}
