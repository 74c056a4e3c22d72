//! The terminal: reading a secret without echo, and whether standard input has a line ready.

use std::io::{BufRead, IsTerminal, Write};

/// Reads a secret: without echo when standard input is a terminal, else one line of stdin.
pub fn read_secret(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line);
    }
    // Echo goes off before the prompt appears, so a fast typist's key is never shown.
    let _echo = NoEcho::new();
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    eprintln!();
    read?;
    Ok(line)
}

/// Whether standard input can be read without blocking (a line, or end of input).
#[cfg(unix)]
pub fn stdin_ready() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// On Windows: whether the console's input holds an Enter not yet read (the console hands
/// out a line only once Enter ends it). Not a console (a pipe): false.
#[cfg(windows)]
pub fn stdin_ready() -> bool {
    use windows_sys::Win32::System::Console::{
        GetStdHandle, INPUT_RECORD, KEY_EVENT, PeekConsoleInputW, STD_INPUT_HANDLE,
    };
    /// The virtual-key code of Enter.
    const VK_RETURN: u16 = 0x0D;
    let mut records = vec![INPUT_RECORD::default(); 512];
    let mut n = 0u32;
    // SAFETY: our standard input handle; `records` holds the 512 records asked for.
    let ok = unsafe {
        PeekConsoleInputW(
            GetStdHandle(STD_INPUT_HANDLE),
            records.as_mut_ptr(),
            records.len() as u32,
            &mut n,
        )
    };
    if ok == 0 {
        return false;
    }
    records.iter().take(n as usize).any(|r| {
        // SAFETY: a record of EventType KEY_EVENT holds a KeyEvent.
        r.EventType == KEY_EVENT as u16
            && unsafe {
                let k = r.Event.KeyEvent;
                k.bKeyDown != 0 && (k.wVirtualKeyCode == VK_RETURN || k.uChar.UnicodeChar == 13)
            }
    })
}

#[cfg(not(any(unix, windows)))]
pub fn stdin_ready() -> bool {
    false
}

/// Turns terminal echo off for as long as it lives. While it is off, SIGINT, SIGTERM, SIGHUP
/// and SIGQUIT turn echo back on before doing what they would have done, so Ctrl-C at the key
/// prompt does not leave the shell without echo. On Windows it clears the console's
/// ENABLE_ECHO_INPUT (the shells set their own input mode when they read the next command).
pub struct NoEcho {
    #[cfg(unix)]
    saved: Option<libc::termios>,
    #[cfg(unix)]
    handlers: Vec<(libc::c_int, libc::sighandler_t)>,
    /// The console input mode to restore; None: stdin is not a console.
    #[cfg(windows)]
    saved_mode: Option<u32>,
}

/// The console input handle (Windows).
#[cfg(windows)]
fn console_input() -> windows_sys::Win32::Foundation::HANDLE {
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_INPUT_HANDLE};
    // SAFETY: no arguments to check; an invalid or null handle makes the mode calls fail.
    unsafe { GetStdHandle(STD_INPUT_HANDLE) }
}

#[cfg(unix)]
const RESTORING_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

#[cfg(unix)]
extern "C" fn echo_on_and_reraise(sig: libc::c_int) {
    // SAFETY: tcgetattr, tcsetattr, signal and raise are async-signal-safe.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0 {
            t.c_lflag |= libc::ECHO;
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

// `new` changes the terminal: it is not a default value.
#[allow(clippy::new_without_default)]
impl NoEcho {
    #[cfg(unix)]
    pub fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed, then filled, termios struct;
        // signal() with a handler that only calls async-signal-safe functions.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return Self {
                    saved: None,
                    handlers: Vec::new(),
                };
            }
            let saved = t;
            let handler = echo_on_and_reraise as extern "C" fn(libc::c_int) as libc::sighandler_t;
            let mut handlers = Vec::new();
            for sig in RESTORING_SIGNALS {
                let previous = libc::signal(sig, handler);
                if previous == libc::SIG_IGN {
                    // Ignored (e.g. nohup): keep it ignored.
                    libc::signal(sig, libc::SIG_IGN);
                } else if previous != libc::SIG_ERR {
                    handlers.push((sig, previous));
                }
            }
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                for (sig, previous) in handlers.drain(..) {
                    libc::signal(sig, previous);
                }
                return Self {
                    saved: None,
                    handlers,
                };
            }
            Self {
                saved: Some(saved),
                handlers,
            }
        }
    }

    #[cfg(windows)]
    pub fn new() -> Self {
        use windows_sys::Win32::System::Console::{
            ENABLE_ECHO_INPUT, GetConsoleMode, SetConsoleMode,
        };
        let input = console_input();
        let mut mode = 0u32;
        // SAFETY: our stdin handle; `mode` is written on success.
        if unsafe { GetConsoleMode(input, &mut mode) } == 0 {
            return Self { saved_mode: None };
        }
        // SAFETY: as above; a mode the console just gave us, less echo.
        let off = unsafe { SetConsoleMode(input, mode & !ENABLE_ECHO_INPUT) } != 0;
        Self {
            saved_mode: off.then_some(mode),
        }
    }

    #[cfg(not(any(unix, windows)))]
    pub fn new() -> Self {
        Self {}
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the attributes and handlers read in `new`.
        unsafe {
            if let Some(saved) = self.saved {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
            }
            for (sig, previous) in self.handlers.drain(..) {
                libc::signal(sig, previous);
            }
        }
        #[cfg(windows)]
        if let Some(mode) = self.saved_mode {
            // SAFETY: restores the console mode read in `new`.
            unsafe { windows_sys::Win32::System::Console::SetConsoleMode(console_input(), mode) };
        }
    }
}
