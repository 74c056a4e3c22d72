//! `yaku check [--json] [--offline]`: config, keys, one live request per provider, clipboard,
//! notifications, log dir, store, service and daemon.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::CheckFailed;
use super::probe;
use crate::config::Config;
use crate::config::credentials::Credentials;
use crate::sys::dirs::Dirs;

pub fn run(path: &Path, as_json: bool, offline: bool) -> anyhow::Result<()> {

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Config::load(path);
    let mut report = serde_json::Map::new();
    let mut lines: Vec<String> = Vec::new();
    let mut can_translate = false;
    match &config {
        Ok(c) => {
            let where_ = c.source.as_ref().map_or_else(
                || format!("{} (not found: defaults)", path.display()),
                |p| p.display().to_string(),
            );
            report.insert(
                "config".into(),
                json!({ "ok": true, "path": path, "detail": where_ }),
            );
            lines.push(format!("config: ok — {where_}"));
        }
        Err(e) => {
            report.insert(
                "config".into(),
                json!({ "ok": false, "path": path, "detail": e.to_string() }),
            );
            lines.push(format!("config: error — {e}"));
        }
    }
    // A broken config still leaves the files to look at: the defaults' paths, said so.
    let fallback = match &config {
        Ok(_) => None,
        Err(_) => {
            let mut c = Config::defaults()?;
            c.path = path.to_path_buf();
            eprintln!("yaku: {}", super::fallback_paths(&c));
            Some(c)
        }
    };
    if let Ok(config) = &config {
        let credentials = Credentials::load(&Credentials::path_for(&config.path));
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => {
                lines.push(format!("credentials: error — {e}"));
                Credentials::default()
            }
        };
        let checks = runtime.block_on(async {
            let mut out = Vec::new();
            for p in &config.providers {
                out.push(probe::check_provider(p, config, &credentials, offline).await);
            }
            out
        });
        can_translate = checks.iter().any(|c| c.usable(offline));
        // A key in a config file others can read makes `translate` and `run` refuse the whole
        // config (exit 78): the diagnosis must not call that config ok.
        if let Some(refused) = checks.iter().find(|c| c.key == "refused") {
            report.insert(
                "config".into(),
                json!({ "ok": false, "path": path, "detail": refused.key_detail }),
            );
            if let Some(first) = lines.first_mut() {
                *first = format!("config: error — {}", refused.key_detail);
            }
            can_translate = false;
        }
        for c in &checks {
            lines.push(format!("{}: {}", c.name, c.message));
        }
        report.insert(
            "providers".into(),
            checks.iter().map(probe::ProviderCheck::to_json).collect(),
        );
    }
    let files = config.as_ref().ok().or(fallback.as_ref());
    if let Some(config) = files {
        let dirs = Dirs::resolve();
        if let Ok(dirs) = &dirs {
            let logs = probe::check_log_dir(&config.log_dir(dirs));
            lines.push(format!(
                "log dir: {} — {}",
                logs["path"].as_str().unwrap_or(""),
                logs["detail"].as_str().unwrap_or("")
            ));
            report.insert("log_dir".into(), logs);
        }
        if let Ok(store_path) = crate::wire::store_path(config) {
            let store = probe::check_store(&store_path);
            lines.push(format!(
                "history store: {} — {}",
                store_path.display(),
                store["detail"].as_str().unwrap_or("")
            ));
            report.insert("store".into(), store);
        }
    }
    let clipboard = runtime.block_on(probe::check_clipboard());
    lines.push(format!(
        "clipboard: {}",
        clipboard["detail"].as_str().unwrap_or("")
    ));
    report.insert("clipboard".into(), clipboard);
    let notifications = runtime.block_on(probe::check_notifications());
    lines.push(format!(
        "notifications: {}",
        notifications["detail"].as_str().unwrap_or("")
    ));
    report.insert("notifications".into(), notifications);
    if let Some(c) = files {
        let service = Dirs::resolve()
            .map_err(|e| e.to_string())
            .and_then(|dirs| {
                let binary = std::env::current_exe().map_err(|e| e.to_string())?;
                crate::service::ServiceEnv::from_process(binary, c.log_dir(&dirs))
                    .map_err(|e| e.to_string())
            })
            .and_then(|env| crate::service::status(&env).map_err(|e| e.to_string()));
        match service {
            Ok(st) => {
                let summary = match st.entries.first() {
                    None => "not installed (`yaku service install`)".to_string(),
                    Some(e) => format!(
                        "{} — enabled: {}, running: {}{}",
                        e.kind,
                        e.enabled
                            .map_or("unknown", |b| if b { "yes" } else { "no" }),
                        e.running
                            .map_or("unknown", |b| if b { "yes" } else { "no" }),
                        if e.points_here {
                            ""
                        } else {
                            "; points at another binary: run `yaku service install`"
                        }
                    ),
                };
                lines.push(format!("service: {summary}"));
                report.insert("service".into(), st.to_json());
            }
            Err(e) => {
                lines.push(format!("service: unknown — {e}"));
                report.insert("service".into(), json!({ "installed": null, "error": e }));
            }
        }
    }
    let daemon = match super::control::request(crate::protocol::Request::Status) {
        Ok(v) => json!({ "running": true, "pid": v["pid"], "paused": v["paused"] }),
        Err(_) => json!({ "running": false, "pid": null, "paused": null }),
    };
    lines.push(match daemon["pid"].as_u64() {
        Some(pid) => format!("daemon: running (pid {pid})"),
        None => "daemon: not running".to_string(),
    });
    report.insert("daemon".into(), daemon);
    report.insert("can_translate".into(), can_translate.into());
    if as_json {
        println!("{}", serde_json::Value::Object(report));
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    if can_translate {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}
