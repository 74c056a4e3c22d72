//! Files and directories for the user alone: keys, config, history, logs.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700 where it is new.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Whether a directory may hold yaku's lock and control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirTrust {
    Missing,
    /// A real directory (not a symlink), owned by this user, that nobody else may enter.
    Trusted,
    /// Why not: for the message that names the directory.
    Untrusted(String),
}

/// Judges `dir` without following a symlink at its last component.
pub fn dir_trust(dir: &Path) -> DirTrust {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DirTrust::Missing,
        Err(e) => return DirTrust::Untrusted(e.to_string()),
    };
    if !meta.is_dir() {
        return DirTrust::Untrusted("not a directory".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return DirTrust::Untrusted(format!("owned by uid {}, not {me}", meta.uid()));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return DirTrust::Untrusted(format!("mode {mode:03o}, not 700"));
        }
    }
    DirTrust::Trusted
}

/// Creates `dir` with mode 0700 (its parents as needed), failing with `AlreadyExists` when it
/// is there already: the last mkdir is exclusive, so nobody can slip in a dir of theirs.
pub fn create_new_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    let builder = {
        let mut builder = builder;
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
    };
    builder.create(dir)
}

/// Writes `bytes` to `path` as a 0600 file, replacing any content.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its old mode through open(): tighten it.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates (or truncates) `path` for writing as a 0600 file: an export holds what the user
/// read. An existing regular file is tightened to 0600; a device or pipe is left as it is.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let f = opts.open(path)?;
    #[cfg(unix)]
    if f.metadata()?.is_file() {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Refuses a file that group or others may read, as OpenSSH does for private keys.
#[cfg(unix)]
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot check permissions: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "holds an API key but is readable by others (mode {mode:03o}); run `chmod 600 {}`",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// Files yaku creates (logs, lock) are for the user alone.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}
