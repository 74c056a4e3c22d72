//! `yaku check [--json] [--offline]`: config, keys, one live request per provider, clipboard,
//! notifications, log dir, store, service and daemon.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use super::CheckFailed;
use super::probe;
use crate::config::credentials::Credentials;
use crate::config::{Config, ConfigError};
use crate::sys::dirs::Dirs;

/// The report: one JSON member and one text line per item, in order.
#[derive(Default)]
struct Report {
    json: serde_json::Map<String, Value>,
    lines: Vec<String>,
}

impl Report {
    fn add(&mut self, key: &str, value: Value, line: String) {
        self.json.insert(key.into(), value);
        self.lines.push(line);
    }
}

pub fn run(path: &Path, as_json: bool, offline: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Config::load(path);
    let mut report = Report::default();
    config_item(&mut report, path, &config);
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
    let mut can_translate = false;
    if let Ok(config) = &config {
        can_translate = runtime.block_on(providers(&mut report, path, config, offline));
    }
    let files = config.as_ref().ok().or(fallback.as_ref());
    if let Some(config) = files {
        paths(&mut report, config);
    }
    let clipboard = match files {
        Some(config) => crate::wire::clipboard(config),
        None => crate::wire::clipboard(&Config::defaults()?),
    };
    let clipboard = runtime.block_on(probe::check_clipboard(clipboard));
    let line = format!("clipboard: {}", detail(&clipboard));
    report.add("clipboard", clipboard, line);
    let notifications = runtime.block_on(probe::check_notifications());
    let line = format!("notifications: {}", detail(&notifications));
    report.add("notifications", notifications, line);
    if let Some(config) = files {
        service(&mut report, config);
    }
    if let Ok(config) = &config {
        game(&mut report, config);
    }
    daemon(&mut report);
    report
        .json
        .insert("can_translate".into(), can_translate.into());
    if as_json {
        println!("{}", Value::Object(report.json));
    } else {
        for l in &report.lines {
            println!("{l}");
        }
    }
    if can_translate {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or("")
}

fn config_item(report: &mut Report, path: &Path, config: &Result<Config, ConfigError>) {
    match config {
        Ok(c) => {
            let where_ = c.source.as_ref().map_or_else(
                || format!("{} (not found: defaults)", path.display()),
                |p| p.display().to_string(),
            );
            let line = format!("config: ok — {where_}");
            report.add(
                "config",
                json!({ "ok": true, "path": path, "detail": where_ }),
                line,
            );
        }
        Err(e) => report.add(
            "config",
            json!({ "ok": false, "path": path, "detail": e.to_string() }),
            format!("config: error — {e}"),
        ),
    }
}

/// Each provider's key and one live request (none with `offline`); whether any can translate.
async fn providers(report: &mut Report, path: &Path, config: &Config, offline: bool) -> bool {
    let credentials = match Credentials::load(&Credentials::path_for(&config.path)) {
        Ok(c) => c,
        Err(e) => {
            report.lines.push(format!("credentials: error — {e}"));
            Credentials::default()
        }
    };
    let mut checks = Vec::new();
    for p in &config.providers {
        checks.push(probe::check_provider(p, config, &credentials, offline).await);
    }
    let mut can_translate = checks.iter().any(|c| c.usable(offline));
    // A key in a config file others can read makes `translate` and `run` refuse the whole
    // config (exit 78): the diagnosis must not call that config ok.
    if let Some(refused) = checks.iter().find(|c| c.key == "refused") {
        report.json.insert(
            "config".into(),
            json!({ "ok": false, "path": path, "detail": refused.key_detail }),
        );
        if let Some(first) = report.lines.first_mut() {
            *first = format!("config: error — {}", refused.key_detail);
        }
        can_translate = false;
    }
    for c in &checks {
        report.lines.push(format!("{}: {}", c.name, c.message));
    }
    report.json.insert(
        "providers".into(),
        checks.iter().map(probe::ProviderCheck::to_json).collect(),
    );
    can_translate
}

/// The log directory and the history store.
fn paths(report: &mut Report, config: &Config) {
    if let Ok(dirs) = &Dirs::resolve() {
        let logs = probe::check_log_dir(&config.log_dir(dirs));
        let line = format!(
            "log dir: {} — {}",
            logs["path"].as_str().unwrap_or(""),
            detail(&logs)
        );
        report.add("log_dir", logs, line);
    }
    if let Ok(store_path) = crate::wire::store_path(config) {
        let store = probe::check_store(&store_path);
        let line = format!(
            "history store: {} — {}",
            store_path.display(),
            detail(&store)
        );
        report.add("store", store, line);
    }
}

fn yes_no(b: Option<bool>) -> &'static str {
    b.map_or("unknown", |b| if b { "yes" } else { "no" })
}

/// The login service: installed, enabled, running, and whether it starts this binary.
fn service(report: &mut Report, config: &Config) {
    let service = Dirs::resolve()
        .map_err(|e| e.to_string())
        .and_then(|dirs| {
            let binary = std::env::current_exe().map_err(|e| e.to_string())?;
            crate::service::ServiceEnv::from_process(binary, config.log_dir(&dirs))
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
                    yes_no(e.enabled),
                    yes_no(e.running),
                    if e.points_here {
                        ""
                    } else {
                        "; points at another binary: run `yaku service install`"
                    }
                ),
            };
            report.add("service", st.to_json(), format!("service: {summary}"));
        }
        Err(e) => report.add(
            "service",
            json!({ "installed": null, "error": e }),
            format!("service: unknown — {e}"),
        ),
    }
}

/// The `[[games]]` profiles and the one the active window has now.
fn game(report: &mut Report, config: &Config) {
    use crate::core::games::ActiveWindow;
    let names: Vec<&str> = config.games.names().collect();
    let active = if names.is_empty() {
        None
    } else {
        let window = crate::adapters::window::SystemActiveWindow::new().active();
        config.games.choose(window.as_ref()).map(|p| p.name.clone())
    };
    let line = match (&active, names.is_empty()) {
        (_, true) => "game: no [[games]] profiles".to_string(),
        (Some(name), false) => format!("game: {name} (the active window's profile)"),
        (None, false) => format!(
            "game: none for the active window (profiles: {})",
            names.join(", ")
        ),
    };
    report.add("game", json!({ "active": active, "profiles": names }), line);
}

/// Whether a daemon answers on the control socket.
fn daemon(report: &mut Report) {
    let daemon = match super::control::request(crate::protocol::Request::Status) {
        Ok(v) => {
            json!({ "running": true, "pid": v["pid"], "paused": v["paused"], "game": v["game"] })
        }
        Err(_) => json!({ "running": false, "pid": null, "paused": null, "game": null }),
    };
    let line = match daemon["pid"].as_u64() {
        Some(pid) => format!("daemon: running (pid {pid})"),
        None => "daemon: not running".to_string(),
    };
    report.add("daemon", daemon, line);
}
