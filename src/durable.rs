//! Writing files so that a crash or a power cut leaves either the old file or the new one,
//! never half of one: write a temporary file beside the target, flush it to disk, rename it,
//! flush the folder that holds the name. Every file pinsight writes goes through here
//! ([`write()`], or [`write_new`] for a file that must not replace one); a head folder is
//! written as a whole into a staging folder that takes its place in one rename
//! ([`rename_noreplace`], [`exchange`]).
//!
//! Files get the permissions `File::create` would give them (`0o666` less the umask), folders
//! those of `mkdir` (`0o777` less the umask), not the private `0o600`/`0o700` of a temporary
//! file.

use std::ffi::CString;
use std::fs::Permissions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The folder that holds `path`'s name (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// How the temporary files of [`write()`] are named: `.pinsight-XXXXXX`, six random
/// characters.
const TEMPORARY_PREFIX: &str = ".pinsight-";

/// Whether `name` is that of a temporary file [`write()`] makes.
pub fn is_temporary_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_bytes();
    name.len() == TEMPORARY_PREFIX.len() + 6
        && name.starts_with(TEMPORARY_PREFIX.as_bytes())
        && name[TEMPORARY_PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
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
        .prefix(TEMPORARY_PREFIX)
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    sync_dir(dir).map_err(fail)
}

/// Writes `bytes` as a new file under the first of `names` (paths in the folder `dir`) that
/// is free, through a temporary file in `dir`: synced, renamed without replacing anything, the
/// folder synced. Returns the path taken; `AlreadyExists` when every name is taken.
pub fn write_new(
    dir: &Path,
    names: impl IntoIterator<Item = PathBuf>,
    bytes: &[u8],
) -> std::io::Result<PathBuf> {
    let mut file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    // Removed on drop, unless renamed.
    let temporary = file.into_temp_path();
    for name in names {
        match rename_noreplace(&temporary, &name) {
            Ok(()) => {
                // Nothing is left at the temporary name to remove.
                let _ = temporary.keep();
                sync_dir(dir)?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "every name for it is taken",
    ))
}

/// A folder being built beside the folder it will replace (named `.pinsight-<what>-XXXXXX`),
/// locked (`flock`) for as long as it lives so that a later run can tell it from one that a
/// crash or a power cut left behind ([`stale_staging_dirs`]). It is removed with what is in it
/// when dropped, so put only files pinsight wrote in it, and [`StagingDir::keep`] it before it
/// holds anything else.
pub struct StagingDir {
    dir: tempfile::TempDir,
    lock: std::fs::File,
}

impl StagingDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stops removing the folder on drop; the returned lock keeps it marked as in use until it
    /// is dropped.
    pub fn keep(self) -> (PathBuf, std::fs::File) {
        (self.dir.keep(), self.lock)
    }
}

/// A new, empty, locked folder beside `target` to build a folder in before it takes `target`'s
/// place (its parent folder must exist).
pub fn staging_dir_for(target: &Path, what: &str) -> std::io::Result<StagingDir> {
    let dir = tempfile::Builder::new()
        .prefix(&staging_prefix(what))
        .permissions(Permissions::from_mode(0o777))
        .tempdir_in(parent_of(target))?;
    let lock = lock_dir(dir.path())?;
    Ok(StagingDir { dir, lock })
}

fn staging_prefix(what: &str) -> String {
    format!(".pinsight-{what}-")
}

/// How old an unlocked staging folder must be to count as left behind: a new one is unlocked
/// for the moment between its creation and its lock.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The staging folders beside `target` that no running pinsight holds: left behind by a run
/// that crashed or lost power. Each comes with its lock, held until the caller drops it.
pub fn stale_staging_dirs(target: &Path, what: &str) -> Vec<(PathBuf, std::fs::File)> {
    let prefix = staging_prefix(what);
    let Ok(entries) = std::fs::read_dir(parent_of(target)) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let age = metadata.modified().ok().and_then(|m| m.elapsed().ok());
        if !metadata.is_dir() || age.is_none_or(|age| age < STALE_AFTER) {
            continue;
        }
        if let Ok(lock) = std::fs::File::open(&path)
            && try_lock(&lock).unwrap_or(false)
        {
            stale.push((path, lock));
        }
    }
    stale
}

/// Opens the folder `dir` and locks it as a staging folder is locked, failing if another holds
/// it.
pub fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    let lock = std::fs::File::open(dir)?;
    if try_lock(&lock)? {
        Ok(lock)
    } else {
        Err(std::io::Error::other(
            "another pinsight is writing it at this moment",
        ))
    }
}

/// Takes an exclusive `flock` on `file` without waiting: false when another holds it.
fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor belongs to `file`, open for the whole call; flock only reads it.
    let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if status == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Creates `dir` and any missing folders above it, syncing each new folder's parent so that
/// the new names survive a power cut.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent_of(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(std::io::Error::new(
            e.kind(),
            format!("{} exists and is not a folder", dir.display()),
        )),
        Err(e) => Err(e),
    }
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
