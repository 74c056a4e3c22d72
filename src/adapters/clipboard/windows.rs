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
//! its messages. The source's waker posts a private message to that window, so a wait for
//! the next change (up to the intake's 30 s bound) ends at once when the daemon wants the
//! loop (a resume's mark).

use clipboard_win::{formats, raw};

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::DataExchange::{
    AddClipboardFormatListener, RemoveClipboardFormatListener,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GWLP_WNDPROC, HWND_MESSAGE,
    MSG, MsgWaitForMultipleObjects, PM_REMOVE, PeekMessageW, PostMessageW, QS_ALLINPUT,
    SetWindowLongPtrW, WM_APP, WM_CLIPBOARDUPDATE,
};

use super::{
    Events, FormatProbe, WINDOWS_DWORD_FORMATS, WINDOWS_MARKER_FORMATS, windows_concealed,
};
use crate::core::intake::{ClipboardError, ClipboardRead, ClipboardSource, Waker, WatchMode};

/// How many times to try opening the clipboard while another program holds it open.
const OPEN_ATTEMPTS: usize = 10;

/// The message the waker posts to the listener window: private to our own window class
/// procedure (WM_APP and above mean nothing to Windows).
const WM_YAKU_WAKE: u32 = WM_APP + 1;

/// The listener window's handle as an integer (0 while there is none), shared by the source
/// and its waker. The waker posts only while holding the lock, and the window is destroyed
/// (and the handle cleared) under the same lock, so a wake-up is never posted to a handle
/// whose window is gone and whose value Windows may have given to another window.
type WindowSlot = Arc<Mutex<isize>>;

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
    /// The listener window's handle for the waker, which exists before the window does (the
    /// window is made on the first read, on the clipboard thread).
    window: WindowSlot,
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
            window: WindowSlot::default(),
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
        match Listener::new(&self.window) {
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
    /// The waker's message reached this thread's listener window since the last wait.
    static WOKEN: Cell<bool> = const { Cell::new(false) };
}

/// The listener window's procedure: notes changes and wake-ups, leaves the rest to the
/// default.
unsafe extern "system" fn listener_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    if msg == WM_CLIPBOARDUPDATE {
        CHANGED.with(|c| c.set(true));
        return 0;
    }
    if msg == WM_YAKU_WAKE {
        WOKEN.with(|c| c.set(true));
        return 0;
    }
    // SAFETY: the arguments Windows passed us, handed on unchanged.
    unsafe { DefWindowProcW(hwnd, msg, w, l) }
}

/// A message-only window that receives WM_CLIPBOARDUPDATE, on the thread that made it.
struct Listener {
    /// The window, as an integer: the source must be Send, and the window is only ever used
    /// by the thread that created it (the waker only posts to it, which any thread may).
    hwnd: isize,
    /// Where the waker finds the window; cleared when the window is destroyed.
    slot: WindowSlot,
}

impl Listener {
    fn new(slot: &WindowSlot) -> Result<Self, std::io::Error> {
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
            slot: slot.clone(),
        };
        // SAFETY: our window; listener_proc has the signature a window procedure needs.
        unsafe { SetWindowLongPtrW(hwnd, GWLP_WNDPROC, listener_proc as *const () as isize) };
        // SAFETY: our window, alive until drop.
        if unsafe { AddClipboardFormatListener(hwnd) } == 0 {
            return Err(std::io::Error::last_os_error()); // drop destroys the window
        }
        *lock(&listener.slot) = listener.hwnd;
        Ok(listener)
    }

    fn hwnd(&self) -> HWND {
        self.hwnd as HWND
    }

    /// Pumps this thread's messages for at most `timeout` or until the waker's message
    /// comes; true once a change arrived.
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
            let changed = CHANGED.with(|c| c.replace(false));
            if WOKEN.with(|c| c.replace(false)) || changed {
                return changed;
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
        // Under the lock: the waker cannot post between the destroy and the clear.
        let mut slot = lock(&self.slot);
        *slot = 0;
        // SAFETY: our window; both fail harmlessly on another thread, whose exit frees it.
        unsafe {
            RemoveClipboardFormatListener(self.hwnd());
            DestroyWindow(self.hwnd());
        }
    }
}

/// The window slot's lock; a waker that panicked holding it left only an integer behind.
fn lock(slot: &WindowSlot) -> std::sync::MutexGuard<'_, isize> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
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

    fn waker(&self) -> Option<Waker> {
        if self.events == Events::Off {
            return None;
        }
        let slot = self.window.clone();
        Some(Arc::new(move || {
            let hwnd = lock(&slot);
            if *hwnd != 0 {
                // SAFETY: a live window (drop clears the slot under this lock before it
                // destroys it), and a message without pointers. A full queue drops the
                // post; the wait then ends at its bound, as it would without a waker.
                unsafe { PostMessageW(*hwnd as HWND, WM_YAKU_WAKE, 0, 0) };
            }
        }))
    }
}
