//! Writing files so that a crash or a power cut leaves either the old file or the new one,
//! never half of one: write a temporary file beside the target, flush it to disk, rename it,
//! flush the folder that holds the name. Every file pinsight writes goes through here
//! ([`write()`]); a head folder is written as a whole into a staging folder that takes its place
//! in one rename ([`rename_noreplace`], [`exchange`]).
//!
//! Files get the permissions `File::create` would give them (`0o666` less the umask), folders
//! those of `mkdir` (`0o777` less the umask), not the private `0o600`/`0o700` of a temporary
//! file.

use std::ffi::CString;
use std::fs::Permissions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Error, Result};

/// The folder that holds `path`'s name (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` through a temporary file in the same folder: synced, renamed over
/// `path`, and the folder synced, so that after a power cut `path` holds the old bytes or the
/// new ones.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::Write {
        path: path.into(),
        reason: e.to_string(),
    };
    let dir = parent_of(path);
    let mut file = tempfile::Builder::new()
        .prefix(".pinsight-")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    sync_dir(dir).map_err(fail)
}

/// A new, empty folder beside `target` (named `.pinsight-<what>-XXXXXX`) to build a folder in
/// before it takes `target`'s place. It is removed with what is in it when dropped, so put
/// only files pinsight wrote in it, and `keep` it before it holds anything else.
pub fn staging_dir_for(target: &Path, what: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!(".pinsight-{what}-"))
        .permissions(Permissions::from_mode(0o777))
        .tempdir_in(parent_of(target))
}

/// Flushes a folder's entries (the names created, renamed or removed in it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `from` to `to`, failing (`AlreadyExists`) rather than replacing anything at `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

/// Exchanges `a` and `b` (both must exist) in one step: no moment in which either name is
/// missing.
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: both pointers come from `CString`s (NUL-terminated, no interior NUL) that live
    // until the end of this function, past the call; renameat2 only reads them.
    let status = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            flags,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
