//! Desktop notifications: notify-rust on Linux and macOS, where each notification replaces
//! yaku's previous one (the same id) instead of piling up; on Windows a toast built here as
//! data ([`toast`]) and shown through WinRT under yaku's AppUserModelID, each replacing the
//! last by its tag and group. notify-rust's Windows backend can set the AppUserModelID but
//! neither tag nor group, so it would pile toasts up in the Action Center.

#[cfg(not(windows))]
use std::sync::Mutex;

use crate::core::clock::BoxFuture;
use crate::core::daemon::{Notifier, NotifyError};
use crate::core::notice::Notice;

pub struct DesktopNotifier {
    /// The server's id for our last notification, reused so the next one replaces it.
    #[cfg(not(windows))]
    last_id: Mutex<Option<u32>>,
    timeout_ms: u32,
}

impl DesktopNotifier {
    /// `timeout_ms` 0 leaves the display time to the notification server.
    pub fn new(timeout_ms: u32) -> Self {
        Self {
            #[cfg(not(windows))]
            last_id: Mutex::new(None),
            timeout_ms,
        }
    }

    #[cfg(not(windows))]
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

#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
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

#[cfg(windows)]
impl Notifier for DesktopNotifier {
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), NotifyError>> {
        let toast = toast(notice, self.timeout_ms);
        // WinRT calls block: keep them off the runtime's threads.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || winrt::show(&toast))
                .await
                .map_err(|e| NotifyError::Refused(e.to_string()))?
        })
    }
}

/// The tag every toast of yaku's carries: a toast with the tag and group of an earlier one
/// replaces it, as a notification with the same id does on Linux.
pub const TOAST_TAG: &str = "line";
/// The group of [`TOAST_TAG`].
pub const TOAST_GROUP: &str = "yaku";

/// A Windows toast as data: the XML Windows is given, the replacement keys and the
/// AppUserModelID it is shown under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub xml: String,
    pub tag: &'static str,
    pub group: &'static str,
    pub app_id: &'static str,
}

/// The toast for `notice`: the same title and body as the Linux notification (whose markup
/// escapes are undone, then the text XML-escaped), silent (a line arrives every few seconds),
/// long when the configured display time is 25 s or more, as notify-rust maps it.
pub fn toast(notice: &Notice, timeout_ms: u32) -> Toast {
    let duration = match timeout_ms {
        0 => "",
        ms if ms >= 25_000 => " duration=\"long\"",
        _ => " duration=\"short\"",
    };
    let mut texts = format!("<text>{}</text>", xml_text(&notice.summary));
    if !notice.body.is_empty() {
        texts.push_str(&format!("<text>{}</text>", xml_text(&notice.body)));
    }
    Toast {
        xml: format!(
            "<toast{duration}><visual><binding template=\"ToastGeneric\">{texts}</binding>\
             </visual><audio silent=\"true\"/></toast>"
        ),
        tag: TOAST_TAG,
        group: TOAST_GROUP,
        app_id: crate::sys::dirs::APP_USER_MODEL_ID,
    }
}

/// Notification markup (`&amp;`, `&lt;`, `&gt;`) to XML text: unescaped, then escaped for XML,
/// with the control characters XML 1.0 cannot carry dropped (LoadXml would refuse them).
fn xml_text(markup: &str) -> String {
    let plain: String = markup
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .chars()
        .filter(|c| matches!(c, '\t' | '\n' | '\r') || !c.is_control())
        .collect();
    crate::sys::xml::escape(&plain)
}

/// Whether toasts can be shown under yaku's AppUserModelID, or why not (for `yaku check`).
#[cfg(windows)]
pub fn toast_support() -> Result<(), String> {
    winrt::support()
}

#[cfg(windows)]
mod winrt {
    use windows::Data::Xml::Dom::XmlDocument;
    use windows::UI::Notifications::{
        NotificationSetting, ToastNotification, ToastNotificationManager,
    };
    use windows::core::HSTRING;

    use super::{NotifyError, Toast};

