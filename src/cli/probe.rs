//! `yaku check`: a diagnosis a user can paste into a bug report, without secrets. The same
//! provider probe serves `yaku setup`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::credentials::Credentials;
use crate::config::{Config, KeyLookup, KeySource, ProviderConfig};
use crate::core::prompt::{Prompt, TranslationRequest};
use crate::core::provider::{FailureClass, Provider, ProviderFailure};

/// One provider's line in the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCheck {
    pub name: String,
    /// "found", "missing", "not_needed" or "refused" (a key file others can read).
    pub key: &'static str,
    /// Where the key was found, or what to do about it.
    pub key_detail: String,
    /// "ok", a failure class, or "not_tried" (offline, or no key).
    pub outcome: &'static str,
    pub latency_ms: Option<u64>,
    /// A sentence for humans: "unauthorized — the key was rejected; run `yaku key set gemini`".
    pub message: String,
}

impl ProviderCheck {
    /// Whether this provider can translate (or, offline, has what it needs to try).
    pub fn usable(&self, offline: bool) -> bool {
        if offline {
            matches!(self.key, "found" | "not_needed")
        } else {
            self.outcome == "ok"
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "key": self.key,
            "key_detail": self.key_detail,
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
            "message": self.message,
        })
    }
}

/// Looks up a provider's key and, unless `offline`, sends it one minimal request.
pub async fn check_provider(
    p: &ProviderConfig,
    config: &Config,
    credentials: &Credentials,
    offline: bool,
) -> ProviderCheck {
    let env = |var: &str| std::env::var(var).ok();
    let mut out = ProviderCheck {
        name: p.name.clone(),
        key: "missing",
        key_detail: String::new(),
        outcome: "not_tried",
        latency_ms: None,
        message: String::new(),
    };
    let (api_key, source) = match p.key(env, credentials, config.source.as_deref()) {
        Ok(KeyLookup::Found { key, source }) => {
            out.key = "found";
            out.key_detail = source.to_string();
            (Some(key), Some(source))
        }
        Ok(KeyLookup::NotNeeded) => {
            out.key = "not_needed";
            out.key_detail = "no key needed".into();
            (None, None)
        }
        Ok(KeyLookup::Missing { hint }) => {
            out.key_detail = hint.clone();
            out.message = format!("no key — {hint}");
            return out;
        }
        Err(e) => {
            out.key = "refused";
            out.key_detail = e.to_string();
            out.message = format!("key refused — {e}");
            return out;
        }
    };
    if offline {
        out.message = format!("key: {}", out.key_detail);
        return out;
    }
    let provider: Arc<dyn Provider> = match crate::wire::build_provider(p, api_key) {
        Ok(provider) => provider,
        Err(e) => {
            out.outcome = "transient";
            out.message = format!("the HTTP client could not be set up: {e}");
            return out;
        }
    };
    let request = TranslationRequest {
        text: "テスト".into(),
        source_language: config.translation.source_language.clone(),
        target_language: config.translation.target_language.clone(),
        options: 1,
        ..Default::default()
    };
    let prompt = Prompt::build(&request);
    let started = Instant::now();
    let result = tokio::time::timeout(
        p.timeout + Duration::from_secs(1),
        provider.complete(&prompt),
    )
    .await;
    out.latency_ms = Some(started.elapsed().as_millis() as u64);
    match result {
        Ok(Ok(_)) => {
            out.outcome = "ok";
            out.message = format!("ok, {} ms", out.latency_ms.unwrap_or(0));
        }
        Ok(Err(f)) => {
            out.outcome = f.class.as_str();
            let what = advice(p, source.as_ref(), &f);
            out.message = format!("{} — {what}", f.class.as_str().replace('_', " "));
        }
        Err(_) => {
            out.outcome = "transient";
            out.message = format!("no answer within {} s", p.timeout.as_secs());
        }
    }
    out
}

/// What to do about a failed test request, in the user's terms.
fn advice(p: &ProviderConfig, source: Option<&KeySource>, f: &ProviderFailure) -> String {
    match f.class {
        FailureClass::Unauthorized => p.key_advice(source),
        FailureClass::RateLimited => match f.retry_after {
            Some(d) => format!(
                "rate limited for {} — the key works; wait or add another provider",
                crate::core::chain::human_duration(d)
            ),
            None => "rate limited — the key works; wait or add another provider".into(),
        },
        FailureClass::ModelUnavailable => format!(
            "model \"{}\" is not available — change `model` in the config ({})",
            p.model, f.detail
        ),
        // No connection at all is most often the network, not the provider.
        FailureClass::Transient if f.detail == "could not connect" => {
            let url = reqwest::Url::parse(&p.base_url).ok();
            let host = url
                .as_ref()
                .and_then(|u| u.host_str())
                .unwrap_or(&p.base_url);
            format!("could not reach {host} (network?)")
        }
        FailureClass::Transient => format!("the provider is having trouble: {}", f.detail),
        FailureClass::Refused => format!("answered without a translation: {}", f.detail),
        FailureClass::BadRequest => format!(
            "the request was refused: {} — check `extra` and `model`",
            f.detail
        ),
    }
}

