//! The Windows clipboard through clipboard-win: the password-manager formats and the text are
//! read while the clipboard is open once, and the read counts only if the clipboard sequence
//! number is the same before and after (another copy in between would pair one owner's
//! formats with another's text). Anything that cannot be decided is reported as such and the
//! intake gate treats it as concealed.
//!
//! With `[clipboard] watch = "events"/"auto"` a message-only window registered with
//! `AddClipboardFormatListener` is told of each change (`WM_CLIPBOARDUPDATE`), and the
//! clipboard is read only then; "auto" polls when the listener cannot be set up.
//! The window belongs to the thread that first reads (the clipboard thread), whose waits pump
//! its messages.

use clipboard_win::{formats, raw};

use std::cell::Cell;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::DataExchange::{
    AddClipboardFormatListener, RemoveClipboardFormatListener,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GWLP_WNDPROC, HWND_MESSAGE,
    MSG, MsgWaitForMultipleObjects, PM_REMOVE, PeekMessageW, QS_ALLINPUT, SetWindowLongPtrW,
    WM_CLIPBOARDUPDATE,
};

use super::{
    Events, FormatProbe, WINDOWS_DWORD_FORMATS, WINDOWS_MARKER_FORMATS, windows_concealed,
};
use crate::core::intake::{ClipboardError, ClipboardRead, ClipboardSource, WatchMode};

/// How many times to try opening the clipboard while another program holds it open.
const OPEN_ATTEMPTS: usize = 10;

/// The Windows clipboard.
pub struct WindowsClipboard {
    /// Texts longer than this many UTF-16 bytes are reported as oversized without being read.
    max_bytes: usize,
    /// Whether to listen for clipboard changes instead of polling.
    events: Events,
    /// The sequence number of the last read: each copy has its own, so the same text
    /// copied again is a new change.
    seq: Option<u64>,
    /// The format listener's window, once set up.
    listener: Option<Listener>,
    /// The listener could not be set up ("auto" polls from then on; said once).
    listener_failed: bool,
}

impl WindowsClipboard {
    pub fn new(max_chars: usize) -> Self {
        Self {
            max_bytes: max_chars.saturating_mul(4).max(64),
            events: Events::Off,
            seq: None,
            listener: None,
            listener_failed: false,
        }
    }

    pub fn with_events(self, events: Events) -> Self {
        Self { events, ..self }
    }

