//! `yaku key set|remove|list`: keys in credentials.toml beside the config.

use anyhow::Context;
use serde_json::json;

use super::UsageError;
use super::args::KeyCommand;
use crate::config::credentials::Credentials;
use crate::config::{Config, KeyLookup, ProviderConfig};
use crate::sys::terminal::read_secret;

pub fn run(config: &Config, cmd: KeyCommand) -> anyhow::Result<()> {
    let cred_path = Credentials::path_for(&config.path);
    match cmd {
        KeyCommand::Set { name, no_test } => {
            super::known_provider(config, &name)?;
            let key =
                read_secret(&format!("API key for {name}: ")).context("cannot read the key")?;
            let key = key.trim();
            if key.is_empty() {
                return Err(UsageError("no key given: nothing was stored".into()).into());
            }
            let warning = match config.providers.iter().find(|p| p.name == name) {
                Some(p) if !no_test => test_key(p, config, key)?,
                _ => None,
            };
            Credentials::store(&cred_path, &name, Some(key))?;
            println!("stored the key for {name} in {}", cred_path.display());
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            Ok(())
        }
        KeyCommand::Remove { name } => {
            if Credentials::load(&cred_path)?.get(&name).is_none() {
                println!(
                    "no key stored for {name} in {}: nothing to remove",
                    cred_path.display()
                );
                return Ok(());
            }
            Credentials::store(&cred_path, &name, None)?;
            println!("removed the key for {name} from {}", cred_path.display());
            Ok(())
        }
        KeyCommand::List { json: as_json } => {
            let credentials = Credentials::load(&cred_path)?;
            let env = |var: &str| std::env::var(var).ok();
            let mut rows = Vec::new();
            for p in &config.providers {
                let (found, source) = match p.key(env, &credentials, config.source.as_deref()) {
                    Ok(KeyLookup::Found { source, .. }) => (true, source.to_string()),
                    Ok(KeyLookup::NotNeeded) => (true, "no key needed".to_string()),
                    Ok(KeyLookup::Missing { hint }) => (false, format!("missing — {hint}")),
                    Err(e) => (false, format!("refused — {e}")),
                };
                rows.push((p.name.clone(), found, source));
            }
            if as_json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(name, found, source)| json!({ "provider": name, "found": found, "source": source }))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for (name, found, source) in rows {
                    println!("{name:<12} {:<4} {source}", if found { "ok" } else { "--" });
                }
            }
            Ok(())
        }
    }
}

/// A key the provider rejected: it was not stored (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{name} rejected the key ({reason}); nothing was stored")]
struct KeyRejected {
    name: String,
    reason: String,
}

/// Tests `key` with one request, as setup does. A rejected key is an error; a provider that
/// could not be reached, or that failed for a reason other than the key, gives a warning to
/// print once the key is stored.
fn test_key(p: &ProviderConfig, config: &Config, key: &str) -> anyhow::Result<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let c = runtime.block_on(super::probe::check_typed_key(p, config, key));
    Ok(match c.outcome {
        "ok" => {
            println!("tested the key for {}: {}", p.name, c.message);
            None
        }
        "rate_limited" => {
            println!("tested the key for {}: it works, but {}", p.name, c.message);
            None
        }
        "unauthorized" => {
            return Err(KeyRejected {
                name: p.name.clone(),
                reason: "unauthorized".into(),
            }
            .into());
        }
        "transient" => Some(format!(
            "could not reach {} to test the key ({}); it was stored untested — \
             `yaku check` tests it later",
            p.name, c.message
        )),
        _ => Some(format!(
            "{} did not reject the key, but the test request failed: {}",
            p.name, c.message
        )),
    })
}
