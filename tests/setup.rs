//! `yaku setup` as a user meets it: the real binary on a pseudo-terminal, answering its
//! prompts, against loopback servers speaking Gemini's and Groq's wire formats. No DISPLAY, so
//! the last step reports that the clipboard cannot be read.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "setup/pty.rs"]
mod pty;
mod support;
#[path = "setup/x11.rs"]
mod x11;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pty::Pty;
use support::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STEP: Duration = Duration::from_secs(20);

/// A temporary home for one run: HOME and the XDG dirs inside it, and a config path.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "home/.config", "state", "data", "run", "bin"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Home { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `yaku setup --config <config>` with a clean environment and no display.
    fn command(&self, config: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
        cmd.arg("setup")
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("HOME", self.root().join("home"))
            .env("XDG_CONFIG_HOME", self.root().join("home/.config"))
            .env("XDG_STATE_HOME", self.root().join("state"))
            .env("XDG_DATA_HOME", self.root().join("data"))
            .env("XDG_RUNTIME_DIR", self.root().join("run"))
            .env("TERM", "dumb")
            .env("LANG", "C.UTF-8");
        let system_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        cmd.env(
            "PATH",
            format!("{}:{system_path}", self.root().join("bin").display()),
        );
        cmd
    }

    /// Every file (not directory) under the temporary root.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root(), &mut out);
        out
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `script` (the pty session) off the async runtime, so the loopback servers keep serving.
async fn session<T: Send + 'static>(script: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(script).await.unwrap()
}

