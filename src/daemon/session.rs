//! Sign-out and shutdown on Windows as window messages. A program without a console (the
//! windowless yakuw.exe) gets no console control events; Windows asks its top-level windows
//! instead (`WM_QUERYENDSESSION`, then `WM_ENDSESSION`). So the daemon keeps one hidden
//! top-level window (a message-only window would not be asked: it gets no broadcasts) on a
//! thread of its own: `WM_ENDSESSION` asks the daemon to stop, and the window procedure
//! returns only once the daemon has stopped (or after [`END_WAIT`]), because Windows may end
//! the process as soon as it returns.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GWLP_WNDPROC, GetMessageW, MSG,
    SetWindowLongPtrW, WM_ENDSESSION, WM_QUERYENDSESSION, WS_POPUP,
};

/// How long the window procedure holds the session's end for the daemon to stop: the line
/// in flight is recorded, the history committed, the logs flushed.
const END_WAIT: Duration = Duration::from_secs(5);

/// What the window procedure shares with the daemon (one per process).
struct Session {
    stop: tokio::sync::mpsc::Sender<()>,
    /// Set once the daemon has stopped.
    done: Mutex<bool>,
    stopped: Condvar,
}

static SESSION: OnceLock<Session> = OnceLock::new();

/// Starts the hidden window; the receiver yields once when the session ends. None: it could
/// not be set up (the console events still stop a console yaku).
pub fn watch() -> Option<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    SESSION
        .set(Session {
            stop: tx,
            done: Mutex::new(false),
            stopped: Condvar::new(),
        })
        .ok()?;
    std::thread::Builder::new()
        .name("yaku-session".into())
        .spawn(window_thread)
        .ok()?;
    Some(rx)
}

/// Lets a held `WM_ENDSESSION` return: the daemon has stopped.
pub fn stopped() {
    if let Some(s) = SESSION.get() {
        if let Ok(mut done) = s.done.lock() {
            *done = true;
        }
        s.stopped.notify_all();
    }
}

fn window_thread() {
    let class: Vec<u16> = "STATIC".encode_utf16().chain([0]).collect();
    let title: Vec<u16> = "yaku".encode_utf16().chain([0]).collect();
    // SAFETY: NUL-terminated strings; a hidden (never shown) top-level window of our module.
    let hwnd = unsafe {
        CreateWindowExW(
            0,
            class.as_ptr(),
            title.as_ptr(),
            WS_POPUP,
            0,
            0,
            0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            GetModuleHandleW(std::ptr::null()),
            std::ptr::null(),
        )
    };
    if hwnd.is_null() {
        tracing::debug!(error = %std::io::Error::last_os_error(), "no session window: sign-out reaches only a console yaku");
        return;
    }
    // SAFETY: our window; session_proc has the signature a window procedure needs.
    unsafe { SetWindowLongPtrW(hwnd, GWLP_WNDPROC, session_proc as *const () as isize) };
    // SAFETY: MSG is plain data that GetMessageW fills.
    let mut msg: MSG = unsafe { std::mem::zeroed() };
    // SAFETY: this thread's messages, each dispatched to its window; 0 or -1 ends the loop.
    while unsafe { GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) } > 0 {
        // SAFETY: a message GetMessageW just returned.
        unsafe { DispatchMessageW(&msg) };
    }
}

unsafe extern "system" fn session_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    match msg {
        // Nothing to save that a stop would not: the session may end.
        WM_QUERYENDSESSION => 1,
        WM_ENDSESSION => {
            if w != 0 {
                end_session();
            }
            0
        }
        // SAFETY: the arguments Windows passed us, handed on unchanged.
        _ => unsafe { DefWindowProcW(hwnd, msg, w, l) },
    }
}

/// Asks the daemon to stop and waits, bounded, until it has.
fn end_session() {
    let Some(s) = SESSION.get() else {
        return;
    };
    let _ = s.stop.try_send(());
    let deadline = Instant::now() + END_WAIT;
    let Ok(mut done) = s.done.lock() else {
        return;
    };
    while !*done {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match s.stopped.wait_timeout(done, left) {
            Ok((d, _)) => done = d,
            Err(_) => return,
        }
    }
}
