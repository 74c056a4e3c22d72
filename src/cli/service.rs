//! `yaku service install|uninstall|status`: start yaku at login.

use anyhow::Context;

use super::args::ServiceCommand;
use crate::config::credentials::Credentials;
use crate::config::{self, Config, KeyLookup};

pub fn run(config: &Config, cmd: ServiceCommand) -> anyhow::Result<()> {
    use crate::service;
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let dirs = crate::sys::dirs::Dirs::resolve()?;
    let log_dir = config.log_dir(&dirs);
    let mut env = service::ServiceEnv::from_process(binary, log_dir)?;
    // A config other than the default one (`--config`, YAKU_CONFIG) goes into the entry: the
    // service sees neither the flag nor this shell's environment.
    if config.path != dirs.config_file() {
        env.config =
            Some(std::path::absolute(&config.path).with_context(|| {
                format!("cannot make {} an absolute path", config.path.display())
            })?);
    }
    match cmd {
        ServiceCommand::Install => {
            let report = service::install(&env)?;
            println!("{}", report.render());
            for warning in key_warnings(config)? {
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