/// Gemini at one server (200 for "good-key", API_KEY_INVALID otherwise), Groq at another
/// (always 401).
async fn one_good_one_bad() -> (MockServer, MockServer) {
    let gemini = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-test:generateContent"))
        .and(header("x-goog-api-key", "good-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_ok(&["Test."])))
        .mount(&gemini)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(gemini_bad_key()))
        .mount(&gemini)
        .await;
    let groq = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(openai_401()))
        .mount(&groq)
        .await;
    (gemini, groq)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_key_is_stored_a_rejected_one_is_not_and_keys_are_never_echoed() {
    let (gemini, groq) = one_good_one_bad().await;
    let home = Home::new();
    let config = write_config(
        home.root(),
        &two_provider_config(&gemini.uri(), &groq.uri()),
        0o600,
    );
    let before = std::fs::read(&config).unwrap();
    let cmd = home.command(&config);
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language (the game's) [Japanese]:", STEP);
        t.send_line("");
        t.expect("Target language (yours) [English]:", STEP);
        t.send_line("");
        t.expect("Overwrite", STEP);
        t.send_line("n");
        t.expect("API key for gemini", STEP);
        t.send_line("good-key");
        t.expect("gemini: ok", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("bad-key");
        t.expect("groq: unauthorized", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("the key that did not work was not stored", STEP);
        t.expect("Kept", STEP);
        t.expect("login service", STEP);
        t.send_line("n");
        t.expect("clipboard cannot be read", STEP);
        t.expect("yaku key set gemini", STEP);
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(
        !transcript.contains("good-key") && !transcript.contains("bad-key"),
        "a typed key was echoed:\n{transcript}"
    );

    let credentials = home.root().join("credentials.toml");
    assert_eq!(mode(&credentials), 0o600);
    let stored: toml::Table =
        toml::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    let keys = stored["keys"].as_table().unwrap();
    assert_eq!(
        keys.get("gemini").and_then(|v| v.as_str()),
        Some("good-key")
    );
    assert!(
        keys.get("groq").is_none(),
        "the rejected key was kept: {keys:?}"
    );

    // Each typed key was tested at once against the provider it belongs to.
    let gemini_keys: Vec<String> = gemini
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("x-goog-api-key")?
                .to_str()
                .ok()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(gemini_keys, ["good-key"]);
    let groq_auth: Vec<String> = groq
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("authorization")?
                .to_str()
                .ok()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(groq_auth, ["Bearer bad-key"]);

    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the config changed"
    );
    assert_eq!(mode(&config), 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_config_it_writes_the_example_with_the_chosen_languages() {
    let home = Home::new();
    let config = home.root().join("cfg/config.toml");
    let cmd = home.command(&config);
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("yes");
        t.expect("Source language (the game's) [Japanese]:", STEP);
        // No script check for French: asked again.
        t.send_line("French");
        t.expect("no script check", STEP);
        t.expect("Source language (the game's) [Japanese]:", STEP);
        t.send_line("Korean");
        t.expect("Target language (yours) [English]:", STEP);
        t.send_line("French");
        t.expect("Choice [1]:", STEP);
        t.send_line("");
        t.expect(
            "gemini: get a key at https://aistudio.google.com/apikey",
            STEP,
        );
        t.expect("API key for gemini", STEP);
        t.send_line("");
        t.expect("gemini: no new key", STEP);
        t.expect("groq: get a key at https://console.groq.com/keys", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("groq: no new key", STEP);
        t.expect("Wrote", STEP);
        t.expect("login service", STEP);
        t.send_line("n");
        t.expect("No provider can translate yet", STEP);
        // The last step offers the key tests again rather than only "add a key".
        t.expect("Test the keys again now (or type a new one)? [y/N]", STEP);
        t.send_line("y");
        t.expect("API key for gemini", STEP);
        t.send_line("");
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("No provider can translate yet", STEP);
        t.expect("Test the keys again now", STEP);
        t.send_line("");
        t.expect("`yaku key set NAME` stores a key", STEP);
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(!transcript.contains("Overwrite"), "{transcript}");

    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(config.parent().unwrap()), 0o700);
    let loaded = yaku::config::Config::load(&config).unwrap();
    assert_eq!(loaded.translation.source_language, "Korean");
    assert_eq!(loaded.translation.target_language, "French");
    let expected = yaku::config::EXAMPLE
        .replacen(
            "source_language = \"Japanese\"",
            "source_language = \"Korean\"",
            1,
        )
        .replacen(
            "target_language = \"English\"",
            "target_language = \"French\"",
            1,
        );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), expected);
    // Skipped keys store nothing.
    assert!(!config.parent().unwrap().join("credentials.toml").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn anything_but_yes_at_the_privacy_confirmation_changes_nothing() {
    let home = Home::new();
    let config = home.root().join("cfg/config.toml");
    let cmd = home.command(&config);
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("only clipboard text that passes its privacy gates", STEP);
        t.expect("Ollama", STEP);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("ok");
        t.expect("nothing was changed", STEP);
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(!transcript.contains("Source language"), "{transcript}");
    assert_eq!(home.files(), Vec::<PathBuf>::new());
    assert!(!config.parent().unwrap().exists());
}

#[test]
fn without_a_terminal_it_refuses_and_lists_the_commands_instead() {
    let home = Home::new();
    let config = home.root().join("config.toml");
    let out = home
        .command(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    for command in [
        "yaku config init",
        "yaku key set gemini",
        "yaku key set groq",
        "yaku check",
        "yaku service install",
        "yaku run",
    ] {
        assert!(all.contains(command), "{command} missing:\n{all}");
    }
    assert_eq!(home.files(), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn yes_to_the_service_installs_and_starts_the_systemd_user_unit() {
    let home = Home::new();
    // A reachable user manager that logs what it is asked.
    let log = home.root().join("systemctl.log");
    let fake = home.root().join("bin/systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncase \"$*\" in *is-active*) echo active;; esac\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = home.root().join("cfg/config.toml");
    let cmd = home.command(&config);
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("Choice [1]:", STEP);
        t.send_line("1");
        t.expect("API key for gemini", STEP);
        t.send_line("");
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("login service", STEP);
        t.send_line("y");
        t.expect("Wrote the", STEP);
        t.expect("Test the keys again now", STEP);
        t.send_line("");
        t.expect("Next time", STEP);
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    let unit = home.root().join("home/.config/systemd/user/yaku.service");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains(env!("CARGO_BIN_EXE_yaku")),
        "{unit_text}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("--user enable --now yaku.service"),
        "{calls}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_line_copied_after_the_prompt_is_translated_and_a_rejected_one_never_shown() {
    let (gemini, groq) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(header("x-goog-api-key", "good-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gemini_ok(&["Good morning, senpai.", "Morning, senpai!"])),
        )
        .mount(&gemini)
        .await;
    let home = Home::new();
    let config = write_config(
        home.root(),
        &two_provider_config(&gemini.uri(), &groq.uri()),
        0o600,
    );
    let mut x = x11::X11::start();
    // On the clipboard before the last step: not the user's test line.
    x.copy("前からあった行です");
    let mut cmd = home.command(&config);
    cmd.env("DISPLAY", x.display());
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("Overwrite", STEP);
        t.send_line("");
        t.expect("API key for gemini", STEP);
        t.send_line("good-key");
        t.expect("gemini: ok", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("login service", STEP);
        t.send_line("");
        t.expect("copy a line of Japanese text", STEP);
        x.copy("see https://example.com/private-page");
        t.expect("Not sent: the wrong_script gate", STEP);
        x.copy("おはよう、先輩。");
        t.expect("Translating: おはよう、先輩。", STEP);
        t.expect("Good morning, senpai.", STEP);
        t.expect("2. Morning, senpai!", STEP);
        t.expect("via gemini", STEP);
        t.expect("notification", STEP);
        t.expect("Next time", STEP);
        let status = t.wait(STEP);
        drop(x);
        (status, t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(
        !transcript.contains("example.com"),
        "a rejected text was printed:\n{transcript}"
    );
    // One request for the key test, one for the copied line; never the older content.
    let bodies: Vec<String> = gemini
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert!(bodies[1].contains("おはよう、先輩。"), "{}", bodies[1]);
    assert!(
        bodies
            .iter()
            .all(|b| !b.contains("前からあった行") && !b.contains("example.com")),
        "{bodies:#?}"
    );
    assert!(groq.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_provider_failed_on_for_another_reason_is_stored_only_if_the_user_agrees() {
    let (gemini, groq) = (MockServer::start().await, MockServer::start().await);
    for server in [&gemini, &groq] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
            .mount(server)
            .await;
    }
    let home = Home::new();
    let config = write_config(
        home.root(),
        &two_provider_config(&gemini.uri(), &groq.uri()),
        0o600,
    );
    let cmd = home.command(&config);
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("Overwrite", STEP);
        t.send_line("n");
        t.expect("API key for gemini", STEP);
        t.send_line("maybe-good-1");
        t.expect("Store it anyway? [Y/n]", STEP);
        t.send_line(""); // the default stores it
        t.expect("stored in", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("maybe-good-2");
        t.expect("Store it anyway? [Y/n]", STEP);
        t.send_line("n");
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("was not stored", STEP);
        t.expect("login service", STEP);
        t.send_line("n");
        t.expect("No provider can translate yet", STEP);
        t.expect("Test the keys again now", STEP);
        t.send_line("n");
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(!transcript.contains("maybe-good"), "{transcript}");
    let stored: toml::Table =
        toml::from_str(&std::fs::read_to_string(home.root().join("credentials.toml")).unwrap())
            .unwrap();
    let keys = stored["keys"].as_table().unwrap();
    assert_eq!(
        keys.get("gemini").and_then(|v| v.as_str()),
        Some("maybe-good-1")
    );
    assert!(keys.get("groq").is_none(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enter_at_the_last_step_stops_waiting_for_a_copied_line() {
    let gemini = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_ok(&["Test."])))
        .mount(&gemini)
        .await;
    let home = Home::new();
    let config = write_config(
        home.root(),
        &two_provider_config(&gemini.uri(), "http://127.0.0.1:9"),
        0o600,
    );
    let x = x11::X11::start();
    let mut cmd = home.command(&config);
    cmd.env("DISPLAY", x.display());
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("Overwrite", STEP);
        t.send_line("n");
        t.expect("API key for gemini", STEP);
        t.send_line("any-key");
        t.expect("gemini: ok", STEP);
        t.expect("API key for groq", STEP);
        t.send_line("");
        t.expect("login service", STEP);
        t.send_line("n");
        t.expect("Press Enter to skip", STEP);
        t.send_line("");
        t.expect("Skipped the test translation", Duration::from_secs(5));
        let status = t.wait(Duration::from_secs(5));
        drop(x);
        (status, t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    // Only the key test reached the provider.
    assert_eq!(gemini.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_at_the_key_prompt_leaves_the_terminal_echoing() {
    use std::os::unix::process::ExitStatusExt;
    let home = Home::new();
    let config = home.root().join("cfg/config.toml");
    let cmd = home.command(&config);
    let (status, echo_at_prompt, echo_after, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("Choice [1]:", STEP);
        t.send_line("");
        t.expect("API key for gemini", STEP);
        let echo_at_prompt = t.echoes();
        t.send_raw(b"\x03");
        let status = t.wait(STEP);
        (status, echo_at_prompt, t.echoes(), t.transcript())
    })
    .await;
    assert!(
        !echo_at_prompt,
        "echo was on at the key prompt:\n{transcript}"
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "{status:?}\n{transcript}"
    );
    assert!(
        echo_after,
        "Ctrl-C left the terminal without echo:\n{transcript}"
    );
    assert!(!config.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_instead_of_keys_is_written_without_a_key_or_limits_and_tested() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&["Test."])))
        .mount(&server)
        .await;
    let home = Home::new();
    let config = home.root().join("cfg/config.toml");
    let cmd = home.command(&config);
    let url = format!("{}/v1", server.uri());
    let (status, transcript) = session(move || {
        let mut t = Pty::spawn(cmd);
        t.expect("Continue? [y/N]", STEP);
        t.send_line("y");
        t.expect("Source language", STEP);
        t.send_line("");
        t.expect("Target language", STEP);
        t.send_line("");
        t.expect("2) a local or custom OpenAI-compatible server", STEP);
        t.expect("Choice [1]:", STEP);
        t.send_line("2");
        t.expect("Server URL [http://127.0.0.1:11434/v1]:", STEP);
        // The config's rule: plain http only on loopback.
        t.send_line("http://example.com/v1");
        t.expect("must use https://", STEP);
        t.expect("Server URL", STEP);
        t.send_line(&url);
        t.expect("Model", STEP);
        t.send_line("qwen3:8b");
        t.expect("local: needs no key; testing", STEP);
        t.expect("local: ", STEP);
        t.expect("Wrote", STEP);
        t.expect("login service", STEP);
        t.send_line("n");
        t.expect("Next time", STEP);
        (t.wait(STEP), t.transcript())
    })
    .await;
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(!transcript.contains("API key for"), "{transcript}");
    assert!(
        !transcript.contains("No provider can translate"),
        "{transcript}"
    );

    let requests = server.received_requests().await.unwrap();
    assert!(!requests.is_empty(), "the server was not probed");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["model"], "qwen3:8b");
    assert!(requests[0].headers.get("authorization").is_none());

    let loaded = yaku::config::Config::load(&config).unwrap();
    assert_eq!(loaded.providers.len(), 1, "{:?}", loaded.providers);
    let p = &loaded.providers[0];
    assert_eq!(
        (
            p.name.as_str(),
            p.kind,
            p.model.as_str(),
            p.base_url.as_str()
        ),
        (
            "local",
            yaku::config::ProviderKind::Openai,
            "qwen3:8b",
            format!("{}/v1", server.uri()).as_str()
        )
    );
    assert_eq!((p.requests_per_minute, p.requests_per_day), (0, 0));
    assert!(!config.parent().unwrap().join("credentials.toml").exists());
}
