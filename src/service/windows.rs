//! Windows: the `yaku` value under the user's `Run` key, written with `reg.exe`.

use super::command;
use super::render::{parse_run_value, render_run_value_for};
use super::{
    EntryStatus, InstallReport, Location, RUN_KEY, RUN_VALUE_NAME, ServiceEnv, ServiceError,
    ServiceKind, ServiceStatus, UninstallReport, same_binary,
};

pub(super) fn install(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    let previous = query(env);
    let value = render_run_value_for(&env.binary, env.config.as_deref());
    // `/f` overwrites without asking (stdin is closed, so a prompt would fail).
    let args: [&str; 9] = [
        "add",
        RUN_KEY,
        "/v",
        RUN_VALUE_NAME,
        "/t",
        "REG_SZ",
        "/d",
        &value,
        "/f",
    ];
    let commands = vec![command::display(&env.reg, &args)];
    command::run_ok(&env.reg, &args, env.command_timeout)?;
    Ok(InstallReport {
        kind: ServiceKind::RunKey,
        location: location(),
        replaced: previous.is_some(),
        previous_binary: previous.as_deref().and_then(parse_run_value),
        commands,
        removed: Vec::new(),
        // Windows runs the value at the next sign-in; nothing starts it now.
        started: false,
        notes: Vec::new(),
    })
}

pub(super) fn uninstall(env: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
    let mut report = UninstallReport::default();
    if query(env).is_some() {
        let args = ["delete", RUN_KEY, "/v", RUN_VALUE_NAME, "/f"];
        report.commands.push(command::display(&env.reg, &args));
        command::run_ok(&env.reg, &args, env.command_timeout)?;
        report.removed.push((ServiceKind::RunKey, location()));
        report
            .notes
            .push("a yaku that is running now keeps running until you quit it".to_owned());
    }
    Ok(report)
}

pub(super) fn status(env: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
    let mut entries = Vec::new();
    if let Some(value) = query(env) {
        let target = parse_run_value(&value);
        entries.push(EntryStatus {
            kind: ServiceKind::RunKey,
            location: location(),
            points_here: target
                .as_deref()
                .is_some_and(|t| same_binary(t, &env.binary)),
            target,
            // Task Manager can switch a Run value off elsewhere (StartupApproved); not read.
            enabled: None,
            running: None,
        });
    }
    Ok(ServiceStatus {
        binary: env.binary.clone(),
        entries,
    })
}

fn location() -> Location {
    Location::RegistryValue {
        key: RUN_KEY.to_owned(),
        name: RUN_VALUE_NAME.to_owned(),
    }
}

/// The data of the `yaku` value, if there is one.
fn query(env: &ServiceEnv) -> Option<String> {
    let args = ["query", RUN_KEY, "/v", RUN_VALUE_NAME];
    let ran = command::run(&env.reg, &args, env.command_timeout).ok()?;
    if !ran.success() {
        return None; // reg exits 1 when the value does not exist
    }
    parse_query_output(&ran.stdout)
}

/// The data on the `    yaku    REG_SZ    <data>` line of `reg query` output.
fn parse_query_output(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = line.trim_start();
        let rest = rest.strip_prefix(RUN_VALUE_NAME)?;
        let rest = rest.trim_start();
        let (kind, data) = rest.split_once(char::is_whitespace)?;
        kind.starts_with("REG_").then(|| data.trim().to_owned())
    })
}
