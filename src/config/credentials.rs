//! `credentials.toml` beside the config: the keys `yaku key set` stores, so that a login
//! service (which does not inherit the shell's environment) can reach them. The file is 0600
//! in a 0700 directory, and is refused when others can read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::sys::private::{check_private, create_private_dir, write_private};

/// The stored keys, by provider name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    path: Option<PathBuf>,
    keys: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

impl Credentials {
    /// `credentials.toml` in the config file's directory.
    pub fn path_for(config_path: &Path) -> PathBuf {
        config_path.parent().map_or_else(
            || PathBuf::from("credentials.toml"),
            |d| d.join("credentials.toml"),
        )
    }

    /// Loads the file; a missing file holds no keys. A file others can read is refused.
    pub fn load(path: &Path) -> Result<Credentials, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials {
                    path: Some(path.to_path_buf()),
                    keys: BTreeMap::new(),
                });
            }
            Err(e) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    message: format!("cannot be read: {e}"),
                });
            }
        };
        check_private(path).map_err(|message| ConfigError::File {
            path: path.to_path_buf(),
            message,
        })?;
        let raw: RawCredentials = toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            // toml's message may quote the offending line, which could hold a key: only the place.
            message: format!(
                "is not a valid credentials file (line {}); rewrite it with `yaku key set`",
                e.span().map_or(1, |s| 1 + text[..s.start.min(text.len())]
                    .matches('\n')
                    .count())
            ),
        })?;
        Ok(Credentials {
            path: Some(path.to_path_buf()),
            keys: raw.keys,
        })
    }

    /// The stored key for `provider`.
    pub fn get(&self, provider: &str) -> Option<&str> {
        self.keys
            .get(provider)
            .map(String::as_str)
            .filter(|k| !k.trim().is_empty())
    }

    /// Providers with a stored key.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Stores `key` for `provider` in the file at `path` (0600, in a 0700 directory), written
    /// to a temporary file first so a crash never leaves a half-written file.
    pub fn store(path: &Path, provider: &str, key: Option<&str>) -> Result<(), ConfigError> {
        let mut current = Credentials::load(path)?;
        match key {
            Some(k) => current
                .keys
                .insert(provider.to_string(), k.trim().to_string()),
            None => current.keys.remove(provider),
        };
        let raw = RawCredentials { keys: current.keys };
        let body = toml::to_string(&raw).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: format!("cannot be written: {e}"),
        })?;
        let text = format!(
            "# API keys stored by `yaku key set`. Keep this file private (chmod 600).\n{body}"
        );
        let io = |e: std::io::Error| ConfigError::File {
            path: path.to_path_buf(),
            message: format!("cannot be written: {e}"),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        write_private(&tmp, text.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}
