//! A new head without a restart: `pinsight run` watches its head folder and takes a head that
//! replaces it (written with `--out` on the same folder, or files copied over it), or any
//! head there on SIGHUP (`systemctl reload pinsight`).
//!
//! The watch is a thread that looks at the folder and its files (inode, size, modification
//! time) every [`POLL`], and asks for a reload once a change has stayed the same for one more
//! look (a copy in progress is waited for). The run loop loads the new head between two frames
//! on the backbone it already has, with every check of a start (checksums, made for this
//! backbone, the shapes, and the deployment's classes): a head that fails one is refused with
//! the reason, and the running head stays until the folder changes again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::head::HEAD_FILES;
use crate::{Error, Result};

/// How often the head folder is looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// Whether the classes of a new head can be shown: the deployment's check, the reason if not.
pub type Accept = dyn Fn(&[String]) -> std::result::Result<(), String> + Send + Sync;

/// The head folder watched, and whether a reload is asked for.
pub struct HeadWatch {
    pub head: PathBuf,
    requested: Arc<AtomicBool>,
    /// The folder's state when the loop last loaded from it (or the watch last asked it to):
    /// a change is one from this.
    seen: Arc<Mutex<Fingerprint>>,
    accept: Box<Accept>,
}

impl std::fmt::Debug for HeadWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadWatch")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// What identifies the folder's state: the folder's inode (a new folder renamed into its
/// place), and each head file's inode, size and modification time. Not the folder's own
/// times: another file put in the folder does not change its head.
type Fingerprint = (Option<u64>, Vec<Option<(u64, u64, i64, i64)>>);

fn fingerprint(head: &Path) -> Fingerprint {
    let files = HEAD_FILES
        .iter()
        .map(|name| {
            let meta = std::fs::metadata(head.join(name)).ok()?;
            Some((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()))
        })
        .collect();
    (std::fs::metadata(head).ok().map(|meta| meta.ino()), files)
}

impl HeadWatch {
    /// Watches `head` until `stop`: a settled change to its files, or SIGHUP, asks for a
    /// reload. `accept` checks a new head's classes before it is taken.
    pub fn start(head: &Path, stop: Arc<AtomicBool>, accept: Box<Accept>) -> Result<HeadWatch> {
        let requested = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone())
            .map_err(|e| Error::Internal(format!("cannot watch for SIGHUP: {e}")))?;
        let watched = head.to_path_buf();
        let asked = requested.clone();
        let seen = Arc::new(Mutex::new(fingerprint(head)));
        let last = seen.clone();
        std::thread::Builder::new()
            .name("head-watch".into())
            .spawn(move || {
                let mut pending: Option<Fingerprint> = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(POLL);
                    let now = fingerprint(&watched);
                    let mut seen = last.lock().unwrap_or_else(|e| e.into_inner());
                    if now == *seen {
                        pending = None;
                    } else if pending.as_ref() == Some(&now) {
                        log::info!("{} changed: loading the head", watched.display());
                        asked.store(true, Ordering::Relaxed);
                        *seen = now;
                        pending = None;
                    } else {
                        pending = Some(now);
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the head watch: {e}")))?;
        Ok(HeadWatch {
            head: head.into(),
            requested,
            seen,
            accept,
        })
    }

    /// The loop loads the folder as it is now, on its own account (enrollment wrote it): the
    /// watch takes this state as seen, and asks for no reload of it.
    pub fn mark_seen(&self) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint(&self.head);
    }

    /// Whether a reload was asked for since the last call.
    pub fn take(&self) -> bool {
        self.requested.swap(false, Ordering::Relaxed)
    }

    /// Whether a head with these classes can be taken.
    pub fn accept(&self, labels: &[String]) -> std::result::Result<(), String> {
        (self.accept)(labels)
    }
}
