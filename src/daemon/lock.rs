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
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
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
}
