//! Which window is active, for choosing a line's game profile. On X11: the root window's
//! `_NET_ACTIVE_WINDOW`, then that window's `WM_CLASS`, `_NET_WM_NAME` (else `WM_NAME`) and
//! `_NET_WM_PID`'s executable, through a connection of our own that is replaced when it
//! breaks. Elsewhere there is no profile yet.

#[cfg(all(unix, not(target_os = "macos")))]
pub use x11::X11ActiveWindow as SystemActiveWindow;

#[cfg(not(all(unix, not(target_os = "macos"))))]
pub use other::NoActiveWindow as SystemActiveWindow;

#[cfg(all(unix, not(target_os = "macos")))]
mod x11 {
    use std::sync::Mutex;

    use x11rb::connection::Connection;
    use x11rb::errors::ReplyError;
    use x11rb::protocol::xproto::{Atom, AtomEnum, ConnectionExt, Window};
    use x11rb::rust_connection::RustConnection;

    use crate::core::games::{ActiveWindow, WindowInfo};

    /// A property is read up to this many 32-bit units (1 KiB): a class or title longer than
    /// that is cut, which a regex on its start still matches.
    const MAX_LONGS: u32 = 256;

    struct Conn {
        conn: RustConnection,
        root: Window,
        active: Atom,
        net_name: Atom,
        utf8: Atom,
        pid: Atom,
    }

    /// The active window of an X display, through a connection of our own.
    pub struct X11ActiveWindow {
        conn: Mutex<Option<Conn>>,
        /// The X display (":N"); None: `$DISPLAY`.
        display: Option<String>,
    }

    impl Default for X11ActiveWindow {
        fn default() -> Self {
            Self::new()
        }
    }

    impl X11ActiveWindow {
        /// Does not connect yet: the display may not exist at start-up.
        pub fn new() -> Self {
            Self {
                conn: Mutex::new(None),
                display: None,
            }
        }

        /// Reads `display` (":N") instead of `$DISPLAY`.
        pub fn on_display(display: &str) -> Self {
            Self {
                conn: Mutex::new(None),
                display: Some(display.to_string()),
            }
        }

        fn connect(display: Option<&str>) -> Option<Conn> {
            let (conn, screen_num) = x11rb::connect(display).ok()?;
            let root = conn.setup().roots.get(screen_num)?.root;
            let intern = |name: &[u8]| -> Option<Atom> {
                Some(conn.intern_atom(false, name).ok()?.reply().ok()?.atom)
            };
            Some(Conn {
                active: intern(b"_NET_ACTIVE_WINDOW")?,
                net_name: intern(b"_NET_WM_NAME")?,
                utf8: intern(b"UTF8_STRING")?,
                pid: intern(b"_NET_WM_PID")?,
                root,
                conn,
            })
        }
    }

    /// A property's bytes: `Ok(None)` when the window has no such property or is gone (an X
    /// error), `Err` when the connection broke.
    fn property(
        c: &Conn,
        window: Window,
        name: impl Into<Atom>,
        kind: impl Into<Atom>,
    ) -> Result<Option<x11rb::protocol::xproto::GetPropertyReply>, ()> {
        let cookie = c
            .conn
            .get_property(false, window, name, kind, 0, MAX_LONGS)
            .map_err(|_| ())?;
        match cookie.reply() {
            Ok(r) if r.type_ != u32::from(AtomEnum::NONE) => Ok(Some(r)),
            Ok(_) | Err(ReplyError::X11Error(_)) => Ok(None),
            Err(ReplyError::ConnectionError(_)) => Err(()),
        }
    }

    fn text(bytes: &[u8]) -> Option<String> {
        let s = String::from_utf8_lossy(bytes)
            .trim_matches('\0')
            .to_string();
        (!s.is_empty()).then_some(s)
    }

    impl Conn {
        fn active(&self) -> Result<Option<WindowInfo>, ()> {
            let Some(reply) = property(self, self.root, self.active, AtomEnum::WINDOW)? else {
                return Ok(None);
            };
            let Some(window) = reply
                .value32()
                .and_then(|mut v| v.next())
                .filter(|w| *w != 0)
            else {
                return Ok(None);
            };
            // WM_CLASS is "instance\0class\0": shown as "instance class".
            let class =
                property(self, window, AtomEnum::WM_CLASS, AtomEnum::STRING)?.and_then(|r| {
                    let parts: Vec<String> = r
                        .value
                        .split(|b| *b == 0)
                        .filter(|p| !p.is_empty())
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(" "))
                });
            let title = match property(self, window, self.net_name, self.utf8)? {
                Some(r) => text(&r.value),
                None => property(self, window, AtomEnum::WM_NAME, AtomEnum::ANY)?
                    .and_then(|r| text(&r.value)),
            };
            let process = property(self, window, self.pid, AtomEnum::CARDINAL)?
                .and_then(|r| r.value32().and_then(|mut v| v.next()))
                .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
                .and_then(|exe| Some(exe.file_name()?.to_string_lossy().into_owned()));
            if class.is_none() && title.is_none() && process.is_none() {
                return Ok(None);
            }
            Ok(Some(WindowInfo {
                class,
                title,
                process,
            }))
        }
    }

    impl ActiveWindow for X11ActiveWindow {
        fn active(&self) -> Option<WindowInfo> {
            let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Self::connect(self.display.as_deref());
            }
            let found = guard.as_ref()?.active();
            match found {
                Ok(info) => info,
                Err(()) => {
                    // The X server went away: the next line connects afresh.
                    *guard = None;
                    None
                }
            }
        }
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
mod other {
    use crate::core::games::{ActiveWindow, WindowInfo};

    /// No active window on this platform yet: no line has a game profile.
    #[derive(Default)]
    pub struct NoActiveWindow;

    impl NoActiveWindow {
        pub fn new() -> Self {
            Self
        }
    }

    impl ActiveWindow for NoActiveWindow {
        fn active(&self) -> Option<WindowInfo> {
            None
        }
    }
}
