//! Shared by the integration tests: real-format provider replies and a runner for the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

/// A fake key distinctive enough to grep for in every output.
pub const FAKE_KEY: &str = "yaku-test-key-ZX81-do-not-leak";

/// Gemini's JSON-mode success: the JSON object arrives as a string in the text part.
pub fn gemini_ok(options: &[&str]) -> Value {
    json!({
        "candidates": [{
            "content": { "parts": [{ "text": json!({ "options": options }).to_string() }], "role": "model" },
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": { "promptTokenCount": 64, "candidatesTokenCount": 41, "totalTokenCount": 105 },
        "modelVersion": "gemini-test",
        "responseId": "resp-test-1"
    })
}

/// Gemini's free-tier 429: the wait is only in RetryInfo (no Retry-After header).
pub fn gemini_429(retry_delay: &str) -> Value {
    json!({ "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: gemini-test\nPlease retry in 37.118216403s.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "quotaDimensions": { "location": "global", "model": "gemini-test" },
                "quotaValue": "10" }] },
            { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay }
        ]
    }})
}

/// Gemini's answer to a bad key: a 400, not a 401.
pub fn gemini_bad_key() -> Value {
    json!({ "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                      "domain": "googleapis.com", "metadata": { "service": "generativelanguage.googleapis.com" } }]
    }})
}

/// An OpenAI-compatible (Groq) JSON-mode success.
pub fn openai_ok(options: &[&str]) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_795_767_544,
        "model": "openai/gpt-oss-120b",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": json!({ "options": options }).to_string(),
                         "reasoning": "Three alternatives in a JSON object." },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 141, "completion_tokens": 83, "total_tokens": 224 },
        "system_fingerprint": "fp_test",
        "x_groq": { "id": "req_test" }
    })
}

/// Groq's 401.
pub fn openai_401() -> Value {
    json!({ "error": { "message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key" } })
}

/// A config file for two providers served at `gemini_url` and `groq_url`.
pub fn two_provider_config(gemini_url: &str, groq_url: &str) -> String {
    format!(
        r#"
[translation]
deadline_secs = 10

[[providers]]
name = "gemini"
kind = "gemini"
model = "gemini-test"
base_url = "{gemini_url}"
api_key_env = "YAKU_TEST_GEMINI_KEY"
requests_per_minute = 600
timeout_secs = 5

[[providers]]
name = "groq"
kind = "openai"
model = "openai/gpt-oss-120b"
base_url = "{groq_url}"
api_key_env = "YAKU_TEST_GROQ_KEY"
requests_per_minute = 600
timeout_secs = 5
"#
    )
}

/// Writes `text` to `dir/config.toml` with `mode`, returning the path.
pub fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

/// Runs `yaku` with `args`, an environment holding only what is given (plus PATH and HOME),
/// and `stdin`; off the async runtime so loopback servers keep serving.
pub async fn yaku(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || yaku_blocking(&args, &env, stdin.as_deref()))
        .await
        .unwrap()
}

pub fn yaku_blocking(args: &[String], env: &[(String, String)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yaku"));
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    // Each test gets its own data, state and runtime dirs (history store, logs, control
    // socket): beside its config file when it has one, else a fresh temporary dir.
    let isolated = match args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
    {
        Some(config) => std::path::Path::new(config).parent().unwrap().join("xdg"),
        None => tempfile::tempdir().unwrap().keep(),
    };
    for var in ["XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"] {
        cmd.env(var, &isolated);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
