//! Reading the clipboard. On X11 yaku keeps its own x11rb connection: one pass reads the
//! owner's TARGETS (for the password-manager hint) and the text, from the same owner; a
//! connection that breaks (the X server restarted) is simply replaced by a new one on the
//! next poll. With change events (XFixes) the connection also tells when the CLIPBOARD's
//! owner changes, and the clipboard is read only then. arboard keeps one process-wide X11
//! connection that never recovers after the server restarts, which is why it is not used on
//! X11. On Windows clipboard-win reads the password-manager formats and the text in one pass
//! (clipboard/windows.rs), and a clipboard format listener tells of changes. Elsewhere arboard
//! reads the text.

#[cfg(not(windows))]
use crate::core::intake::{ClipboardError, ClipboardRead, ClipboardSource};

/// Whether to wait for the platform's clipboard change events (`[clipboard] watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Poll every interval.
    Off,
    /// Events where the platform has them, polling where it has not.
    Auto,
    /// Events or nothing: without them the clipboard is unavailable, and says why.
    Required,
}

#[cfg(all(unix, not(target_os = "macos")))]
pub use x11::X11Clipboard as SystemClipboard;

/// On a platform whose change events are not built yet: "events" cannot be had, and says so.
#[cfg(not(any(all(unix, not(target_os = "macos")), windows)))]
fn polling_only(events: Events) -> Result<(), crate::core::intake::ClipboardError> {
    if events == Events::Required {
        return Err(crate::core::intake::ClipboardError::Unavailable(
            "clipboard change events are not built for this platform yet: set `[clipboard] watch` to \"auto\" or \"poll\"".into(),
        ));
    }
    Ok(())
}

#[cfg(windows)]
pub use windows::WindowsClipboard as SystemClipboard;

#[cfg(not(any(all(unix, not(target_os = "macos")), windows)))]
pub use other::ArboardClipboard as SystemClipboard;

#[cfg(windows)]
mod windows;

/// The registered clipboard formats password managers (KeePass, KeePassXC, Bitwarden,
/// 1Password) put beside a secret on Windows. Their presence alone marks the copy.
#[cfg(any(windows, test))]
const WINDOWS_MARKER_FORMATS: [&str; 2] = [
    "ExcludeClipboardContentFromMonitorProcessing",
    "Clipboard Viewer Ignore",
];

/// Formats whose DWORD value 0 marks the copy (Windows' own clipboard history opt-out).
#[cfg(any(windows, test))]
const WINDOWS_DWORD_FORMATS: [&str; 2] =
    ["CanIncludeInClipboardHistory", "CanUploadToCloudClipboard"];

/// What one Windows clipboard format said about the copy.
#[cfg(any(windows, test))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormatProbe {
    /// The format is not on the clipboard.
    Absent,
    /// The format is there; `Some(v)`: its first four bytes as a little-endian DWORD,
    /// `None`: its data could not be read or is shorter than a DWORD.
    Present(Option<u32>),
}

/// Whether a Windows copy is concealed, from the probes of the two marker formats and the two
/// DWORD formats (in the order of the constants above). Fails closed: a DWORD format that is
/// there but unreadable counts as a 0.
#[cfg(any(windows, test))]
fn windows_concealed(markers: [FormatProbe; 2], dwords: [FormatProbe; 2]) -> bool {
    markers.iter().any(|m| *m != FormatProbe::Absent)
        || dwords
            .iter()
            .any(|d| matches!(d, FormatProbe::Present(None | Some(0))))
}

#[cfg(all(unix, not(target_os = "macos")))]
mod x11 {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use x11rb::connection::{Connection, RequestConnection};
    use x11rb::protocol::Event;
    use x11rb::protocol::xfixes::{self, ConnectionExt as _, SelectionEventMask};
    use x11rb::protocol::xproto::{
        Atom, AtomEnum, ConnectionExt, CreateWindowAux, EventMask, Window, WindowClass,
    };
    use x11rb::rust_connection::RustConnection;
    use x11rb::{COPY_DEPTH_FROM_PARENT, CURRENT_TIME};

