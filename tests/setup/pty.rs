//! Runs a program on a pseudo-terminal, as a user at a terminal would: the child gets the pty's
//! slave as stdin, stdout, stderr and controlling terminal; the test reads the master into a
//! transcript and types answers when the expected prompt shows.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Pty {
    master: File,
    out: Arc<Mutex<Vec<u8>>>,
    /// Bytes of the transcript already matched by `expect`.
    seen: usize,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

fn cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        assert!(flags >= 0, "F_GETFD failed");
        assert_eq!(
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC),
            0
        );
    }
}

impl Pty {
    /// Spawns `cmd` on a new pty, in its own session with the pty as controlling terminal.
    pub fn spawn(mut cmd: Command) -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty fills two descriptors; null name, termios and window size are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // Other tests spawn children concurrently: they must not inherit our pty.
        cloexec(&master);
        cloexec(&slave);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the child on the pty");
        // The Command holds our copies of the slave: close them, so the master reports the end
        // (EIO) once the child has exited.
        drop(cmd);
        let master = File::from(master);
        let mut reading = master.try_clone().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reading.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // EIO: every slave descriptor is closed
                }
            }
        });
        Pty {
            master,
            out,
            seen: 0,
            child,
            reader: Some(reader),
        }
    }

    /// Everything the child wrote so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until `pattern` appears after what earlier calls matched; fails with the
    /// transcript when it does not within `timeout`.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) {
        let needle = pattern.as_bytes();
        let until = Instant::now() + timeout;
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(at) = out[self.seen..]
                    .windows(needle.len())
                    .position(|w| w == needle)
                {
                    self.seen += at + needle.len();
                    return;
                }
            }
            if Instant::now() >= until {
                panic!(
                    "{pattern:?} did not appear within {timeout:?}; transcript so far:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `answer` and Enter.
    pub fn send_line(&mut self, answer: &str) {
        self.master.write_all(answer.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
        self.master.flush().unwrap();
    }

    /// Types `bytes` as they are (e.g. Ctrl-C, 0x03).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Whether the terminal echoes what is typed (its line discipline's ECHO flag).
    pub fn echoes(&self) -> bool {
        // SAFETY: tcgetattr on our master descriptor into a zeroed termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.master.as_raw_fd(), &mut t), 0);
            t.c_lflag & libc::ECHO != 0
        }
    }

    /// Waits for the child to exit (killing it after `timeout`) and for its last output.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the child did not exit within {timeout:?}; transcript:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends at EIO; do not hang if something else still holds the slave.
        let drained = Instant::now() + Duration::from_secs(2);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.reader.as_ref().is_some_and(|r| r.is_finished()) {
            let _ = self.reader.take().map(JoinHandle::join);
        }
        status
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
