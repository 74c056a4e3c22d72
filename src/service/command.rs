//! Running the platform's service tools (systemctl, launchctl, reg) with a time limit.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ServiceError;

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub(crate) struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// `program args...` as a person would type it, for reports and errors.
pub(crate) fn display(program: &Path, args: &[&str]) -> String {
    let mut text = program.display().to_string();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

/// Runs `program args...` with no input, killing it after `timeout`.
pub(crate) fn run(program: &Path, args: &[&str], timeout: Duration) -> Result<Ran, ServiceError> {
    let mut child = spawn(program, args)?;
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                // The readers are not joined: a grandchild may still hold the pipes open.
                return Err(ServiceError::Timeout {
                    command: display(program, args),
                    after: timeout,
                });
            }
            Err(source) => return Err(spawn_error(program, source)),
        }
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|r| r.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    Ok(Ran {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Like [`run`], but a non-zero exit is an error carrying the command's stderr.
pub(crate) fn run_ok(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<Ran, ServiceError> {
    let ran = run(program, args, timeout)?;
    if ran.success() {
        Ok(ran)
    } else {
        Err(ServiceError::CommandFailed {
            command: display(program, args),
            status: ran.status.to_string(),
            stderr: ran.stderr.trim().to_owned(),
        })
    }
}

fn spawn(program: &Path, args: &[&str]) -> Result<Child, ServiceError> {
    let mut attempts = 0;
    loop {
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            // A script written a moment ago can be briefly busy while another thread's fork
            // still holds its write descriptor (seen with parallel tests): try again.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => return Err(spawn_error(program, source)),
            Ok(child) => return Ok(child),
        }
    }
}

fn spawn_error(program: &Path, source: std::io::Error) -> ServiceError {
    ServiceError::Spawn {
        program: program.to_path_buf(),
        source,
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
