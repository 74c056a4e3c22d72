//! Desktop notifications through notify-rust. Each notification replaces yaku's previous one
//! (the same id) instead of piling up.

use std::sync::Mutex;

use crate::core::clock::BoxFuture;
use crate::core::daemon::{Notifier, NotifyError};
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
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let handle = self
                .build(notice)
                .show_async()
                .await
                .map_err(|e| classify(&e.to_string()))?;
            *self.last_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.id());
            Ok(())
        })
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
impl Notifier for DesktopNotifier {
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), NotifyError>> {
        let n = self.build(notice);
        // These platforms' notify-rust calls are blocking: keep them off the runtime's threads.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                n.show()
                    .map(|_| ())
                    .map_err(|e| NotifyError::Refused(e.to_string()))
            })
            .await
            .map_err(|e| NotifyError::Refused(e.to_string()))?
        })
    }
}

/// Sorts a notify-rust (zbus) failure by its text: notify-rust wraps zbus's error in a type
/// whose kind cannot be matched without depending on zbus itself, and the D-Bus error names
/// in the text are part of the D-Bus specification, so they are stable.
#[cfg(all(unix, not(target_os = "macos")))]
fn classify(detail: &str) -> NotifyError {
    const NO_SERVER: [&str; 3] = [
        // The bus knows no one who owns org.freedesktop.Notifications.
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        // The name's owner left while the call was on its way.
        "org.freedesktop.DBus.Error.NoReply",
    ];
    let detail = detail.to_string();
    if NO_SERVER.iter().any(|name| detail.starts_with(name)) {
        NotifyError::NoServer(detail)
    } else if detail.starts_with("org.") || detail.contains(".Error.") {
        // Any other D-Bus error name: the server (or the bus for it) answered, and said no.
        NotifyError::Refused(detail)
    } else {
        // No session bus to reach (address, I/O, handshake errors): nothing can show it.
        NotifyError::NoServer(detail)
    }
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_into_no_server_and_refused_by_their_dbus_error_name() {
        let cases = [
            (
                "org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.Notifications was not provided by any .service files",
                "no server",
            ),
            (
                "org.freedesktop.DBus.Error.NameHasNoOwner: no owner",
                "no server",
            ),
            ("org.freedesktop.DBus.Error.NoReply: gone", "no server"),
            (
                "address error: DBUS_SESSION_BUS_ADDRESS not set",
                "no server",
            ),
            (
                "I/O error: No such file or directory (os error 2)",
                "no server",
            ),
            ("D-Bus handshake failed: refused", "no server"),
            ("org.freedesktop.DBus.Error.AccessDenied: policy", "refused"),
            (
                "org.freedesktop.Notifications.Error.Invalid: bad hints",
                "refused",
            ),
        ];
        for (detail, want) in cases {
            let got = match classify(detail) {
                NotifyError::NoServer(d) => {
                    assert_eq!(d, detail, "the detail is kept");
                    "no server"
                }
                NotifyError::Refused(d) => {
                    assert_eq!(d, detail, "the detail is kept");
                    "refused"
                }
                NotifyError::TimedOut(_) => "timed out",
            };
            assert_eq!(got, want, "{detail}");
        }
    }
}
