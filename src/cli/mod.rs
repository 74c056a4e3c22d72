//! The command line: clap definitions (`args`), dispatch, errors → exit codes, and one file
//! per command. Nothing below this layer imports it.

pub mod args;
mod assets;
mod check;
mod config;
mod control;
mod history;
mod key;
mod logs;
mod pick;
mod prefetch;
pub mod probe;
pub mod service;
pub mod setup;
mod stats;
mod translate;
pub mod windowless;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::config::{Config, ConfigError};
use args::{Cli, Command, ConfigCommand};

/// Exit codes beyond 0 (success) and 2 (usage, from clap).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NO_PROVIDER: u8 = 3;
    pub const CONFIG: u8 = crate::config::EXIT_CONFIG as u8;
}

/// A usage error found after parsing (an unknown provider name, nothing to translate).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Every provider failed for the line; the details were already printed.
#[derive(Debug, thiserror::Error)]
#[error("no provider could translate the line")]
pub struct NoProvider;

/// The daemon is not running (exit 1 with that message).
#[derive(Debug, thiserror::Error)]
#[error("yaku is not running")]
pub struct NotRunning;

/// At least one provider cannot translate: exit 1 after the report.
#[derive(Debug, thiserror::Error)]
#[error("no provider can translate")]
pub struct CheckFailed;

/// A [`UsageError`] naming the configured providers when `name` is not one of them.
fn known_provider(config: &Config, name: &str) -> Result<(), UsageError> {
    if config.providers.iter().any(|p| p.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    Err(UsageError(format!(
        "no provider named \"{name}\"; configured: {}",
        names.join(", ")
    )))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        init_logging();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if err.downcast_ref::<CheckFailed>().is_some() {
                // The report already said why.
            } else if err.downcast_ref::<NotRunning>().is_some() {
                eprintln!("{err}");
            } else if code != exit::NO_PROVIDER {
                eprintln!("yaku: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ConfigError>().is_some() {
        exit::CONFIG
    } else if err.downcast_ref::<UsageError>().is_some() {
        exit::USAGE
    } else if err.downcast_ref::<NoProvider>().is_some() {
        exit::NO_PROVIDER
    } else {
        exit::FAILURE
    }
}

/// Logs go to stderr, filtered by `YAKU_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YAKU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let path = crate::config::config_path(cli.config.as_deref())?;
    let load = || Config::load(&path);
    match cli.command {
        Command::Config(ConfigCommand::Path) => {
            println!("{}", path.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Init { force }) => config::init(&path, force),
        Command::Service(cmd @ args::ServiceCommand::Status { .. }) => {
            service::run(&load_for_reading(&path)?, cmd)
        }
        Command::Service(cmd) => service::run(&load()?, cmd),
        Command::Key(cmd @ args::KeyCommand::List { .. }) => {
            key::run(&load_for_reading(&path)?, cmd)
        }
        Command::Key(cmd) => key::run(&load()?, cmd),
        Command::Completions { shell } => assets::completions(shell),
        Command::Man => assets::man(),
        Command::Setup => setup::run(&path),
        Command::Assets { dir, binary } => assets::write(&dir, &binary),
        Command::Status { json } => control::status(json),
        Command::Check { json, offline } => check::run(&path, json, offline),
        Command::Pause { duration } => control::pause(duration.as_deref()),
        Command::Resume => control::resume(),
        Command::Reload => control::reload(),
        Command::Stop => control::stop(),
        Command::History(args) => history::run(&load_for_reading(&path)?, args),
        Command::Stats { json, since, game } => {
            stats::run(&load_for_reading(&path)?, json, &since, game.as_deref())
        }
        Command::Logs { follow } => logs::run(&load_for_reading(&path)?, follow),
        Command::Run => crate::daemon::run(&load()?),
        Command::Translate(args) => translate::run(&load()?, args),
        Command::Prefetch(args) => prefetch::run(&load()?, args),
        Command::Pick { n } => pick::run(&load_for_reading(&path)?, n),
    }
}

/// The config for a command that only looks at yaku's files (logs, history, stats, key list,
/// service status): a broken config is said on stderr, with the default paths used instead, so
/// the reader can still see what happened. `run` and `translate` still refuse it (exit 78).
fn load_for_reading(path: &std::path::Path) -> anyhow::Result<Config> {
    let err = match Config::load(path) {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let mut config = Config::defaults()?;
    config.path = path.to_path_buf();
    eprintln!("yaku: the config is broken: {err}");
    eprintln!("yaku: {}", fallback_paths(&config));
    Ok(config)
}

/// "using the defaults instead: logs in …, history in …, keys in …".
pub(crate) fn fallback_paths(config: &Config) -> String {
    let dirs = crate::sys::dirs::Dirs::resolve();
    let logs = dirs.as_ref().map_or_else(
        |e| format!("(none: {e})"),
        |d| config.log_dir(d).display().to_string(),
    );
    let store = crate::wire::store_path(config)
        .map_or_else(|e| format!("(none: {e})"), |p| p.display().to_string());
    format!(
        "using the defaults instead: logs in {logs}, history in {store}, keys in {}",
        crate::config::credentials::Credentials::path_for(&config.path).display()
    )
}
