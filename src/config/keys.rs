//! Where each provider's key comes from: the environment, credentials.toml, or the config
//! file itself (only when that file is private).

use std::fmt;
use std::path::Path;

use super::*;
use crate::sys::private::check_private;

/// Where a provider's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable named by `api_key_env`.
    Env(String),
    /// `api_key` in the config file.
    ConfigFile,
    /// `credentials.toml`, written by `yaku key set`.
    Credentials,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "environment variable {var}"),
            KeySource::ConfigFile => f.write_str("api_key in the config file"),
            KeySource::Credentials => f.write_str("credentials file (yaku key set)"),
        }
    }
}

/// The result of looking up a provider's key.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyLookup {
    Found {
        key: String,
        source: KeySource,
    },
    /// The provider needs no key (a keyless local server).
    NotNeeded,
    /// No key was found; `hint` says how to give one.
    Missing {
        hint: String,
    },
}

impl fmt::Debug for KeyLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLookup::Found { source, .. } => write!(f, "Found({source:?})"),
            KeyLookup::NotNeeded => f.write_str("NotNeeded"),
            KeyLookup::Missing { hint } => write!(f, "Missing({hint:?})"),
        }
    }
}

impl ProviderConfig {
    /// Looks the key up: the `api_key_env` variable, then the credentials file (`yaku key
    /// set`), then `api_key` in the config file, which is refused (a config error) when the
    /// file is readable by group or others.
    pub fn key(
        &self,
        env: impl Fn(&str) -> Option<String>,
        credentials: &crate::config::credentials::Credentials,
        config_file: Option<&Path>,
    ) -> Result<KeyLookup, ConfigError> {
        if let Some(var) = &self.api_key_env
            && let Some(key) = env(var)
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        {
            return Ok(KeyLookup::Found {
                key,
                source: KeySource::Env(var.clone()),
            });
        }
        if let Some(key) = credentials.get(&self.name) {
            return Ok(KeyLookup::Found {
                key: key.trim().to_string(),
                source: KeySource::Credentials,
            });
        }
        if let Some(key) = &self.api_key {
            if let Some(path) = config_file {
                check_private(path).map_err(|message| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: self.api_key_line,
                    key: format!("providers.{}.api_key", self.name),
                    message,
                })?;
            }
            return Ok(KeyLookup::Found {
                key: key.trim().to_string(),
                source: KeySource::ConfigFile,
            });
        }
        match &self.api_key_env {
            Some(var) => Ok(KeyLookup::Missing {
                hint: format!(
                    "run `yaku key set {}` (or set {var} in the environment yaku runs in)",
                    self.name
                ),
            }),
            None if self.kind == ProviderKind::Gemini => Ok(KeyLookup::Missing {
                hint: format!("run `yaku key set {}`", self.name),
            }),
            None => Ok(KeyLookup::NotNeeded),
        }
    }

    /// What to tell a user whose key was rejected.
    pub fn key_advice(&self, source: Option<&KeySource>) -> String {
        match source {
            Some(KeySource::Env(var)) => format!("the key was rejected: check {var}"),
            Some(KeySource::ConfigFile) => {
                "the key was rejected: check `api_key` in the config".into()
            }
            Some(KeySource::Credentials) | None => {
                format!("the key was rejected: run `yaku key set {}`", self.name)
            }
        }
    }
}