    pub(super) fn show(toast: &Toast) -> Result<(), NotifyError> {
        let shown = || -> windows::core::Result<()> {
            let doc = XmlDocument::new()?;
            doc.LoadXml(&HSTRING::from(toast.xml.as_str()))?;
            let notification = ToastNotification::CreateToastNotification(&doc)?;
            notification.SetTag(&HSTRING::from(toast.tag))?;
            notification.SetGroup(&HSTRING::from(toast.group))?;
            ToastNotificationManager::CreateToastNotifierWithId(&HSTRING::from(toast.app_id))?
                .Show(&notification)
        };
        shown().map_err(|e| {
            // No WinRT toast classes (Wine, Server Core): nothing here can show a toast.
            const REGDB_E_CLASSNOTREG: i32 = 0x8004_0154_u32 as i32;
            const E_NOTIMPL: i32 = 0x8000_4001_u32 as i32;
            let code = e.code().0;
            let message = e.message();
            if [REGDB_E_CLASSNOTREG, E_NOTIMPL].contains(&code) {
                NotifyError::NoServer(format!(
                    "this Windows has no WinRT toasts (HRESULT {code:#010x})"
                ))
            } else {
                NotifyError::Refused(format!("{message} (HRESULT {code:#010x})"))
            }
        })
    }

    pub(super) fn support() -> Result<(), String> {
        let app_id = HSTRING::from(crate::sys::dirs::APP_USER_MODEL_ID);
        let setting = ToastNotificationManager::CreateToastNotifierWithId(&app_id)
            .and_then(|n| n.Setting())
            .map_err(|e| format!("toasts cannot be shown here: {}", e.message()))?;
        match setting {
            NotificationSetting::Enabled => Ok(()),
            NotificationSetting::DisabledForApplication => {
                Err("toasts are switched off for yaku in Settings > Notifications".to_owned())
            }
            NotificationSetting::DisabledForUser => {
                Err("notifications are switched off in Settings > Notifications".to_owned())
            }
            NotificationSetting::DisabledByGroupPolicy => {
                Err("a group policy switches notifications off".to_owned())
            }
            other => Err(format!("toasts are switched off (setting {})", other.0)),
        }
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

#[cfg(test)]
mod toast_tests {
    use super::*;

    fn notice(summary: &str, body: &str) -> Notice {
        Notice {
            summary: summary.into(),
            body: body.into(),
        }
    }

    #[test]
    fn a_toast_shows_the_notifications_title_and_body_as_escaped_xml() {
        let cases = [
            (
                notice("Senpai &lt;3 &amp; me", "2. B\n先輩&lt;3"),
                "<text>Senpai &lt;3 &amp; me</text><text>2. B\n先輩&lt;3</text>",
            ),
            (notice("Hi", ""), "<text>Hi</text>"),
            (
                notice("\"quoted\" 'single'", "via groq"),
                "<text>&quot;quoted&quot; &apos;single&apos;</text><text>via groq</text>",
            ),
            (
                notice("bell\u{7}and\u{0}nul", "tab\tkept"),
                "<text>bellandnul</text><text>tab\tkept</text>",
            ),
            (
                notice("a &amp;lt; b", "</text><text>injected"),
                "<text>a &amp;lt; b</text><text>&lt;/text&gt;&lt;text&gt;injected</text>",
            ),
        ];
        for (n, texts) in cases {
            let t = toast(&n, 0);
            assert_eq!(
                t.xml,
                format!(
                    "<toast><visual><binding template=\"ToastGeneric\">{texts}</binding></visual>\
                     <audio silent=\"true\"/></toast>"
                ),
                "{n:?}"
            );
        }
    }

    #[test]
    fn every_toast_replaces_the_last_under_yakus_app_id() {
        let a = toast(&notice("one", ""), 0);
        let b = toast(&notice("two", "x"), 8000);
        assert_eq!((a.tag, a.group), (b.tag, b.group));
        assert_eq!((a.tag, a.group), ("line", "yaku"));
        assert_eq!(a.app_id, "io.github.yaku");
        assert_eq!(b.app_id, a.app_id);
    }

    #[test]
    fn the_display_time_maps_to_the_toast_duration() {
        let cases = [
            (0, "<toast>"),
            (8_000, "<toast duration=\"short\">"),
            (24_999, "<toast duration=\"short\">"),
            (25_000, "<toast duration=\"long\">"),
        ];
        for (ms, start) in cases {
            let xml = toast(&notice("s", ""), ms).xml;
            assert!(xml.starts_with(start), "{ms}: {xml}");
        }
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