    use super::*;
    use crate::core::intake::{Waker, WatchMode};

    /// How long a clipboard owner may take to answer one conversion. A hung owner (a frozen
    /// game under Wine) must not hold the poll loop for long.
    const CONVERT_TIMEOUT: Duration = Duration::from_secs(2);

    #[derive(Clone, Copy)]
    struct Atoms {
        clipboard: Atom,
        targets: Atom,
        utf8: Atom,
        text_plain_utf8: Atom,
        incr: Atom,
        property: Atom,
        hints: [Atom; 2],
    }

    struct Conn {
        conn: RustConnection,
        window: Window,
        atoms: Atoms,
        /// XFixes tells this connection of each new CLIPBOARD owner.
        events: bool,
        /// An owner change arrived that no read has dealt with yet.
        changed: bool,
        /// The last owner change XFixes told of: the owner and when it took the clipboard.
        last_change: Option<(Window, u32)>,
    }

    /// The X11 CLIPBOARD selection, through a connection of our own.
    pub struct X11Clipboard {
        conn: Option<Conn>,
        /// Bumped after a read we abandoned: names the property we read into, so that chunks
        /// an abandoned owner still writes (possibly to a window id the server reuses for our
        /// next connection) land in a property we never read again.
        generation: u32,
        /// Texts longer than this many bytes are reported as oversized without being read.
        max_bytes: usize,
        /// The X display to read (":N"); None: `$DISPLAY`.
        display: Option<String>,
        /// Whether to wait for XFixes owner-change events.
        events: Events,
        /// How the last connection learns of changes.
        mode: WatchMode,
        /// The copy the last read came from (see [`ClipboardSource::copy_id`]).
        copy: Option<u64>,
        /// Said once: the X server has no XFixes, so "auto" polls.
        fallback_logged: bool,
        /// A socket pair that cuts a wait for events short: `wait` polls the first end with
        /// the X connection, the waker writes a byte to the second. None: it could not be made.
        wake: Option<(UnixStream, Arc<UnixStream>)>,
        /// The connection was dropped after a read we abandoned, not lost: the next wait
        /// reconnects at once (re-selecting the events) rather than sleeping without one.
        reread: bool,
    }

    /// A nonblocking socket pair for [`X11Clipboard::wake`].
    fn wake_pair() -> Option<(UnixStream, Arc<UnixStream>)> {
        let (r, w) = UnixStream::pair().ok()?;
        r.set_nonblocking(true).ok()?;
        w.set_nonblocking(true).ok()?;
        Some((r, Arc::new(w)))
    }

    impl X11Clipboard {
        /// Does not connect yet: the display may not exist at start-up. Polls; see
        /// [`X11Clipboard::with_events`].
        pub fn new(max_chars: usize) -> Self {
            Self {
                conn: None,
                generation: 0,
                max_bytes: max_chars.saturating_mul(4).max(64),
                display: None,
                events: Events::Off,
                mode: WatchMode::Poll,
                copy: None,
                fallback_logged: false,
                wake: wake_pair(),
                reread: false,
            }
        }

        /// Waits for XFixes owner-change events as `events` says.
        pub fn with_events(self, events: Events) -> Self {
            Self { events, ..self }
        }

        /// Reads `display` (":N") instead of `$DISPLAY`: tests run many X servers at once in
        /// one process, whose environment they cannot change safely.
        pub fn on_display(max_chars: usize, display: &str) -> Self {
            Self {
                display: Some(display.to_string()),
                ..Self::new(max_chars)
            }
        }

