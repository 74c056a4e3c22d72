//! `yaku service install|uninstall|status`: start yaku at login.

use anyhow::Context;

use super::args::ServiceCommand;
use crate::config::credentials::Credentials;
use crate::config::{self, Config, KeyLookup};
use crate::service;

/// Where the service runs this binary from, its log dir, and the config it is given: a config
/// other than the default one (`--config`, YAKU_CONFIG) goes into the entry, since the
/// service sees neither the flag nor this shell's environment.
fn service_env(config: &Config) -> anyhow::Result<service::ServiceEnv> {
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let dirs = crate::sys::dirs::Dirs::resolve()?;
    let mut env = service::ServiceEnv::from_process(binary, config.log_dir(&dirs))?;
    if config.path != dirs.config_file() {
        env.config =
            Some(std::path::absolute(&config.path).with_context(|| {
                format!("cannot make {} an absolute path", config.path.display())
            })?);
    }
    Ok(env)
}

/// Installs the login service (also setup's step): what was done, and a warning per key the
/// service will not see.
pub fn install(config: &Config) -> anyhow::Result<(String, Vec<String>)> {
    let report = service::install(&service_env(config)?)?;
    Ok((report.render(), key_warnings(config)?))
}

pub fn run(config: &Config, cmd: ServiceCommand) -> anyhow::Result<()> {
    let env = service_env(config)?;
    match cmd {
        ServiceCommand::Install => {
            let (report, warnings) = install(config)?;
            println!("{report}");
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        ServiceCommand::Uninstall => {
            println!("{}", service::uninstall(&env)?.render());
            Ok(())
        }
        ServiceCommand::Status { json: as_json } => {
            let mut status = service::status(&env)?;
            // An autostart entry (or a manager that did not answer) cannot say whether yaku
            // runs; the control socket can.
            if status.entries.iter().any(|e| e.running.is_none()) {
                let running = match super::control::request(crate::protocol::Request::Status) {
                    Ok(_) => Some(true),
                    Err(e) if e.downcast_ref::<super::NotRunning>().is_some() => Some(false),
                    Err(_) => None,
                };
                for e in status.entries.iter_mut().filter(|e| e.running.is_none()) {
                    e.running = running;
                }
            }
            if as_json {
                println!("{}", status.to_json());
            } else {
                println!("{}", status.render());
            }
            Ok(())
        }
    }
}

/// Providers whose key only this shell's environment holds: a login service will not see it.
pub fn key_warnings(config: &Config) -> anyhow::Result<Vec<String>> {
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let env = |var: &str| std::env::var(var).ok();
    let mut out = Vec::new();
    for p in &config.providers {
        if let Ok(KeyLookup::Found {
            source: config::KeySource::Env(var),
            ..
        }) = p.key(env, &credentials, config.source.as_deref())
        {
            let no_env = |_: &str| None;
            let elsewhere = matches!(
                p.key(no_env, &credentials, config.source.as_deref()),
                Ok(KeyLookup::Found { .. })
            );
            if !elsewhere {
                out.push(format!(
                    "{}'s key is only in this shell's {var}; the login service will not see it. \
                     Run `yaku key set {}` to store it where the service can read it.",
                    p.name, p.name
                ));
            }
        }
    }
    Ok(out)
}
