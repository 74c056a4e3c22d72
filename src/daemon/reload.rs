//! Reloading the config while running: from the control socket or SIGHUP. A new config is
//! fully built before it replaces the old one, so a broken file never stops a working daemon.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
use super::control::ReloadRequest;
use crate::config::Config;
use crate::core::clock::Clock;
use crate::core::daemon::{DaemonCommand, Reconfig};
use crate::core::notice::Notice;
use crate::wire::{self, Parts};

/// Reads the config again and hands the daemon its new parts. A broken config is refused
/// (logged and shown) and the running one stays in force.
pub async fn reload(
    path: &Path,
    clock: Arc<dyn Clock>,
    commands: &tokio::sync::mpsc::Sender<DaemonCommand>,
    interval_ms: &AtomicU64,
) -> Result<(), String> {
    let built = Config::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|c| Ok((wire::build_parts(&c, clock)?, c)));
    match built {
        Ok((
            Parts {
                chain,
                gates,
                settings,
            },
            config,
        )) => {
            interval_ms.store(
                config.clipboard.poll_interval.as_millis() as u64,
                Ordering::Relaxed,
            );
            let _ = commands
                .send(DaemonCommand::Reconfigure(Box::new(Reconfig {
                    chain,
                    gates,
                    settings,
                })))
                .await;
            tracing::info!(config = %path.display(), "reloaded the config");
            Ok(())
        }
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(
                "the new config was rejected; the running one stays in force: {message}"
            );
            let notice = Notice {
                summary: "yaku: config not reloaded".into(),
                body: crate::core::notice::escape(&format!(
                    "{message} — the running config stays in force."
                )),
            };
            let _ = commands.send(DaemonCommand::Notify(notice)).await;
            Err(message)
        }
    }
}

/// Asks a reload for each SIGHUP on `hup` (registered at start, see `daemon::run`).
#[cfg(unix)]
pub async fn reload_on_sighup(
    hup: Option<tokio::signal::unix::Signal>,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
) {
    let Some(mut hup) = hup else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        if reloads.send(tx).await.is_err() {
            return;
        }
    }
}