        fn connect(&mut self) -> Result<Conn, ClipboardError> {
            let mut c = Self::open(self.display.as_deref(), self.generation)?;
            if self.events != Events::Off {
                c.events = c.select_owner_changes()?;
                if !c.events {
                    if self.events == Events::Required {
                        return Err(ClipboardError::Unavailable(
                            "the X server has no XFixes extension, which `[clipboard] watch = \"events\"` needs (\"auto\" polls without it)".into(),
                        ));
                    }
                    if !self.fallback_logged {
                        tracing::warn!(
                            "the X server has no XFixes extension: polling the clipboard instead of waiting for its change events"
                        );
                        self.fallback_logged = true;
                    }
                }
            }
            self.mode = if c.events {
                WatchMode::Events
            } else {
                WatchMode::Poll
            };
            Ok(c)
        }

        fn open(display: Option<&str>, generation: u32) -> Result<Conn, ClipboardError> {
            let (conn, screen_num) = x11rb::connect(display).map_err(|e| {
                ClipboardError::Unavailable(format!("cannot open the X display: {e}"))
            })?;
            let screen = conn
                .setup()
                .roots
                .get(screen_num)
                .ok_or_else(|| ClipboardError::Unavailable("no X screen".into()))?;
            let root = screen.root;
            let visual = screen.root_visual;
            let window = conn.generate_id().map_err(lost)?;
            conn.create_window(
                COPY_DEPTH_FROM_PARENT,
                window,
                root,
                0,
                0,
                1,
                1,
                0,
                WindowClass::INPUT_OUTPUT,
                visual,
                &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
            )
            .map_err(lost)?;
            let intern = |name: &[u8]| -> Result<Atom, ClipboardError> {
                Ok(conn
                    .intern_atom(false, name)
                    .map_err(lost)?
                    .reply()
                    .map_err(lost)?
                    .atom)
            };
            let atoms = Atoms {
                clipboard: intern(b"CLIPBOARD")?,
                targets: intern(b"TARGETS")?,
                utf8: intern(b"UTF8_STRING")?,
                text_plain_utf8: intern(b"text/plain;charset=utf-8")?,
                incr: intern(b"INCR")?,
                property: intern(format!("YAKU_CLIPBOARD_{generation}").as_bytes())?,
                hints: [
                    intern(b"x-kde-passwordManagerHint")?,
                    intern(b"text/x-kde-passwordManagerHint")?,
                ],
            };
            conn.flush().map_err(lost)?;
            Ok(Conn {
                conn,
                window,
                atoms,
                events: false,
                changed: false,
                last_change: None,
            })
        }
    }

    fn lost(e: impl std::fmt::Display) -> ClipboardError {
        ClipboardError::Unavailable(format!("X connection failed: {e}"))
    }

    /// The result of asking the owner for one target.
    enum Converted {
        Data(Vec<u8>),
        Refused,
        TooLarge(usize),
    }

    impl Conn {
        /// Asks XFixes for an event at each new CLIPBOARD owner; false when the server has
        /// no XFixes.
        fn select_owner_changes(&self) -> Result<bool, ClipboardError> {
            let present = self
                .conn
                .extension_information(xfixes::X11_EXTENSION_NAME)
                .map_err(lost)?
                .is_some();
            if !present {
                return Ok(false);
            }
            // The version must be negotiated before any other XFixes request.
            self.conn
                .xfixes_query_version(5, 0)
                .map_err(lost)?
                .reply()
                .map_err(lost)?;
            self.conn
                .xfixes_select_selection_input(
                    self.window,
                    self.atoms.clipboard,
                    SelectionEventMask::SET_SELECTION_OWNER,
                )
                .map_err(lost)?
                .check()
                .map_err(lost)?;
            Ok(true)
        }

        /// Takes note of an owner change; other events are of no interest here.
        fn note(&mut self, event: &Event) {
            if let Event::XfixesSelectionNotify(ev) = event
                && ev.selection == self.atoms.clipboard
            {
                self.changed = true;
                self.last_change = Some((ev.owner, ev.selection_timestamp));
            }
        }

