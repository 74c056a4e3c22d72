//! Edits apply while reading: the config file and every glossary file it names are watched,
//! and a saved change reloads the config exactly as `yaku reload` does (a broken file is
//! refused there, the running config kept). The parent directories are watched, not the
//! files, so an editor that saves by writing a temporary file and renaming it over the old
//! one is followed; events are filtered by path. On Windows the directories are watched by
//! `watch/windows.rs` (notify's backend there wakes ten times a second while idle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::control::ReloadRequest;
use crate::config::Config;

/// Events closer together than this are one save (editors write, truncate and rename).
const DEBOUNCE: Duration = Duration::from_millis(200);

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::DirChanges;

/// The directory watch elsewhere: notify's, through its debouncer.
#[cfg(not(windows))]
struct DirChanges(
    notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
);

#[cfg(not(windows))]
impl DirChanges {
    fn new(changes: mpsc::Sender<Vec<PathBuf>>) -> Result<Self, String> {
        use notify_debouncer_mini::{DebounceEventResult, new_debouncer};
        new_debouncer(DEBOUNCE, move |res: DebounceEventResult| match res {
            Ok(events) => {
                // Full: a reload is already coming, which reads every file afresh.
                let _ = changes.try_send(events.into_iter().map(|e| e.path).collect());
            }
            Err(e) => tracing::warn!(error = %e, "watching the config files failed"),
        })
        .map(DirChanges)
        .map_err(|e| e.to_string())
    }

    fn watch(&mut self, dir: &Path) -> Result<(), String> {
        use notify_debouncer_mini::notify::RecursiveMode;
        self.0
            .watcher()
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| e.to_string())
    }
}

/// The files a config depends on, as absolute paths: itself, its glossary files and the
/// look-ahead script.
fn watched_files(config_path: &Path) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    // A config that does not load keeps only itself watched: fixing it is the next change.
    if let Ok(c) = Config::load(config_path) {
        files.extend(c.glossary_files);
        // A saved script is read again too (a reload keeps the position on an unchanged one).
        files.extend(c.lookahead.script);
    }
    files
        .into_iter()
        .filter_map(|f| std::path::absolute(f).ok())
        .collect()
}

/// What each file holds now (None: missing or unreadable), to tell a real change from an
/// editor touching a file or a save that changed nothing.
fn snapshot(files: &[PathBuf]) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).ok()))
        .collect()
}

/// Watches until the daemon stops; a failure to watch is logged once and reloading stays
/// available through `yaku reload` and SIGHUP.
pub async fn watch_config(config_path: PathBuf, reloads: mpsc::Sender<ReloadRequest>) {
    let (tx, mut rx) = mpsc::channel::<Vec<PathBuf>>(16);
    let mut watcher = match DirChanges::new(tx) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file: edits apply on `yaku reload`");
            return;
        }
    };
    let mut files = watched_files(&config_path);
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut seen = snapshot(&files);
    let mut announced = false;
    loop {
        for dir in files.iter().filter_map(|f| f.parent()) {
            if !dirs.contains(dir) {
                match watcher.watch(dir) {
                    Ok(()) => {
                        dirs.insert(dir.to_path_buf());
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch this directory: edits to its files apply on `yaku reload`")
                    }
                }
            }
        }
        if announced {
            tracing::debug!(files = ?files, "watching the config and glossary files");
        } else {
            // Once, at start: an edit saved from now on applies without a command.
            tracing::info!(
                files = files.len(),
                "watching the config files for saved edits"
            );
            announced = true;
        }
        let Some(paths) = rx.recv().await else { return };
        #[cfg(windows)]
        let paths = windows::settle(paths, &mut rx).await;
        // No paths: something in a watched directory changed; the snapshot tells what.
        if !paths.is_empty() && !paths.iter().any(|p| files.contains(p)) {
            continue;
        }
        let now = snapshot(&files);
        if now == seen {
            continue;
        }
        tracing::info!("a config or glossary file changed: reloading");
        let (reply, done) = tokio::sync::oneshot::channel();
        if reloads.send(reply).await.is_err() {
            return;
        }
        let _ = done.await;
        // A reload may name other glossary files.
        files = watched_files(&config_path);
        seen = snapshot(&files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_and_every_glossary_file_it_names_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("games");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(dir.path().join("global.tsv"), "a\tb\n").unwrap();
        std::fs::write(sub.join("sakura.tsv"), "c\td\n").unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[translation]\nglossary_file = \"global.tsv\"\n[[games]]\nname = \"s\"\nmatch = \"s\"\nglossary_file = \"games/sakura.tsv\"\n",
        )
        .unwrap();
        assert_eq!(
            watched_files(&config),
            [
                config.clone(),
                dir.path().join("global.tsv"),
                sub.join("sakura.tsv")
            ]
        );
        std::fs::write(&config, "[translation\n").unwrap();
        assert_eq!(watched_files(&config), [config]);
    }
}
