//! yaku's directories, from one `ProjectDirs`: config, data (the history store), state (logs)
//! and runtime (the lock and the control socket).

use std::path::{Path, PathBuf};

/// No home directory, so no platform directories.
#[derive(Debug, thiserror::Error)]
#[error("no home directory found: set $HOME")]
pub struct NoHome;

/// The platform's directories for yaku.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `$XDG_CONFIG_HOME/yaku`: config.toml and credentials.toml.
    pub config: PathBuf,
    /// `$XDG_DATA_HOME/yaku`: the history store.
    pub data: PathBuf,
    /// `$XDG_STATE_HOME/yaku` on Linux, else the local data dir: the logs.
    pub state: PathBuf,
    /// `$XDG_RUNTIME_DIR/yaku`, else the state dir: the lock and the control socket.
    pub runtime: PathBuf,
}

impl Dirs {
    pub fn resolve() -> Result<Dirs, NoHome> {
        let project = directories::ProjectDirs::from("", "", "yaku").ok_or(NoHome)?;
        let state = project
            .state_dir()
            .unwrap_or_else(|| project.data_local_dir())
            .to_path_buf();
        let runtime = project
            .runtime_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| state.clone());
        Ok(Dirs {
            config: project.config_dir().to_path_buf(),
            data: project.data_dir().to_path_buf(),
            state,
            runtime,
        })
    }

    /// The default config file.
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }

    /// The default history store.
    pub fn store_file(&self) -> PathBuf {
        self.data.join("yaku.db")
    }

    /// The default log directory.
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
}
