//! Linux: a systemd user unit when a user manager answers, else an XDG autostart entry.

use std::path::{Path, PathBuf};

use super::command::{self, Ran};
use super::render::{
    desktop_entry_enabled, parse_desktop_exec, parse_systemd_exec_start,
    render_autostart_desktop_for, render_systemd_unit_for, systemd_path_problem,
};
use super::{
    EntryStatus, InstallReport, Location, SYSTEMD_UNIT_NAME, ServiceEnv, ServiceError, ServiceKind,
    ServiceStatus, UninstallReport, read_if_exists, remove_if_exists, same_binary, write_file,
};

pub(super) fn install(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    if !user_manager_reachable(env) {
        let why = format!(
            "no systemd user manager is reachable (`{}` failed), so the desktop's autostart \
             starts yaku instead",
            command::display(&env.systemctl, &["--user", "show-environment"])
        );
        return install_autostart(env, why);
    }
    if let Some(problem) = systemd_path_problem(&env.binary) {
        let why = format!(
            "systemd cannot run {} because {problem}, so the desktop's autostart starts yaku \
             instead",
            env.binary.display()
        );
        return install_autostart(env, why);
    }
    install_unit(env)
}

pub(super) fn uninstall(env: &ServiceEnv) -> Result<UninstallReport, ServiceError> {
    let mut report = UninstallReport::default();
    let unit = env.systemd_unit_path();
    let link = wants_link(env);
    if exists(&unit) || exists(&link) {
        let reachable = user_manager_reachable(env);
        if reachable {
            // Go on if it fails: removing the files is still what was asked.
            if let Err(e) = systemctl(
                env,
                &["disable", "--now", SYSTEMD_UNIT_NAME],
                &mut report.commands,
            ) {
                report.notes.push(e.to_string());
            }
        } else {
            report.notes.push(
                "no systemd user manager is reachable, so a running yaku.service was not stopped"
                    .to_owned(),
            );
        }
        for path in [unit, link] {
            if remove_if_exists(&path)? {
                report
                    .removed
                    .push((ServiceKind::SystemdUnit, Location::File(path)));
            }
        }
        if reachable && let Err(e) = systemctl(env, &["daemon-reload"], &mut report.commands) {
            report.notes.push(e.to_string());
        }
    }
    let autostart = env.autostart_path();
    if remove_if_exists(&autostart)? {
        report
            .removed
            .push((ServiceKind::AutostartEntry, Location::File(autostart)));
    }
    Ok(report)
}

pub(super) fn status(env: &ServiceEnv) -> Result<ServiceStatus, ServiceError> {
    let mut entries = Vec::new();
    let unit_path = env.systemd_unit_path();
    if let Some(unit) = read_if_exists(&unit_path)? {
        let (enabled, running) = if user_manager_reachable(env) {
            (
                query(env, "is-enabled")
                    .map(|s| matches!(s.as_str(), "enabled" | "enabled-runtime")),
                query(env, "is-active")
                    .map(|s| matches!(s.as_str(), "active" | "activating" | "reloading")),
            )
        } else {
            (None, None)
        };
        entries.push(entry(
            env,
            ServiceKind::SystemdUnit,
            unit_path,
            parse_systemd_exec_start(&unit),
            enabled,
            running,
        ));
    }
    let autostart_path = env.autostart_path();
    if let Some(desktop) = read_if_exists(&autostart_path)? {
        // The desktop starts it without a trace yaku could check, so running is unknown.
        entries.push(entry(
            env,
            ServiceKind::AutostartEntry,
            autostart_path,
            parse_desktop_exec(&desktop),
            Some(desktop_entry_enabled(&desktop)),
            None,
        ));
    }
    Ok(ServiceStatus {
        binary: env.binary.clone(),
        entries,
    })
}