        /// Takes note of every event already received, without blocking.
        fn drain(&mut self) -> Result<(), ClipboardError> {
            while let Some(event) = self.conn.poll_for_event().map_err(lost)? {
                self.note(&event);
            }
            Ok(())
        }

        /// Blocks at most `timeout` for an owner change, or until `wake` is readable; true
        /// when a change came.
        fn wait(
            &mut self,
            timeout: Duration,
            wake: Option<&UnixStream>,
        ) -> Result<bool, ClipboardError> {
            // Events x11rb has already read off the socket would not wake poll(2).
            self.drain()?;
            if self.changed {
                return Ok(true);
            }
            let pollfd = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut fds = [
                pollfd(self.conn.stream().as_raw_fd()),
                pollfd(wake.map_or(-1, |w| w.as_raw_fd())), // -1: ignored by poll(2)
            ];
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: two pollfds (the connection's socket and the wake socket, which outlive
            // the call, or -1), and their count.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if let Some(w) = wake
                && fds[1].revents != 0
            {
                // Woken: empty the socket so the next wait blocks again.
                let mut buf = [0u8; 64];
                while matches!((&*w).read(&mut buf), Ok(n) if n > 0) {}
            }
            let fd = fds[0];
            if n > 0 && fd.revents != 0 {
                if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    return Err(ClipboardError::Unavailable(
                        "the X connection was closed".into(),
                    ));
                }
                self.drain()?;
            }
            // n < 0 (a signal): a wait cut short, the caller waits again.
            Ok(self.changed)
        }

