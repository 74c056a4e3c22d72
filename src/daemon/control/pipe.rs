//! The control channel on Windows: a named pipe, `\\.\pipe\yaku-<user SID>`, that only the
//! current user can open. The SID names it (a user name may be renamed or shared by a domain
//! and a local account; the SID is the account), the first instance is created with
//! `first_pipe_instance` so that yaku never serves a pipe someone else created under its name,
//! every instance carries a security descriptor that grants the user's SID and nobody else
//! (`D:P(A;;GA;;;<SID>)`: protected, so nothing is inherited), and remote clients are refused.
//! The protocol and the bounds are the Unix socket's ([`super::handle`], [`super::answer`]).
//!
//! A client talks only to a pipe whose server process runs as the client's own user
//! (`GetNamedPipeServerProcessId` → its token's user, `EqualSid` with ours): a program that
//! created the name before yaku could (a squatter) would otherwise receive every request and
//! answer for yaku. It fails closed: a check that cannot be made refuses too.

/// The security descriptor (SDDL) that grants `sid` all access and nobody else any:
/// `P` keeps inherited entries out.
#[cfg_attr(not(windows), allow(dead_code))]
fn sddl_for(sid: &str) -> String {
    format!("D:P(A;;GA;;;{sid})")
}

/// The pipe's name for the user `sid`.
#[cfg_attr(not(windows), allow(dead_code))]
fn pipe_name_for(sid: &str) -> String {
    format!(r"\\.\pipe\yaku-{sid}")
}

