//! macOS: a LaunchAgent in `~/Library/LaunchAgents`, loaded into the user's GUI domain.

use super::command;
use super::render::{LAUNCH_AGENT_LABEL, parse_launch_agent_program, render_launch_agent_for};
use super::{
    EntryStatus, InstallReport, Location, ServiceEnv, ServiceError, ServiceKind, ServiceStatus,
    UninstallReport, read_if_exists, remove_if_exists, same_binary, write_file,
};

pub(super) fn install(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    let path = env.launch_agent_path();
    let previous = read_if_exists(&path)?;
    // launchd opens the log files but does not create their directory.
    std::fs::create_dir_all(&env.log_dir).map_err(|source| ServiceError::Io {
        action: "create",
        path: env.log_dir.clone(),
        source,
    })?;
    write_file(
        &path,
        &render_launch_agent_for(&env.binary, &env.log_dir, env.config.as_deref()),
    )?;
    let plist = path.to_string_lossy().into_owned();
    let mut commands = Vec::new();
    let target = service_target();
    if loaded(env) {
        // bootstrap refuses a label that is already loaded; the old one may run an old binary.
        let args: [&str; 2] = ["bootout", &target];
        commands.push(command::display(&env.launchctl, &args));
        command::run_ok(&env.launchctl, &args, env.command_timeout)?;
    }
    let domain = domain();
    let args: [&str; 3] = ["bootstrap", &domain, &plist];
    commands.push(command::display(&env.launchctl, &args));
    command::run_ok(&env.launchctl, &args, env.command_timeout)?;
    Ok(InstallReport {
        kind: ServiceKind::LaunchAgent,
        location: Location::File(path),
        replaced: previous.is_some(),
        previous_binary: previous.as_deref().and_then(parse_launch_agent_program),
        commands,
        removed: Vec::new(),
        started: true,
        notes: Vec::new(),
        disabled_by_user: false,
    })
}

pub(super) fn uninstall(env: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
    let mut report = UninstallReport::default();
    let path = env.launch_agent_path();
    if loaded(env) {
        let target = service_target();
        let args: [&str; 2] = ["bootout", &target];
        report
            .commands
            .push(command::display(&env.launchctl, &args));
        // Go on if it fails: removing the file is still what was asked.
        if let Err(e) = command::run_ok(&env.launchctl, &args, env.command_timeout) {
            report.notes.push(e.to_string());
        }
    }
    if remove_if_exists(&path)? {
        report
            .removed
            .push((ServiceKind::LaunchAgent, Location::File(path)));
    }
    Ok(report)
}

pub(super) fn status(env: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
    let mut entries = Vec::new();
    let path = env.launch_agent_path();
    if let Some(plist) = read_if_exists(&path)? {
        let target = parse_launch_agent_program(&plist);
        let printed = launchctl_print(env);
        entries.push(EntryStatus {
            kind: ServiceKind::LaunchAgent,
            location: Location::File(path),
            points_here: target
                .as_deref()
                .is_some_and(|t| same_binary(t, &env.binary)),
            target,
            // Loaded into the GUI domain: launchd runs it at each login.
            enabled: Some(printed.is_some()),
            running: Some(printed.is_some_and(|text| text.contains("state = running"))),
            disabled_by_user: false,
        });
    }
    Ok(ServiceStatus {
        binary: env.binary.clone(),
        entries,
    })
}

/// `gui/<uid>`: the launchd domain of the logged-in user's session.
fn domain() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    format!("gui/{uid}")
}

/// `gui/<uid>/io.github.yaku`.
fn service_target() -> String {
    format!("{}/{LAUNCH_AGENT_LABEL}", domain())
}

/// What `launchctl print` says about the agent, if it is loaded.
fn launchctl_print(env: &ServiceEnv) -> Option<String> {
    let target = service_target();
    let ran = command::run(&env.launchctl, &["print", &target], env.command_timeout).ok()?;
    ran.success().then_some(ran.stdout)
}

fn loaded(env: &ServiceEnv) -> bool {
    launchctl_print(env).is_some()
}
