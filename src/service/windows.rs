//! Windows: the `yaku` value under the user's `Run` key, starting `yakuw.exe` (the daemon with
//! no console window) beside this `yaku.exe`, and yaku's AppUserModelID for its toasts; all
//! written and read with `reg.exe`.

use std::path::{Path, PathBuf};

use super::command;
use super::render::{
    parse_reg_query, parse_run_value, render_run_value_for, startup_approved_enabled,
};
use super::{
    EntryStatus, InstallReport, Location, RUN_KEY, RUN_VALUE_NAME, STARTUP_APPROVED_KEY,
    ServiceEnv, ServiceError, ServiceKind, ServiceStatus, UninstallReport, WINDOWLESS_PROGRAM,
    aumid_key, same_binary,
};

/// Icons looked for beside the binary, for the toasts' IconUri; yaku ships none yet.
const ICONS: [&str; 2] = ["yaku.ico", "yaku.png"];

pub(super) fn install(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    let windowless = windowless(&env.binary);
    if !windowless.is_file() {
        return Err(ServiceError::MissingWindowless {
            looked: windowless,
            beside: env.binary.clone(),
        });
    }
    let previous = query(env, RUN_KEY, RUN_VALUE_NAME);
    let value = render_run_value_for(&windowless, env.config.as_deref());
    let mut commands = Vec::new();
    // `/f` overwrites without asking (stdin is closed, so a prompt would fail).
    reg(
        env,
        &mut commands,
        &[
            "add",
            RUN_KEY,
            "/v",
            RUN_VALUE_NAME,
            "/t",
            "REG_SZ",
            "/d",
            &value,
            "/f",
        ],
    )?;
    let key = aumid_key();
    reg(
        env,
        &mut commands,
        &[
            "add",
            &key,
            "/v",
            "DisplayName",
            "/t",
            "REG_SZ",
            "/d",
            "yaku",
            "/f",
        ],
    )?;
    if let Some(icon) = ICONS
        .iter()
        .map(|name| env.binary.with_file_name(name))
        .find(|p| p.is_file())
    {
        let icon = icon.to_string_lossy();
        reg(
            env,
            &mut commands,
            &[
                "add", &key, "/v", "IconUri", "/t", "REG_SZ", "/d", &icon, "/f",
            ],
        )?;
    }
    // Writing the Run value leaves Task Manager's switch as the user set it.
    let disabled_by_user = approved(env) == Some(false);
    let mut notes = Vec::new();
    if disabled_by_user {
        notes.push(format!(
            "the entry is switched off in Task Manager's Startup apps ({STARTUP_APPROVED_KEY}); \
             yaku leaves that choice to you"
        ));
    }
    Ok(InstallReport {
        kind: ServiceKind::RunKey,
        location: location(),
        replaced: previous.is_some(),
        previous_binary: previous.as_deref().and_then(parse_run_value),
        commands,
        removed: Vec::new(),
        // Windows runs the value at the next sign-in; nothing starts it now.
        started: false,
        notes,
        disabled_by_user,
    })
}

pub(super) fn uninstall(env: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
    let mut report = UninstallReport::default();
    if query(env, RUN_KEY, RUN_VALUE_NAME).is_some() {
        reg(
            env,
            &mut report.commands,
            &["delete", RUN_KEY, "/v", RUN_VALUE_NAME, "/f"],
        )?;
        report.removed.push((ServiceKind::RunKey, location()));
        report
            .notes
            .push("a yaku that is running now keeps running until you quit it".to_owned());
    }
    let key = aumid_key();
    if command::run(&env.reg, &["query", &key], env.command_timeout).is_ok_and(|r| r.success()) {
        reg(env, &mut report.commands, &["delete", &key, "/f"])?;
    }
    Ok(report)
}

pub(super) fn status(env: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
    let mut entries = Vec::new();
    if let Some(value) = query(env, RUN_KEY, RUN_VALUE_NAME) {
        let target = parse_run_value(&value);
        let enabled = approved(env);
        entries.push(EntryStatus {
            kind: ServiceKind::RunKey,
            location: location(),
            points_here: target
                .as_deref()
                .is_some_and(|t| same_binary(t, &windowless(&env.binary))),
            target,
            enabled,
            running: None,
            disabled_by_user: enabled == Some(false),
        });
    }
    Ok(ServiceStatus {
        binary: env.binary.clone(),
        entries,
    })
}

/// `yakuw.exe` beside `binary`.
fn windowless(binary: &Path) -> PathBuf {
    binary.with_file_name(WINDOWLESS_PROGRAM)
}

/// Whether Windows runs yaku's Run value: no StartupApproved value means it never was
/// switched (Windows runs it); `None` when the value is there but unreadable.
fn approved(env: &ServiceEnv) -> Option<bool> {
    match query(env, STARTUP_APPROVED_KEY, RUN_VALUE_NAME) {
        None => Some(true),
        Some(hex) => startup_approved_enabled(&hex),
    }
}

fn location() -> Location {
    Location::RegistryValue {
        key: RUN_KEY.to_owned(),
        name: RUN_VALUE_NAME.to_owned(),
    }
}

/// Runs `reg args…`, recording the command as typed.
fn reg(env: &ServiceEnv, commands: &mut Vec<String>, args: &[&str]) -> Result<(), ServiceError> {
    commands.push(command::display(&env.reg, args));
    command::run_ok(&env.reg, args, env.command_timeout).map(|_| ())
}

/// The data of the value `name` under `key`, if there is one.
fn query(env: &ServiceEnv, key: &str, name: &str) -> Option<String> {
    let args = ["query", key, "/v", name];
    let ran = command::run(&env.reg, &args, env.command_timeout).ok()?;
    if !ran.success() {
        return None; // reg exits 1 when the value does not exist
    }
    parse_reg_query(&ran.stdout, name).map(|(_, data)| data)
}
