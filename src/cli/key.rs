//! `yaku key set|remove|list`: keys in credentials.toml beside the config.

use anyhow::Context;
use serde_json::json;

use super::UsageError;
use super::args::KeyCommand;
use crate::config::credentials::Credentials;
use crate::config::{Config, KeyLookup};
use crate::sys::terminal::read_secret;

pub fn run(config: &Config, cmd: KeyCommand) -> anyhow::Result<()> {
    let cred_path = Credentials::path_for(&config.path);
    match cmd {
        KeyCommand::Set { name } => {
            super::known_provider(config, &name)?;
            let key = read_secret(&format!("API key for {name}: ")).context("cannot read the key")?;
            let key = key.trim();
            if key.is_empty() {
                return Err(UsageError("no key given: nothing was stored".into()).into());
            }
            Credentials::store(&cred_path, &name, Some(key))?;
            println!("stored the key for {name} in {}", cred_path.display());
            Ok(())
        }
        KeyCommand::Remove { name } => {
            Credentials::store(&cred_path, &name, None)?;
            println!(
                "removed any stored key for {name} from {}",
                cred_path.display()
            );
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