        fn convert(&mut self, target: Atom, max_bytes: usize) -> Result<Converted, ClipboardError> {
            let a = self.atoms;
            self.conn
                .delete_property(self.window, a.property)
                .map_err(lost)?;
            self.conn
                .convert_selection(self.window, a.clipboard, target, a.property, CURRENT_TIME)
                .map_err(lost)?;
            self.conn.flush().map_err(lost)?;
            let deadline = Instant::now() + CONVERT_TIMEOUT;
            let notify = loop {
                match self.conn.poll_for_event().map_err(lost)? {
                    Some(Event::SelectionNotify(ev)) if ev.requestor == self.window => break ev,
                    // An owner change during the read must not be lost: it asks for another.
                    Some(event) => self.note(&event),
                    None if Instant::now() >= deadline => {
                        return Err(ClipboardError::Timeout);
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            };
            if notify.property == u32::from(AtomEnum::NONE) {
                return Ok(Converted::Refused);
            }
            // Ask for one byte more than allowed, so "exactly at the limit" is told from "over".
            let words = u32::try_from(max_bytes / 4 + 1).unwrap_or(u32::MAX);
            let reply = self
                .conn
                .get_property(true, self.window, a.property, AtomEnum::ANY, 0, words)
                .map_err(lost)?
                .reply()
                .map_err(lost)?;
            if reply.type_ == a.incr {
                // INCR transfers are for data of hundreds of KiB: far past any game line.
                let size = reply
                    .value32()
                    .and_then(|mut v| v.next())
                    .unwrap_or(u32::MAX) as usize;
                return Ok(Converted::TooLarge(size));
            }
            if reply.bytes_after > 0 || reply.value.len() > max_bytes {
                return Ok(Converted::TooLarge(
                    reply.value.len() + reply.bytes_after as usize,
                ));
            }
            Ok(Converted::Data(reply.value))
        }

        /// Reads the clipboard; `copy` is set to the identity of the copy read: the owner
        /// window, and with events the time it took the clipboard (an owner that copies the
        /// same text again is then a new copy).
        fn read(
            &mut self,
            max_bytes: usize,
            copy: &mut Option<u64>,
        ) -> Result<ClipboardRead, ClipboardError> {
            if self.events {
                self.drain()?;
                self.changed = false;
            }
            let clipboard = self.atoms.clipboard;
            let owner = self
                .conn
                .get_selection_owner(clipboard)
                .map_err(lost)?
                .reply()
                .map_err(lost)?
                .owner;
            if owner == u32::from(AtomEnum::NONE) {
                return Ok(ClipboardRead::Empty);
            }
            let mut taken_at = 0;
            if self.events {
                // The server sent the event for this owner before the reply that named it.
                self.drain()?;
                if let Some((o, t)) = self.last_change
                    && o == owner
                {
                    self.changed = false;
                    taken_at = t;
                }
            }
            *copy = Some((u64::from(owner) << 32) | u64::from(taken_at));
            let targets_atom = self.atoms.targets;
            let targets: Vec<Atom> = match self.convert(targets_atom, 64 * 1024)? {
                Converted::Data(bytes) => bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                // An owner that cannot list its targets: we cannot tell whether it is a secret.
                Converted::Refused | Converted::TooLarge(_) => {
                    return Ok(ClipboardRead::Undecidable);
                }
            };
            let a = self.atoms;
            let concealed = targets.iter().any(|t| a.hints.contains(t));
            let target = if targets.contains(&a.utf8) {
                a.utf8
            } else if targets.contains(&a.text_plain_utf8) {
                a.text_plain_utf8
            } else {
                return Ok(ClipboardRead::Empty); // an image, files, ...: no text
            };
            let converted = self.convert(target, max_bytes)?;
            // The targets and the text must come from the same owner: a password manager that
            // took the clipboard between the two reads would otherwise pass as unconcealed.
            let owner_now = self
                .conn
                .get_selection_owner(a.clipboard)
                .map_err(lost)?
                .reply()
                .map_err(lost)?
                .owner;
            if owner_now != owner {
                return Ok(ClipboardRead::Empty); // read again at the next poll
            }
            match converted {
                Converted::Data(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Ok(ClipboardRead::Text {
                        text,
                        concealed: Some(concealed),
                    }),
                    Err(e) => Ok(ClipboardRead::Text {
                        text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        concealed: Some(concealed),
                    }),
                },
                Converted::Refused => Ok(ClipboardRead::Empty),
                Converted::TooLarge(bytes) => Ok(ClipboardRead::Oversized { bytes }),
            }
        }
    }

    impl ClipboardSource for X11Clipboard {
        fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
            self.copy = None;
            if self.conn.is_none() {
                self.conn = Some(self.connect()?);
            }
            let result = match &mut self.conn {
                Some(c) => c.read(self.max_bytes, &mut self.copy),
                None => Err(ClipboardError::Unavailable("not connected".into())),
            };
            match &result {
                // Broken pipe after an X server restart: the next read opens a new connection.
                Err(ClipboardError::Unavailable(_)) => self.conn = None,
                // An owner we stopped reading (a large INCR transfer) may go on writing chunks
                // into our property; a fresh connection and window ensure none of them is ever
                // taken for the next owner's text.
                Ok(ClipboardRead::Oversized { .. } | ClipboardRead::Undecidable)
                | Err(ClipboardError::Timeout) => {
                    self.conn = None;
                    self.generation = self.generation.wrapping_add(1);
                    // Without a connection no event can come; a timeout backs off instead.
                    self.reread = result.is_ok();
                }
                _ => {}
            }
            result
        }

        fn wait_change(&mut self, timeout: Duration) -> bool {
            if self.conn.is_none()
                && std::mem::take(&mut self.reread)
                && self.mode == WatchMode::Events
            {
                // The owner whose text was abandoned: only a new owner is a change.
                let abandoned = self.copy.map(|id| (id >> 32) as Window);
                let Ok(c) = self.connect() else {
                    return true; // the read says why
                };
                let owner = c
                    .conn
                    .get_selection_owner(c.atoms.clipboard)
                    .ok()
                    .and_then(|r| r.reply().ok())
                    .map(|r| r.owner);
                self.conn = Some(c);
                // A copy made while no connection listened would raise no event.
                if owner.is_none() || owner != abandoned {
                    return true;
                }
            }
            let Some(c) = self.conn.as_mut().filter(|c| c.events) else {
                std::thread::sleep(timeout);
                return true;
            };
            match c.wait(timeout, self.wake.as_ref().map(|(r, _)| r)) {
                Ok(changed) => changed,
                Err(_) => {
                    // The next read reconnects (and selects the events again) or says why not.
                    self.conn = None;
                    true
                }
            }
        }

        fn copy_id(&self) -> Option<u64> {
            self.copy
        }

        fn mode(&self) -> WatchMode {
            self.mode
        }

        fn waker(&self) -> Option<Waker> {
            let (_, w) = self.wake.as_ref()?;
            let w = w.clone();
            // A full socket already holds a wake-up: nothing is lost when the write fails.
            Some(Arc::new(move || {
                let _ = (&*w).write(&[1]);
            }))
        }
    }
}

#[cfg(not(any(all(unix, not(target_os = "macos")), windows)))]
mod other {
    use super::*;

