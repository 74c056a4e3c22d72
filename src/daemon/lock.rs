//! The single-instance lock in the runtime dir.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::Context;

use crate::sys::private::create_private_dir;

/// The single-instance lock, held for the life of the process.
pub struct InstanceLock {
    _file: File,
}

/// Takes the lock in `dir`, or says which pid holds it.
pub fn acquire_lock(dir: &Path) -> anyhow::Result<Result<InstanceLock, Option<u32>>> {
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("yaku.lock");
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    // A symlink planted as yaku.lock would make us truncate and write whatever it points at.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NOFOLLOW);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(&path).with_context(|| {
        format!(
            "cannot open {} (a symlink there is never followed)",
            path.display()
        )
    })?;
    if !file.metadata()?.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            Ok(Ok(InstanceLock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Ok(Err(pid.trim().parse().ok()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Whether a process holds the lock in `dir` now. Only opens an existing file (never
/// creates, truncates or follows a symlink); a lock we can take is let go at once.
pub fn is_held(dir: &Path) -> bool {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NOFOLLOW);
    let Ok(file) = opts.open(dir.join("yaku.lock")) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_reports_the_pid_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire_lock(dir.path()).unwrap();
        assert!(first.is_ok());
        assert_eq!(
            acquire_lock(dir.path()).unwrap().err(),
            Some(Some(std::process::id()))
        );
        drop(first);
        assert!(acquire_lock(dir.path()).unwrap().is_ok());
    }

    #[test]
    fn the_lock_is_held_while_its_owner_keeps_it_and_free_after() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_held(dir.path()), "no lock file");
        let lock = acquire_lock(dir.path()).unwrap();
        assert!(is_held(dir.path()));
        drop(lock);
        assert!(!is_held(dir.path()));
        assert!(
            acquire_lock(dir.path()).unwrap().is_ok(),
            "probing left no lock behind"
        );
    }

    #[test]
    #[cfg(unix)] // creating a symlink needs a privilege on Windows
    fn a_lock_file_that_is_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("yaku.lock")).unwrap();
        let err = acquire_lock(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