    /// Sets up the format listener when events are asked for and it is not there yet.
    fn listen(&mut self) -> Result<(), ClipboardError> {
        if self.events == Events::Off || self.listener.is_some() || self.listener_failed {
            return Ok(());
        }
        match Listener::new() {
            Ok(l) => {
                tracing::info!(
                    "watching the clipboard through change events (a clipboard format listener)"
                );
                self.listener = Some(l);
                Ok(())
            }
            Err(e) if self.events == Events::Required => Err(ClipboardError::Unavailable(format!(
                "cannot listen for clipboard changes ({e}), which `[clipboard] watch = \"events\"` needs (\"auto\" polls without it)"
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for clipboard changes: polling the clipboard instead");
                self.listener_failed = true;
                Ok(())
            }
        }
    }
}

thread_local! {
    /// A WM_CLIPBOARDUPDATE reached this thread's listener window since the last wait.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

/// The listener window's procedure: notes changes, leaves the rest to the default.
unsafe extern "system" fn listener_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    if msg == WM_CLIPBOARDUPDATE {
        CHANGED.with(|c| c.set(true));
        return 0;
    }
    // SAFETY: the arguments Windows passed us, handed on unchanged.
    unsafe { DefWindowProcW(hwnd, msg, w, l) }
}

/// A message-only window that receives WM_CLIPBOARDUPDATE, on the thread that made it.
struct Listener {
    /// The window, as an integer: the source must be Send, and the window is only ever used
    /// by the thread that created it.
    hwnd: isize,
}

impl Listener {
    fn new() -> Result<Self, std::io::Error> {
        // The predefined STATIC class needs no registration; its procedure is replaced by ours.
        let class: Vec<u16> = "STATIC".encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated class name, a message-only parent, our own module.
        let hwnd = unsafe {
            CreateWindowExW(
                0,
                class.as_ptr(),
                std::ptr::null(),
                0,
                0,
                0,
                0,
                0,
                HWND_MESSAGE,
                std::ptr::null_mut(),
                GetModuleHandleW(std::ptr::null()),
                std::ptr::null(),
            )
        };
        if hwnd.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        let listener = Self {
            hwnd: hwnd as isize,
        };
        // SAFETY: our window; listener_proc has the signature a window procedure needs.
        unsafe { SetWindowLongPtrW(hwnd, GWLP_WNDPROC, listener_proc as *const () as isize) };
        // SAFETY: our window, alive until drop.
        if unsafe { AddClipboardFormatListener(hwnd) } == 0 {
            return Err(std::io::Error::last_os_error()); // drop destroys the window
        }
        Ok(listener)
    }

    fn hwnd(&self) -> HWND {
        self.hwnd as HWND
    }

    /// Pumps this thread's messages for at most `timeout`; true once a change arrived.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: MSG is plain data; PeekMessageW fills it for each message it removes.
            let mut msg: MSG = unsafe { std::mem::zeroed() };
            // SAFETY: all messages of this thread's queue, each dispatched to its window.
            while unsafe { PeekMessageW(&mut msg, std::ptr::null_mut(), 0, 0, PM_REMOVE) } != 0 {
                // SAFETY: a message PeekMessageW just removed.
                unsafe { DispatchMessageW(&msg) };
            }
            if CHANGED.with(|c| c.replace(false)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
            // SAFETY: no handles; wakes on any message for this thread or at the timeout.
            unsafe { MsgWaitForMultipleObjects(0, std::ptr::null(), 0, ms, QS_ALLINPUT) };
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: our window; both fail harmlessly on another thread, whose exit frees it.
        unsafe {
            RemoveClipboardFormatListener(self.hwnd());
            DestroyWindow(self.hwnd());
        }
    }
}

fn probe(name: &str) -> Option<FormatProbe> {
    // Registering an existing name returns its id; failing to register means we cannot tell.
    let id = raw::register_format(name)?.get();
    if !raw::is_format_avail(id) {
        return Some(FormatProbe::Absent);
    }
    let mut dword = [0u8; 4];
    let value = match raw::get(id, &mut dword) {
        Ok(4) => Some(u32::from_le_bytes(dword)),
        _ => None,
    };
    Some(FormatProbe::Present(value))
}

/// One pass with the clipboard open. None: the concealment could not be decided.
fn read_open(max_bytes: usize) -> Result<Option<ClipboardRead>, ClipboardError> {
    let _open = clipboard_win::Clipboard::new_attempts(OPEN_ATTEMPTS)
        .map_err(|e| ClipboardError::Unavailable(e.to_string()))?;
    let mut markers = [FormatProbe::Absent; 2];
    for (slot, name) in markers.iter_mut().zip(WINDOWS_MARKER_FORMATS) {
        let Some(p) = probe(name) else {
            return Ok(None);
        };
        *slot = p;
    }
    let mut dwords = [FormatProbe::Absent; 2];
    for (slot, name) in dwords.iter_mut().zip(WINDOWS_DWORD_FORMATS) {
        let Some(p) = probe(name) else {
            return Ok(None);
        };
        *slot = p;
    }
    let concealed = windows_concealed(markers, dwords);
    if !raw::is_format_avail(formats::CF_UNICODETEXT) {
        return Ok(Some(ClipboardRead::Empty));
    }
    if let Some(size) = raw::size(formats::CF_UNICODETEXT)
        && size.get() > max_bytes.saturating_mul(2)
    {
        return Ok(Some(ClipboardRead::Oversized { bytes: size.get() }));
    }
    let mut bytes = Vec::new();
    if raw::get_string(&mut bytes).is_err() {
        return Ok(Some(ClipboardRead::Empty));
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    let end = text.trim_end_matches('\0').len();
    text.truncate(end);
    Ok(Some(ClipboardRead::Text {
        text,
        concealed: Some(concealed),
    }))
}

impl ClipboardSource for WindowsClipboard {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
        self.listen()?;
        let before = raw::seq_num();
        self.seq = before.map(|n| u64::from(n.get()));
        let read = read_open(self.max_bytes)?;
        let after = raw::seq_num();
        match read {
            Some(read) if before.is_some() && before == after => Ok(read),
            // Nothing on the clipboard at all needs no sequence check.
            Some(ClipboardRead::Empty) => Ok(ClipboardRead::Empty),
            _ => Ok(ClipboardRead::Undecidable),
        }
    }

    fn wait_change(&mut self, timeout: Duration) -> bool {
        match &self.listener {
            Some(l) => l.wait(timeout),
            None => {
                std::thread::sleep(timeout);
                true
            }
        }
    }

    fn copy_id(&self) -> Option<u64> {
        self.seq
    }

    fn mode(&self) -> WatchMode {
        if self.listener.is_some() {
            WatchMode::Events
        } else {
            WatchMode::Poll
        }
    }
}