    /// The system clipboard through arboard (macOS). This platform has no
    /// password-manager hint check yet: `concealed` is None.
    pub struct ArboardClipboard {
        clipboard: Option<arboard::Clipboard>,
        max_chars: usize,
        /// Change events are not built here yet: "auto" polls, "events" cannot be had.
        events: Events,
    }

    impl ArboardClipboard {
        pub fn new(max_chars: usize) -> Self {
            Self {
                clipboard: None,
                max_chars,
                events: Events::Off,
            }
        }

        pub fn with_events(self, events: Events) -> Self {
            Self { events, ..self }
        }
    }

    impl ClipboardSource for ArboardClipboard {
        fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
            polling_only(self.events)?;
            if self.clipboard.is_none() {
                self.clipboard = Some(
                    arboard::Clipboard::new()
                        .map_err(|e| ClipboardError::Unavailable(e.to_string()))?,
                );
            }
            let Some(cb) = self.clipboard.as_mut() else {
                return Ok(ClipboardRead::Empty);
            };
            match cb.get_text() {
                Ok(text) if text.len() > self.max_chars.saturating_mul(4) => {
                    Ok(ClipboardRead::Oversized { bytes: text.len() })
                }
                Ok(text) => Ok(ClipboardRead::Text {
                    text,
                    concealed: None,
                }),
                Err(arboard::Error::ContentNotAvailable) => Ok(ClipboardRead::Empty),
                Err(e) => {
                    self.clipboard = None;
                    Err(ClipboardError::Unavailable(e.to_string()))
                }
            }
        }
    }
}

#[cfg(test)]
mod windows_formats_tests {
    use super::FormatProbe::{Absent, Present};
    use super::*;

    #[test]
    fn windows_copy_is_concealed_by_any_password_manager_format_and_fails_closed() {
        let cases = [
            ([Absent, Absent], [Absent, Absent], false),
            (
                [Absent, Absent],
                [Present(Some(1)), Present(Some(1))],
                false,
            ),
            ([Present(None), Absent], [Absent, Absent], true),
            ([Absent, Present(Some(7))], [Absent, Absent], true),
            ([Absent, Absent], [Present(Some(0)), Absent], true),
            ([Absent, Absent], [Absent, Present(Some(0))], true),
            // Unreadable or shorter than a DWORD: counted as 0.
            ([Absent, Absent], [Present(None), Present(Some(1))], true),
        ];
        for (markers, dwords, concealed) in cases {
            assert_eq!(
                windows_concealed(markers, dwords),
                concealed,
                "{markers:?} {dwords:?}"
            );
        }
        assert_eq!(
            WINDOWS_MARKER_FORMATS.len() + WINDOWS_DWORD_FORMATS.len(),
            4
        );
    }
}