/// Sends `key` to `p` with one request without storing it anywhere: the key alone, so
/// neither the environment, nor the credentials file, nor the config file can stand in for it.
pub async fn check_typed_key(p: &ProviderConfig, config: &Config, key: &str) -> ProviderCheck {
    let mut only_typed = p.clone();
    only_typed.api_key_env = None;
    only_typed.api_key = Some(key.to_string());
    // No file to check the permissions of: the key is in memory, not in the config.
    let mut in_memory = config.clone();
    in_memory.source = None;
    check_provider(&only_typed, &in_memory, &Credentials::default(), false).await
}

/// A yes/no item of the diagnosis with its detail.
fn item(ok: bool, detail: impl Into<String>) -> Value {
    json!({ "ok": ok, "detail": detail.into() })
}

/// Whether the clipboard can be read now (within 3 s), and how it is watched (`watch`:
/// "events" or "poll").
pub async fn check_clipboard(mut clipboard: crate::adapters::clipboard::SystemClipboard) -> Value {
    use crate::core::intake::{ClipboardRead, ClipboardSource, WatchMode};
    let read = tokio::task::spawn_blocking(move || {
        let read = clipboard.read();
        (read, clipboard.mode())
    });
    match tokio::time::timeout(Duration::from_secs(3), read).await {
        Ok(Ok((Ok(r), mode))) => {
            let what = match r {
                ClipboardRead::Text { .. } => "readable (holds text)",
                ClipboardRead::Empty => "readable (no text in it now)",
                ClipboardRead::Oversized { .. } => "readable (holds a long text)",
                ClipboardRead::Undecidable => "readable (its owner does not list its formats)",
            };
            let how = match mode {
                WatchMode::Events => "watched through change events",
                WatchMode::Poll => "polled",
            };
            json!({ "ok": true, "watch": mode.as_str(), "detail": format!("{what}; {how}") })
        }
        Ok(Ok((Err(e), _))) => item(false, e.to_string()),
        _ => item(false, "reading the clipboard did not finish within 3 s"),
    }
}

/// The notification server's name and version, or why there is none.
pub async fn check_notifications() -> Value {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let info = tokio::task::spawn_blocking(notify_rust::get_server_information);
        match tokio::time::timeout(Duration::from_secs(3), info).await {
            Ok(Ok(Ok(i))) => {
                json!({ "ok": true, "server": i.name, "version": i.version, "detail": format!("{} {} ({})", i.name, i.version, i.vendor) })
            }
            Ok(Ok(Err(e))) => {
                json!({ "ok": false, "server": null, "version": null, "detail": format!("no notification server: {e}") })
            }
            _ => {
                json!({ "ok": false, "server": null, "version": null, "detail": "the notification server did not answer within 3 s" })
            }
        }
    }
    // Windows: WinRT toasts under yaku's AppUserModelID (Wine has none: not ok there).
    #[cfg(windows)]
    {
        let support = tokio::task::spawn_blocking(crate::adapters::notify::toast_support);
        match tokio::time::timeout(Duration::from_secs(3), support).await {
            Ok(Ok(Ok(()))) => {
                json!({ "ok": true, "server": "toasts", "version": null, "detail": "Windows toasts, shown as yaku" })
            }
            Ok(Ok(Err(why))) => {
                json!({ "ok": false, "server": null, "version": null, "detail": format!("{why}; translating goes on without them") })
            }
            _ => {
                json!({ "ok": false, "server": null, "version": null, "detail": "asking Windows about toasts did not finish within 3 s" })
            }
        }
    }
    #[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
    {
        json!({ "ok": true, "server": null, "version": null, "detail": "the system's notifications" })
    }
}

/// Whether logs can be written in `dir`.
pub fn check_log_dir(dir: &Path) -> Value {
    let probe = dir.join(".yaku-check");
    let result = crate::sys::private::create_private_dir(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => json!({ "ok": true, "path": dir, "detail": "writable" }),
        Err(e) => json!({ "ok": false, "path": dir, "detail": format!("not writable: {e}") }),
    }
}

/// Whether the history store opens and passes its integrity check.
pub fn check_store(path: &Path) -> Value {
    use crate::adapters::store::{Options, SqliteStore};
    // A diagnosis must not end the running daemon's line: pending rows are left alone.
    let opts = Options {
        recover_pending: false,
        ..Options::default()
    };
    match SqliteStore::open_with(path, &opts) {
        Ok((_, report)) => match report.moved_aside {
            Some(m) => {
                json!({ "ok": true, "path": path, "detail": format!("was unreadable; moved to {} and recreated", m.to.display()) })
            }
            None => json!({ "ok": true, "path": path, "detail": "healthy" }),
        },
        Err(e) => json!({ "ok": false, "path": path, "detail": e.to_string() }),
    }
}
