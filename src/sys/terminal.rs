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

#[cfg(not(unix))]
pub fn stdin_ready() -> bool {
    false
}

/// Turns terminal echo off for as long as it lives. While it is off, SIGINT, SIGTERM, SIGHUP
/// and SIGQUIT turn echo back on before doing what they would have done, so Ctrl-C at the key
/// prompt does not leave the shell without echo.
pub struct NoEcho {
    #[cfg(unix)]
    saved: Option<libc::termios>,
    #[cfg(unix)]
    handlers: Vec<(libc::c_int, libc::sighandler_t)>,
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

    #[cfg(not(unix))]
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
    }
}