/// Whether `s` is a SID in its string form (`S-1-5-21-…`): only then may it go into an SDDL
/// string or a pipe name.
#[cfg_attr(not(windows), allow(dead_code))]
fn is_sid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("S-1-") else {
        return false;
    };
    rest.split('-').all(|part| {
        !part.is_empty() && part.len() <= 10 && part.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Who serves the pipe a client has connected to, as far as the client could tell.
#[cfg_attr(not(windows), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerUser {
    /// The server process, its user's SID and ours (as text, for the message), and whether
    /// the two are the same account (`EqualSid`).
    Known {
        pid: u32,
        server: String,
        own: String,
        same: bool,
    },
    /// A step of the check failed: which call, and the system's error.
    Unchecked { step: &'static str, error: String },
}

/// Why a client must not talk to the pipe `name`; None when its server runs as this user.
#[cfg_attr(not(windows), allow(dead_code))]
fn refusal(name: &str, server: &ServerUser) -> Option<String> {
    match server {
        ServerUser::Known { same: true, .. } => None,
        ServerUser::Known {
            pid, server, own, ..
        } => Some(format!(
            "refusing to talk to {name}: the program serving it (pid {pid}) runs as {server}, \
             not as you ({own}), so it is not your yaku; another program holds yaku's pipe name"
        )),
        ServerUser::Unchecked { step, error } => Some(format!(
            "refusing to talk to {name}: cannot tell which user the program serving it runs as \
             ({step} failed: {error})"
        )),
    }
}

/// What the daemon says when the pipe's name is taken before it could make the first
/// instance: `probe` is the answer a status request got there.
#[cfg_attr(not(windows), allow(dead_code))]
fn squatted(name: &str, probe: Result<Option<u32>, String>) -> String {
    match probe {
        Ok(Some(pid)) => format!("another yaku (pid {pid}) already serves {name}"),
        Ok(None) => format!(
            "another program holds yaku's pipe name {name}: it answers, but not as yaku does"
        ),
        Err(e) => format!(
            "another program holds yaku's pipe name {name}, and no yaku answers there ({e}); \
             close that program and start yaku again"
        ),
    }
}

#[cfg(windows)]
pub use imp::{pipe_name, request, serve};

#[cfg(windows)]
mod imp {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::Value;
    use std::os::windows::io::AsRawHandle;
    use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};
    use tokio::sync::Semaphore;

    use windows_sys::Win32::Foundation::{
        CloseHandle, ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY, HANDLE, LocalFree,
    };
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::{
        EqualSid, GetTokenInformation, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
        TOKEN_QUERY, TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Pipes::GetNamedPipeServerProcessId;
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    use super::super::{
        ACCEPT_BACKOFF, ControlError, Handles, MAX_CONNECTIONS, READ_TIMEOUT, handle, reply_of,
    };
    use super::{ServerUser, is_sid, pipe_name_for, refusal, sddl_for, squatted};
    use crate::protocol::Request;

    /// How long a client retries while every instance of the pipe is busy.
    const BUSY_WAIT: Duration = Duration::from_secs(5);
    /// How long a client waits for the daemon's reply (a reload may take a while).
    const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
    /// How many more times, and how far apart, the daemon looks whether its pipe's name is
    /// still taken before it says another program holds it.
    const TAKEN_LOOKS: u32 = 3;
    const TAKEN_LOOK_GAP: Duration = Duration::from_millis(300);
    /// How long the daemon waits for whatever holds its pipe's name to answer a status.
    const SQUAT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

    /// The current user's SID in its string form.
    fn current_user_sid() -> io::Result<String> {
        // SAFETY: the pseudo-handle of our own process needs no closing.
        let user = process_user(unsafe { GetCurrentProcess() }).map_err(|(_, e)| e)?;
        sid_string(user.sid())
    }

    /// A token's TOKEN_USER, in a buffer aligned for it (its SID lies inside).
    struct TokenUserBuf(Vec<u64>);

    impl TokenUserBuf {
        fn of(token: HANDLE) -> io::Result<Self> {
            let mut len = 0u32;
            // SAFETY: a size query (null buffer, length 0); it fails and writes the size needed.
            unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len) };
            if (len as usize) < std::mem::size_of::<TOKEN_USER>() {
                return Err(io::Error::last_os_error());
            }
            // u64s: a TOKEN_USER needs pointer alignment.
            let mut buf = vec![0u64; (len as usize).div_ceil(8)];
            // SAFETY: `buf` holds at least `len` bytes, aligned for TOKEN_USER.
            if unsafe {
                GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len)
            } == 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(Self(buf))
        }

        /// The user's SID, valid while `self` lives.
        fn sid(&self) -> PSID {
            // SAFETY: GetTokenInformation filled the buffer with a TOKEN_USER.
            unsafe { (*self.0.as_ptr().cast::<TOKEN_USER>()).User.Sid }
        }
    }

    /// The user a process runs as; on failure, the call that failed.
    fn process_user(process: HANDLE) -> Result<TokenUserBuf, (&'static str, io::Error)> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: a process handle with query access; `token` is written on success.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(("OpenProcessToken", io::Error::last_os_error()));
        }
        let user = TokenUserBuf::of(token).map_err(|e| ("GetTokenInformation", e));
        // SAFETY: a handle we opened above and close once.
        unsafe { CloseHandle(token) };
        user
    }

    /// Who serves the pipe `pipe` (a connected client end) and whether it is us.
    fn server_user(pipe: HANDLE) -> ServerUser {
        let unchecked = |step, e: io::Error| ServerUser::Unchecked {
            step,
            error: e.to_string(),
        };
        let mut pid = 0u32;
        // SAFETY: a connected pipe handle; `pid` is written on success.
        if unsafe { GetNamedPipeServerProcessId(pipe, &mut pid) } == 0 {
            return unchecked("GetNamedPipeServerProcessId", io::Error::last_os_error());
        }
        // SAFETY: no pointers; the handle is closed below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return unchecked("OpenProcess", io::Error::last_os_error());
        }
        let server = process_user(process);
        // SAFETY: the handle OpenProcess gave us, closed once.
        unsafe { CloseHandle(process) };
        let server = match server {
            Ok(u) => u,
            Err((step, e)) => return unchecked(step, e),
        };
        // SAFETY: the pseudo-handle of our own process needs no closing.
        let own = match process_user(unsafe { GetCurrentProcess() }) {
            Ok(u) => u,
            Err((step, e)) => return unchecked(step, e),
        };
        // SAFETY: two SIDs inside token buffers that live to the end of this function.
        let same = unsafe { EqualSid(server.sid(), own.sid()) } != 0;
        let text = |sid| sid_string(sid).unwrap_or_else(|e| format!("an unreadable SID ({e})"));
        ServerUser::Known {
            pid,
            server: text(server.sid()),
            own: text(own.sid()),
            same,
        }
    }

    /// A SID in its string form (`S-1-5-…`), checked to be one.
    fn sid_string(sid: PSID) -> io::Result<String> {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: a valid SID; on success `text` is a LocalAlloc'ed NUL-terminated string.
        if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `text` is NUL-terminated; it is read up to the NUL, then freed once.
        let s = unsafe {
            let n = (0..).take_while(|&i| *text.add(i) != 0).count();
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        };
        if !is_sid(&s) {
            return Err(io::Error::other(format!("not a SID: {s:?}")));
        }
        Ok(s)
    }

    /// The pipe's name for the current user. Without a readable SID it is a name no daemon
    /// serves (the server needs the SID for its security descriptor), so clients find none.
    pub fn pipe_name() -> String {
        match current_user_sid() {
            Ok(sid) => pipe_name_for(&sid),
            Err(_) => r"\\.\pipe\yaku-no-user-sid".to_string(),
        }
    }

    /// A self-relative security descriptor made from SDDL, freed on drop.
    struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

    // SAFETY: the descriptor is immutable memory of our own, only read by CreateNamedPipeW.
    unsafe impl Send for SecurityDescriptor {}
    // SAFETY: as above: never written after it is made.
    unsafe impl Sync for SecurityDescriptor {}

    impl SecurityDescriptor {
        /// Grants `sid` all access, and nobody else any.
        fn only_for(sid: &str) -> io::Result<Self> {
            let sddl: Vec<u16> = sddl_for(sid).encode_utf16().chain([0]).collect();
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            // SAFETY: a NUL-terminated SDDL string; `sd` is written on success.
            let ok = unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 || sd.is_null() {
                return Err(io::Error::last_os_error());
            }
            Ok(Self(sd))
        }

        /// Creates one instance of the pipe under this descriptor.
        fn create(&self, opts: &ServerOptions, name: &Path) -> io::Result<NamedPipeServer> {
            let mut attrs = SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: self.0,
                bInheritHandle: 0,
            };
            // SAFETY: `attrs` and the descriptor it points at outlive the call.
            unsafe {
                opts.create_with_security_attributes_raw(
                    name,
                    (&mut attrs as *mut SECURITY_ATTRIBUTES).cast(),
                )
            }
        }
    }

    impl Drop for SecurityDescriptor {
        fn drop(&mut self) {
            // SAFETY: LocalAlloc'ed by ConvertStringSecurityDescriptorToSecurityDescriptorW.
            unsafe { LocalFree(self.0) };
        }
    }

    /// Logs a failure at most once a minute.
    #[derive(Default)]
    struct Throttle(Option<Instant>);

    impl Throttle {
        fn warn(&mut self, what: &str, e: &io::Error) {
            if self
                .0
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                tracing::warn!(error = %e, "control pipe: {what} failed; retrying (logged once a minute)");
                self.0 = Some(Instant::now());
            }
        }
    }

    /// Whether something serves the pipe `name` now (an instance opens, or all are busy).
    fn name_taken(name: &Path) -> bool {
        match ClientOptions::new().open(name) {
            Ok(_) => true,
            Err(e) => e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32),
        }
    }

    /// Serves the pipe until the task is dropped. Fails at once when the pipe cannot be made
    /// ours (no SID, or another process holds the name).
    pub async fn serve(name: PathBuf, handles: Handles) -> io::Result<()> {
        let sid = current_user_sid()?;
        let sd = SecurityDescriptor::only_for(&sid)?;
        let mut opts = ServerOptions::new();
        opts.reject_remote_clients(true).first_pipe_instance(true);
        // A name that a client can open is served by someone already. `first_pipe_instance`
        // refuses such a name too; this look first also holds where that flag is ignored
        // (Wine), and costs one open at start.
        // A yaku that just stopped may still hold an instance for a moment: look again.
        let mut taken = name_taken(&name);
        for _ in 0..TAKEN_LOOKS {
            if !taken {
                break;
            }
            tokio::time::sleep(TAKEN_LOOK_GAP).await;
            taken = name_taken(&name);
        }
        let server = if taken {
            Err(io::Error::from_raw_os_error(ERROR_ACCESS_DENIED as i32))
        } else {
            sd.create(&opts, &name)
        };
        let mut server = match server {
            Ok(server) => server,
            // The name exists already; we hold the instance lock, so it is seldom a yaku.
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                let probe_name = name.clone();
                let probe = tokio::task::spawn_blocking(move || {
                    request_within(&probe_name, &Request::Status, SQUAT_PROBE_TIMEOUT)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map(|v| v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()));
                return Err(io::Error::other(squatted(&name.to_string_lossy(), probe)));
            }
            Err(e) => return Err(e),
        };
        opts.first_pipe_instance(false);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut throttle = Throttle::default();
        loop {
            let connected = server.connect().await;
            // The next instance is made before this one is let go, so that the name always
            // has one of ours waiting and a client never finds none.
            let next = loop {
                match sd.create(&opts, &name) {
                    Ok(next) => break next,
                    Err(e) => {
                        throttle.warn("creating an instance", &e);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            };
            let mut current = std::mem::replace(&mut server, next);
            if let Err(e) = connected {
                throttle.warn("accepting a client", &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            // Beyond the cap a connection is closed at once.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(current);
                continue;
            };
            let handles = handles.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(&mut current, &handles).await {
                    tracing::debug!(error = %e, "control connection ended badly");
                }
                // Closing the server's end could discard a reply the client has not read
                // yet: wait (bounded) for the client to hang up first.
                let _ = tokio::time::timeout(READ_TIMEOUT, async {
                    use tokio::io::AsyncReadExt;
                    let mut byte = [0u8; 64];
                    while matches!(current.read(&mut byte).await, Ok(n) if n > 0) {}
                })
                .await;
                let _ = current.disconnect();
                drop(slot);
            });
        }
    }

    /// Sends one request to the daemon and returns its reply. Runs on a thread of its own
    /// with its own runtime, so that it may be called from inside another runtime too.
    pub fn request(name: &Path, req: &Request) -> Result<Value, ControlError> {
        request_within(name, req, REPLY_TIMEOUT)
    }

    /// [`request`], waiting at most `timeout` for the reply.
    fn request_within(
        name: &Path,
        req: &Request,
        timeout: Duration,
    ) -> Result<Value, ControlError> {
        let (name, line) = (name.to_path_buf(), req.to_line());
        let worker = std::thread::Builder::new()
            .name("yaku-control-client".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ControlError::Broken(e.to_string()))?
                    .block_on(exchange(&name, &line, timeout))
            })
            .map_err(|e| ControlError::Broken(e.to_string()))?;
        worker
            .join()
            .map_err(|_| ControlError::Broken("the control client failed".into()))?
    }

    async fn exchange(name: &Path, line: &str, timeout: Duration) -> Result<Value, ControlError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let broken = |e: io::Error| ControlError::Broken(e.to_string());
        let busy_until = Instant::now() + BUSY_WAIT;
        let mut pipe = loop {
            match ClientOptions::new().open(name) {
                Ok(pipe) => break pipe,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ControlError::NotRunning);
                }
                // Every instance is serving someone; the server makes a new one at once.
                Err(e)
                    if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
                        && Instant::now() < busy_until =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(broken(e)),
            }
        };
        // Before a byte of the request goes out: a squatter learns nothing from it.
        if let Some(why) = refusal(
            &name.to_string_lossy(),
            &server_user(pipe.as_raw_handle() as HANDLE),
        ) {
            return Err(ControlError::NotYaku(why));
        }
        let mut reply = String::new();
        tokio::time::timeout(timeout, async {
            pipe.write_all(line.as_bytes()).await?;
            BufReader::new(&mut pipe).read_line(&mut reply).await
        })
        .await
        .map_err(|_| ControlError::Broken(format!("no reply within {} s", timeout.as_secs())))?
        .map_err(broken)?;
        reply_of(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_sid_is_granted_access_and_nothing_is_inherited() {
        let sid = "S-1-5-21-1004336348-1177238915-682003330-1000";
        assert_eq!(sddl_for(sid), format!("D:P(A;;GA;;;{sid})"));
        assert_eq!(pipe_name_for(sid), format!(r"\\.\pipe\yaku-{sid}"));
    }

    #[test]
    fn a_client_talks_only_to_a_pipe_served_as_its_own_user_and_refuses_when_it_cannot_tell() {
        let name = r"\\.\pipe\yaku-S-1-5-21-1-2-3-1000";
        let known = |server: &str, own: &str, same| ServerUser::Known {
            pid: 4242,
            server: server.into(),
            own: own.into(),
            same,
        };
        let unchecked = |step| ServerUser::Unchecked {
            step,
            error: "Access is denied. (os error 5)".into(),
        };
        let me = "S-1-5-21-1-2-3-1000";
        // (who serves, talks?, what the refusal must name)
        let cases: [(ServerUser, bool, &[&str]); 6] = [
            (known(me, me, true), true, &[]),
            (
                known("S-1-5-21-1-2-3-1001", me, false),
                false,
                &[
                    "pid 4242",
                    "S-1-5-21-1-2-3-1001",
                    me,
                    "another program holds yaku's pipe name",
                ],
            ),
            (
                known("S-1-5-18", me, false),
                false,
                &["S-1-5-18", "not as you"],
            ),
            (
                unchecked("GetNamedPipeServerProcessId"),
                false,
                &["GetNamedPipeServerProcessId failed", "os error 5"],
            ),
            (
                unchecked("OpenProcess"),
                false,
                &["OpenProcess failed", "cannot tell which user"],
            ),
            (
                unchecked("OpenProcessToken"),
                false,
                &["OpenProcessToken failed"],
            ),
        ];
        for (server, talks, names) in cases {
            let why = refusal(name, &server);
            assert_eq!(why.is_none(), talks, "{server:?}: {why:?}");
            let Some(why) = why else { continue };
            for part in names.iter().chain(&[name]) {
                assert!(why.contains(part), "{server:?}: {why:?} lacks {part:?}");
            }
        }
    }

    #[test]
    fn a_taken_pipe_name_is_reported_as_another_program_unless_a_yaku_answers_there() {
        let name = r"\\.\pipe\yaku-S-1-5-18";
        /// What a status request to the name's holder got: its pid, if it gave one.
        type Probe = Result<Option<u32>, String>;
        let cases: [(Probe, &[&str]); 3] = [
            (Ok(Some(77)), &["another yaku (pid 77)"]),
            (
                Ok(None),
                &["another program holds yaku's pipe name", "not as yaku does"],
            ),
            (
                Err("yaku did not answer: EOF".into()),
                &[
                    "another program holds yaku's pipe name",
                    "no yaku answers there",
                    "EOF",
                ],
            ),
        ];
        for (probe, names) in cases {
            let said = squatted(name, probe.clone());
            for part in names.iter().chain(&[name]) {
                assert!(said.contains(part), "{probe:?}: {said:?} lacks {part:?}");
            }
        }
    }

    #[test]
    fn only_a_well_formed_sid_may_name_the_pipe_or_enter_the_descriptor() {
        let cases = [
            ("S-1-5-21-1004336348-1177238915-682003330-1000", true),
            ("S-1-5-18", true),
            ("S-1-", false),
            ("S-1-5--18", false),
            ("S-1-5-18)(A;;GA;;;WD", false),
            (r"S-1-5-18\..\x", false),
            ("s-1-5-18", false),
            ("S-1-5-99999999999", false),
            ("", false),
        ];
        for (sid, ok) in cases {
            assert_eq!(is_sid(sid), ok, "{sid:?}");
        }
    }
}
