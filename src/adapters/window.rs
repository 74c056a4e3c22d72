//! Which window is active, for choosing a line's game profile. On X11: the root window's
//! `_NET_ACTIVE_WINDOW`, then that window's `WM_CLASS`, `_NET_WM_NAME` (else `WM_NAME`) and
//! `_NET_WM_PID`'s executable, through a connection of our own that is replaced when it
//! breaks. On Windows: the foreground window's class, title and process image name. On macOS
//! there is no profile yet.

#[cfg(all(unix, not(target_os = "macos")))]
pub use x11::X11ActiveWindow as SystemActiveWindow;

#[cfg(windows)]
pub use windows::ForegroundWindow as SystemActiveWindow;

#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
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

#[cfg(windows)]
mod windows {
    use crate::core::games::{ActiveWindow, WindowInfo};
    use windows_sys::Win32::Foundation::{CloseHandle, HWND};
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
        QueryFullProcessImageNameW,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        GetClassNameW, GetForegroundWindow, GetWindowTextW, GetWindowThreadProcessId,
    };

    /// The foreground window (the game the reader is looking at).
    #[derive(Default)]
    pub struct ForegroundWindow;

    impl ForegroundWindow {
        pub fn new() -> Self {
            Self
        }
    }

    /// A UTF-16 buffer the API filled with `n` units; nothing when it wrote none.
    fn text(buf: &[u16], n: usize) -> Option<String> {
        let s = String::from_utf16_lossy(buf.get(..n)?);
        (!s.is_empty()).then_some(s)
    }

    fn class(hwnd: HWND) -> Option<String> {
        let mut buf = [0u16; 256];
        // SAFETY: the buffer's length is passed; the call writes at most that many units.
        let n = unsafe { GetClassNameW(hwnd, buf.as_mut_ptr(), buf.len() as i32) };
        text(&buf, usize::try_from(n).ok()?)
    }

    fn title(hwnd: HWND) -> Option<String> {
        let mut buf = [0u16; 512];
        // SAFETY: as for the class name.
        let n = unsafe { GetWindowTextW(hwnd, buf.as_mut_ptr(), buf.len() as i32) };
        text(&buf, usize::try_from(n).ok()?)
    }

    /// The file name of the window's process image (`Game.exe`).
    fn process(hwnd: HWND) -> Option<String> {
        let mut pid = 0u32;
        // SAFETY: `pid` is a valid place for the id.
        unsafe { GetWindowThreadProcessId(hwnd, &mut pid) };
        if pid == 0 {
            return None;
        }
        // SAFETY: a handle is opened for reading the image name only, and closed below.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return None;
        }
        let mut buf = [0u16; 1024];
        let mut len = buf.len() as u32;
        // SAFETY: `len` holds the buffer's size and receives the length written.
        let ok = unsafe {
            QueryFullProcessImageNameW(handle, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
        };
        // SAFETY: the handle was opened above and is closed once.
        unsafe { CloseHandle(handle) };
        if ok == 0 {
            return None;
        }
        let path = text(&buf, len as usize)?;
        path.rsplit(['\\', '/']).next().map(str::to_string)
    }

    impl ActiveWindow for ForegroundWindow {
        fn active(&self) -> Option<WindowInfo> {
            // SAFETY: no arguments; a null window means none is in the foreground.
            let hwnd = unsafe { GetForegroundWindow() };
            if hwnd.is_null() {
                return None;
            }
            Some(WindowInfo {
                class: class(hwnd),
                title: title(hwnd),
                process: process(hwnd),
            })
        }
    }
}

#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
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
