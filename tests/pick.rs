//! `yaku pick N` through the real binary: the choice is kept in the history (and exports),
//! and the cache shows it first from then on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use serde_json::Value;
use support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn pick_records_the_choice_and_the_cache_shows_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let groq = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_ok(&[
            "Good morning, senpai.",
            "Morning, senpai.",
            "Hello, senpai.",
        ])))
        .mount(&groq)
        .await;
    let cfg = write_config(
        dir.path(),
        &format!(
            "[translation]\noptions = 3\n\n[[providers]]\nname = \"groq\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\napi_key_env = \"YAKU_TEST_KEY\"\n",
            groq.uri()
        ),
        0o600,
    );
    let cfg = cfg.to_str().unwrap();
    let env = [("YAKU_TEST_KEY", FAKE_KEY)];
    let run = |args: Vec<&'static str>| {
        let mut all: Vec<&str> = args;
        all.extend(["--config", cfg]);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            yaku(&refs, &env, None).await
        }
    };

    let out = run(vec!["pick", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no line has been shown yet"));

    let out = run(vec!["translate", "おはよう、先輩。"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = run(vec!["pick", "4"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pick 1 to 3"),
        "{}",
        text(&out.stderr)
    );

    let out = run(vec!["pick", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Morning, senpai.");

    let out = run(vec!["history", "--json"]).await;
    let row: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(row["chosen"], 2, "{row}");
    let out = run(vec!["history", "export", "--format", "csv"]).await;
    let csv = text(&out.stdout);
    assert!(csv.lines().next().unwrap().ends_with(",chosen"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().ends_with(",2"), "{csv}");

    let out = run(vec!["translate", "--json", "おはよう、先輩。"]).await;
    let v: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(
        v["best"], "Morning, senpai.",
        "the cache shows the choice first: {v}"
    );
    assert_eq!(v["options"][1], "Good morning, senpai.");
    assert_eq!(groq.received_requests().await.unwrap().len(), 1);
}
