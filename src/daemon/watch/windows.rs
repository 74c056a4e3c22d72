//! Saved edits on Windows: one thread per watched directory, blocked in a synchronous
//! `ReadDirectoryChangesW` until something in it changes. notify's Windows backend wakes its
//! thread every 100 ms for ever (`WaitForSingleObjectEx(…, 100, …)` in its loop), ten
//! wake-ups a second of an otherwise idle daemon; a blocked read wakes only on a change.
//!
//! A change is sent as an empty list of paths ("something in a watched directory changed"):
//! file names on Windows compare without case, and the watch loop tells a real change from
//! any other by reading the watched files anyway.

use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc::{self, error::TrySendError};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_BACKUP_SEMANTICS, FILE_LIST_DIRECTORY, FILE_NOTIFY_CHANGE_CREATION,
    FILE_NOTIFY_CHANGE_FILE_NAME, FILE_NOTIFY_CHANGE_LAST_WRITE, FILE_NOTIFY_CHANGE_SIZE,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING, ReadDirectoryChangesW,
};

/// What counts as a change: a file made, renamed or deleted (an editor's save by rename), or
/// written.
const CHANGES: u32 = FILE_NOTIFY_CHANGE_FILE_NAME
    | FILE_NOTIFY_CHANGE_LAST_WRITE
    | FILE_NOTIFY_CHANGE_SIZE
    | FILE_NOTIFY_CHANGE_CREATION;

/// Watches directories; each change is sent on `changes`.
pub struct DirChanges {
    changes: mpsc::Sender<Vec<PathBuf>>,
}

impl DirChanges {
    pub fn new(changes: mpsc::Sender<Vec<PathBuf>>) -> Result<Self, String> {
        Ok(Self { changes })
    }

    /// Starts watching `dir` (not its subdirectories) until the daemon stops.
    pub fn watch(&mut self, dir: &Path) -> Result<(), String> {
        let wide: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
        // SAFETY: a NUL-terminated path; no security attributes or template. Sharing
        // everything keeps the directory's files writable, renamable and deletable.
        let handle = unsafe {
            CreateFileW(
                wide.as_ptr(),
                FILE_LIST_DIRECTORY,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_BACKUP_SEMANTICS, // needed to open a directory
                std::ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let dir_handle = DirHandle(handle as isize);
        let changes = self.changes.clone();
        std::thread::Builder::new()
            .name("yaku-config".into())
            .spawn(move || wait_for_changes(dir_handle, changes))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// An open directory, as an integer so that it may move to its thread; closed on drop.
struct DirHandle(isize);

impl Drop for DirHandle {
    fn drop(&mut self) {
        // SAFETY: a handle CreateFileW gave us, closed once.
        unsafe { CloseHandle(self.0 as HANDLE) };
    }
}

/// Blocks in the directory read; sends an empty list for each batch of changes until the
/// watch loop is gone or the read fails.
fn wait_for_changes(dir: DirHandle, changes: mpsc::Sender<Vec<PathBuf>>) {
    // The names are not read (see the module doc); a buffer too small for a batch only makes
    // Windows report the batch without them. u32s: the buffer must be DWORD-aligned.
    let mut buf = [0u32; 256];
    loop {
        let mut returned = 0u32;
        // SAFETY: our open directory; a writable, aligned buffer of the length given; a
        // synchronous call (no OVERLAPPED, no completion routine) that returns when changes
        // come. Changes between two calls are kept by the handle for the next one.
        let ok = unsafe {
            ReadDirectoryChangesW(
                dir.0 as HANDLE,
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf) as u32,
                0,
                CHANGES,
                &mut returned,
                std::ptr::null_mut(),
                None,
            )
        };
        if ok == 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "watching a config directory failed: edits to its files apply on `yaku reload`");
            return;
        }
        match changes.try_send(Vec::new()) {
            // Full: a look at the files is already coming, and it reads them all.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

/// Waits out the rest of a save: this watch sends each write as it comes, where notify's
/// debouncer merges an editor's writes into one batch.
pub async fn settle(
    mut paths: Vec<PathBuf>,
    changes: &mut mpsc::Receiver<Vec<PathBuf>>,
) -> Vec<PathBuf> {
    tokio::time::sleep(super::DEBOUNCE).await;
    while let Ok(more) = changes.try_recv() {
        paths.extend(more);
    }
    paths
}
