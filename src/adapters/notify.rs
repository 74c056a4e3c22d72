//! Desktop notifications through notify-rust. Each notification replaces yaku's previous one
//! (the same id) instead of piling up.

use std::sync::Mutex;

use crate::core::clock::BoxFuture;
use crate::core::daemon::Notifier;
use crate::core::notice::Notice;

pub struct DesktopNotifier {
    /// The server's id for our last notification, reused so the next one replaces it.
    last_id: Mutex<Option<u32>>,
    timeout_ms: u32,
}

impl DesktopNotifier {
    /// `timeout_ms` 0 leaves the display time to the notification server.
    pub fn new(timeout_ms: u32) -> Self {
        Self {
            last_id: Mutex::new(None),
            timeout_ms,
        }
    }

    fn build(&self, notice: &Notice) -> notify_rust::Notification {
        let mut n = notify_rust::Notification::new();
        n.appname("yaku")
            .summary(&notice.summary)
            .body(&notice.body);
        n.timeout(if self.timeout_ms == 0 {
            notify_rust::Timeout::Default
        } else {
            notify_rust::Timeout::Milliseconds(self.timeout_ms)
        });
        if let Some(id) = *self.last_id.lock().unwrap_or_else(|e| e.into_inner()) {
            n.id(id);
        }
        n
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
impl Notifier for DesktopNotifier {
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let handle = self
                .build(notice)
                .show_async()
                .await
                .map_err(|e| e.to_string())?;
            *self.last_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.id());
            Ok(())
        })
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
impl Notifier for DesktopNotifier {
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), String>> {
        let n = self.build(notice);
        // These platforms' notify-rust calls are blocking: keep them off the runtime's threads.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || n.show().map(|_| ()).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}
