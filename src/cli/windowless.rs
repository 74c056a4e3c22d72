//! What `yakuw.exe` runs: `yaku run [--config FILE]` with nowhere to print. An error a console
//! would show (a broken config, a daemon that stops on an error) goes to the log file that
//! `yaku logs` names and into a message box, since the reader would otherwise see nothing.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command};
use super::exit;
use crate::config::{Config, ConfigError};

/// Parses `yakuw.exe [--config FILE] [run]` (no arguments at all, as from a double-click, is
/// `run`), then runs the daemon as `yaku.exe run` does.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_run(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            message_box(&e.to_string());
            return ExitCode::from(exit::USAGE);
        }
    };
    if !matches!(cli.command, Command::Run) {
        message_box(
            "yakuw.exe only runs the daemon (yakuw.exe run [--config FILE]); \
             use yaku.exe for every other command.",
        );
        return ExitCode::from(exit::USAGE);
    }
    let loaded =
        crate::config::config_path(cli.config.as_deref()).and_then(|path| Config::load(&path));
    match loaded {
        Ok(config) => match crate::daemon::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            // `run` has logged it; the message box is for the reader who sees no log.
            Err(e) => {
                message_box(&format!("yaku stopped: {e:#}"));
                ExitCode::from(exit::FAILURE)
            }
        },
        Err(e) => {
            log_startup_error(&e);
            message_box(&format!("yaku cannot start: {e}"));
            ExitCode::from(exit::CONFIG)
        }
    }
}

/// The arguments with `run` added when none were given.
fn with_run(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.len() <= 1 {
        args.truncate(1);
        if args.is_empty() {
            args.push("yakuw".into());
        }
        args.push("run".into());
    }
    args
}

/// The error in the default log directory's current file (the broken config cannot say
/// where else), through the daemon's own log writer, so `yaku logs` shows it.
fn log_startup_error(err: &ConfigError) {
    let Ok(defaults) = Config::defaults() else {
        return;
    };
    let Ok(dirs) = crate::sys::dirs::Dirs::resolve() else {
        return;
    };
    let dir = defaults.log_dir(&dirs);
    let guard = crate::daemon::logging::init(&defaults.log, &dir);
    tracing::error!("yaku cannot start: {err}");
    drop(guard);
}

#[cfg(windows)]
fn message_box(text: &str) {
    use windows_sys::Win32::UI::WindowsAndMessaging::{MB_ICONERROR, MB_OK, MessageBoxW};
    let wide = |s: &str| s.encode_utf16().chain([0]).collect::<Vec<u16>>();
    let (text, caption) = (wide(text), wide("yaku"));
    // SAFETY: both strings are NUL-terminated UTF-16 that outlive the call; no owner window.
    unsafe {
        MessageBoxW(
            std::ptr::null_mut(),
            text.as_ptr(),
            caption.as_ptr(),
            MB_OK | MB_ICONERROR,
        );
    }
}

#[cfg(not(windows))]
fn message_box(text: &str) {
    eprintln!("yaku: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_run_the_daemon_and_given_ones_are_kept() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let cases: [(&[&str], &[&str]); 4] = [
            (&["yakuw.exe"], &["yakuw.exe", "run"]),
            (&[], &["yakuw", "run"]),
            (&["yakuw.exe", "run"], &["yakuw.exe", "run"]),
            (
                &["yakuw.exe", "run", "--config", "C:\\y.toml"],
                &["yakuw.exe", "run", "--config", "C:\\y.toml"],
            ),
        ];
        for (given, want) in cases {
            assert_eq!(with_run(os(given)), os(want), "{given:?}");
        }
    }

    #[test]
    fn the_windowless_arguments_parse_as_yaku_run() {
        let cli = Cli::try_parse_from(with_run(vec!["yakuw.exe".into()])).unwrap();
        assert!(matches!(cli.command, Command::Run));
    }
}