fn install_unit(env: &ServiceEnv) -> Result<InstallReport, ServiceError> {
    let path = env.systemd_unit_path();
    let previous = read_if_exists(&path)?;
    let unit = render_systemd_unit_for(&env.binary, env.config.as_deref());
    write_file(&path, &unit)?;
    let mut commands = Vec::new();
    systemctl(env, &["daemon-reload"], &mut commands)?;
    if previous.as_deref().is_some_and(|old| old != unit) {
        // `enable --now` leaves a running service alone: restart it on the new unit.
        systemctl(env, &["try-restart", SYSTEMD_UNIT_NAME], &mut commands)?;
    }
    systemctl(env, &["enable", "--now", SYSTEMD_UNIT_NAME], &mut commands)?;
    let mut notes = Vec::new();
    let target = query_unit(env, "is-active", "graphical-session.target");
    if target.as_deref() != Some("active") {
        notes.push(
            "graphical-session.target is not active in this session: if your desktop never \
             starts it (many window managers do not), yaku will not start at login"
                .to_owned(),
        );
    }
    // Only after the unit is enabled, so a failure above leaves the old entry working.
    let mut removed = Vec::new();
    let autostart = env.autostart_path();
    if remove_if_exists(&autostart)? {
        removed.push(Location::File(autostart));
    }
    Ok(InstallReport {
        kind: ServiceKind::SystemdUnit,
        location: Location::File(path),
        replaced: previous.is_some(),
        previous_binary: previous.as_deref().and_then(parse_systemd_exec_start),
        commands,
        removed,
        started: true,
        notes,
        disabled_by_user: false,
    })
}

fn install_autostart(env: &ServiceEnv, why: String) -> Result<InstallReport, ServiceError> {
    let path = env.autostart_path();
    let previous = read_if_exists(&path)?;
    write_file(
        &path,
        &render_autostart_desktop_for(&env.binary, env.config.as_deref()),
    )?;
    let mut notes = vec![why];
    // A unit left from an earlier install would start a second yaku wherever systemd runs it.
    let mut removed = Vec::new();
    for stale in [env.systemd_unit_path(), wants_link(env)] {
        if remove_if_exists(&stale)? {
            removed.push(Location::File(stale));
        }
    }
    if !removed.is_empty() {
        notes.push("a yaku.service that is running now was not stopped".to_owned());
    }
    Ok(InstallReport {
        kind: ServiceKind::AutostartEntry,
        location: Location::File(path),
        replaced: previous.is_some(),
        previous_binary: previous.as_deref().and_then(parse_desktop_exec),
        commands: Vec::new(),
        removed,
        started: false,
        notes,
        disabled_by_user: false,
    })
}

/// `systemctl --user show-environment` answers in time: there is a user manager to talk to.
fn user_manager_reachable(env: &ServiceEnv) -> bool {
    command::run(
        &env.systemctl,
        &["--user", "show-environment"],
        env.probe_timeout,
    )
    .is_ok_and(|ran| ran.success())
}

/// Runs `systemctl --user args...`, noting it in `commands`; a non-zero exit is an error.
fn systemctl(
    env: &ServiceEnv,
    args: &[&str],
    commands: &mut Vec<String>,
) -> Result<Ran, ServiceError> {
    let mut full = vec!["--user"];
    full.extend_from_slice(args);
    commands.push(command::display(&env.systemctl, &full));
    command::run_ok(&env.systemctl, &full, env.command_timeout)
}

/// What `systemctl --user <verb> yaku.service` prints (its exit code only repeats it).
fn query(env: &ServiceEnv, verb: &str) -> Option<String> {
    query_unit(env, verb, SYSTEMD_UNIT_NAME)
}

fn query_unit(env: &ServiceEnv, verb: &str, unit: &str) -> Option<String> {
    let ran = command::run(&env.systemctl, &["--user", verb, unit], env.command_timeout).ok()?;
    let answer = ran.stdout.trim();
    (!answer.is_empty()).then(|| answer.to_owned())
}

/// The link `systemctl enable` makes for `WantedBy=graphical-session.target`.
fn wants_link(env: &ServiceEnv) -> PathBuf {
    env.config_home()
        .join("systemd/user/graphical-session.target.wants")
        .join(SYSTEMD_UNIT_NAME)
}

/// There is something at `path`, even a dangling link.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn entry(
    env: &ServiceEnv,
    kind: ServiceKind,
    path: PathBuf,
    target: Option<PathBuf>,
    enabled: Option<bool>,
    running: Option<bool>,
) -> EntryStatus {
    EntryStatus {
        kind,
        location: Location::File(path),
        points_here: target
            .as_deref()
            .is_some_and(|t| same_binary(t, &env.binary)),
        target,
        enabled,
        running,
        disabled_by_user: false,
    }
}
