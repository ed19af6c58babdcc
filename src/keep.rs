//! Keeping the frames the model is unsure of (`[keep]` in the config file): each result below
//! the threshold has its frame saved as a JPEG in a folder laid out for `pinsight train`, one
//! sub-folder per best guess, so that a user can sort them into the right classes and teach
//! the model what it missed.
//!
//! ```text
//! FOLDER/<best guess>/<UTC time>-f<frame>.jpg    a kept frame (-1, -2, ... if the name is taken)
//! FOLDER/.pinsight-kept                          the index: the files pinsight wrote, oldest first
//! ```
//!
//! The folder has a budget, in files and in bytes, so that months of unattended running do not
//! fill or wear out an SD card: when a new frame takes it over, the oldest kept frames are
//! removed. Only files in the index are ever removed, and only while they are still what
//! pinsight wrote (a regular file of the size it wrote); a file the user put there, renamed
//! into its place or changed is theirs. The index lists the folders pinsight made too, so that
//! a class folder it emptied goes (an empty class folder would stop `pinsight train`) while the
//! user's stay. A frame is written to a temporary file, synced, and renamed to a free name.
//!
//! Writing happens on a thread of its own ([`Keeper`]): the run loop hands it a copy of the
//! frame when it is idle and at most once every `min_interval`, and counts the frame as dropped
//! when it is still busy with the last one. A frame that cannot be written is logged with its
//! path and counted; the run goes on.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::{Error, Result};

/// Files kept when the config file does not say.
pub const DEFAULT_MAX_FILES: u64 = 1000;
/// Files the budget may be: 1 to 100 000.
pub const MAX_FILES: (f64, f64) = (1.0, 100_000.0);
/// Megabytes (10⁶ bytes) kept when the config file does not say.
pub const DEFAULT_MAX_MEGABYTES: f64 = 200.0;
/// Megabytes the budget may be: 1 to 1 000 000 (a terabyte).
pub const MAX_MEGABYTES: (f64, f64) = (1.0, 1e6);
/// Seconds between two kept frames when the config file does not say.
pub const DEFAULT_MIN_INTERVAL: f64 = 10.0;
/// Seconds between two kept frames: 0 (every unsure frame the writer can take) to a day.
pub const MIN_INTERVAL: (f64, f64) = (0.0, 86_400.0);

/// The index's name in the folder: hidden, so `pinsight train` does not take it for a class.
const INDEX: &str = ".pinsight-kept";
/// The largest index read: a full index of [`MAX_FILES`] files is a few megabytes.
const MAX_INDEX_BYTES: u64 = 64 << 20;
/// JPEG quality of a kept frame: good enough to train on.
const JPEG_QUALITY: u8 = 90;

/// What `[keep]` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeepSettings {
    /// Where the frames go (relative paths in the config file are to its folder).
    pub folder: PathBuf,
    /// The most files kept at once.
    pub max_files: u64,
    /// The most bytes kept at once.
    pub max_bytes: u64,
    /// The least time between two kept frames.
    #[serde(serialize_with = "seconds")]
    pub min_interval: Duration,
}

/// `[keep]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    folder: PathBuf,
    max_files: Option<f64>,
    max_megabytes: Option<f64>,
    min_interval: Option<f64>,
}

impl KeepSettings {
    /// Reads `[keep]` from the config file in `config_folder`; errors name the key.
    pub fn from_toml(
        value: toml::Value,
        config_folder: &Path,
    ) -> std::result::Result<Self, String> {
        let raw: RawKeep = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("[keep]: {}", e.message()))?;
        let key = |key: &str, reason: String| format!("[keep] {key}: {reason}");
        let number = |name: &str, value: Option<f64>, default: f64, range: (f64, f64)| {
            crate::config::within(value.unwrap_or(default), range).map_err(|r| key(name, r))
        };
        if raw.folder.as_os_str().is_empty() {
            return Err(key("folder", "must name a folder".into()));
        }
        let max_files = number(
            "max_files",
            raw.max_files,
            DEFAULT_MAX_FILES as f64,
            MAX_FILES,
        )?;
        if max_files.fract() != 0.0 {
            return Err(key(
                "max_files",
                format!("{max_files} is not a whole number"),
            ));
        }
        let megabytes = number(
            "max_megabytes",
            raw.max_megabytes,
            DEFAULT_MAX_MEGABYTES,
            MAX_MEGABYTES,
        )?;
        let interval = number(
            "min_interval",
            raw.min_interval,
            DEFAULT_MIN_INTERVAL,
            MIN_INTERVAL,
        )?;
        Ok(KeepSettings {
            folder: config_folder.join(raw.folder),
            max_files: max_files as u64,
            max_bytes: (megabytes * 1e6) as u64,
            min_interval: Duration::from_secs_f64(interval),
        })
    }
}

fn seconds<S: serde::Serializer>(value: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(value.as_secs_f64())
}

/// What the keeper has done, as counters the run's end and `/metrics` report.
#[derive(Debug, Default)]
pub struct KeepCounts {
    /// Frames written.
    pub kept: AtomicU64,
    /// Kept frames removed to stay within the budget.
    pub removed: AtomicU64,
    /// Unsure frames not kept because the writer was still busy with the one before.
    pub dropped: AtomicU64,
    /// Frames that could not be written.
    pub failed: AtomicU64,
    /// Kept files in the folder now, and their bytes.
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

/// A copy of [`KeepCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepTotals {
    pub kept: u64,
    pub removed: u64,
    pub dropped: u64,
    pub failed: u64,
    pub files: u64,
    pub bytes: u64,
}

impl KeepCounts {
    pub fn totals(&self) -> KeepTotals {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        KeepTotals {
            kept: load(&self.kept),
            removed: load(&self.removed),
            dropped: load(&self.dropped),
            failed: load(&self.failed),
            files: load(&self.files),
            bytes: load(&self.bytes),
        }
    }
}

/// A frame handed to the writer.
struct Job {
    guess: String,
    frame: u64,
    image: RgbImage,
}

/// Keeps unsure frames on a thread of its own; the run loop calls [`Keeper::offer`].
pub struct Keeper {
    folder: PathBuf,
    min_interval: Duration,
    counts: Arc<KeepCounts>,
    /// When the last frame was handed over.
    last: Mutex<Option<Instant>>,
    /// The writer's queue (one frame) and thread, until [`Keeper::finish`].
    sender: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// Opens (or makes) the folder, takes it for this run (a second pinsight keeping into the
    /// same folder is refused), reads its index and brings it within the budget, and starts the
    /// writer.
    pub fn start(settings: &KeepSettings) -> Result<Keeper> {
        let counts = Arc::new(KeepCounts::default());
        let mut index = Index::open(settings, counts.clone()).map_err(|e| Error::Write {
            path: settings.folder.clone(),
            reason: format!("{e} (the folder for [keep])"),
        })?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(1);
        let thread = std::thread::Builder::new()
            .name("keep".into())
            .spawn(move || {
                for job in receiver {
                    index.keep(&job);
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the keep thread: {e}")))?;
        Ok(Keeper {
            folder: settings.folder.clone(),
            min_interval: settings.min_interval,
            counts,
            last: Mutex::new(None),
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    pub fn counts(&self) -> Arc<KeepCounts> {
        self.counts.clone()
    }

    /// A result below the threshold whose best guess was `guess`, from frame number `frame`
    /// whose image is `image`: handed to the writer unless one was less than `min_interval`
    /// ago, or dropped (counted) if the writer is still busy. Never waits.
    pub fn offer(&self, guess: &str, frame: u64, image: &RgbImage) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.min_interval) {
            return;
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = &*sender else {
            return;
        };
        let job = Job {
            guess: guess.into(),
            frame,
            image: image.clone(),
        };
        match sender.try_send(job) {
            Ok(()) => *last = Some(now),
            Err(TrySendError::Full(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes the frame still queued, stops the writer, and returns what it did.
    pub fn finish(&self) -> KeepTotals {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
            && thread.join().is_err()
        {
            log::warn!("keep: the writer thread failed");
        }
        self.counts.totals()
    }
}

/// The kept folder as pinsight wrote it: the files it may remove, oldest first, and the
/// folders it made, with the index file they are recorded in.
struct Index {
    folder: PathBuf,
    max_files: u64,
    max_bytes: u64,
    counts: Arc<KeepCounts>,
    /// Kept files, oldest first: the path under the folder and the file as written.
    files: VecDeque<(String, Written)>,
    bytes: u64,
    /// Class folders pinsight made (and may remove once empty).
    dirs: BTreeSet<String>,
    /// Kept files in each class folder.
    per_class: HashMap<String, usize>,
    /// The index, open for appending, and the lines in it.
    log: File,
    lines: usize,
    /// Held for the run: no other pinsight keeps into this folder meanwhile.
    _lock: File,
}

/// One line of the index: a kept file as written, a folder made, or either removed.
#[derive(Debug, PartialEq)]
enum Entry {
    File(String, Written),
    Dir(String),
    Gone(String),
}

/// What identifies a file as the one pinsight wrote: its size, inode and modification time
/// (a file copied over it, or put in its place, differs in one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    bytes: u64,
    inode: u64,
    modified_ns: i128,
}

impl Written {
    /// `path` as it is now, if it is a regular file.
    fn of(path: &Path) -> Option<Written> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.is_file().then(|| Written {
            bytes: meta.len(),
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

impl Entry {
    fn line(&self) -> String {
        match self {
            Entry::File(path, w) => {
                format!("f\t{}\t{}\t{}\t{path}\n", w.bytes, w.inode, w.modified_ns)
            }
            Entry::Dir(name) => format!("d\t{name}\n"),
            Entry::Gone(path) => format!("-\t{path}\n"),
        }
    }

    /// The entry a line records; None for a line that is not one (a torn last line, or an
    /// edited file): what it names is then not pinsight's to remove.
    fn parse(line: &str) -> Option<Entry> {
        let fields: Vec<&str> = line.split('\t').collect();
        let entry = match fields[..] {
            ["f", bytes, inode, modified_ns, path] => Entry::File(
                path.into(),
                Written {
                    bytes: bytes.parse().ok()?,
                    inode: inode.parse().ok()?,
                    modified_ns: modified_ns.parse().ok()?,
                },
            ),
            ["d", name] => Entry::Dir(name.into()),
            ["-", path] => Entry::Gone(path.into()),
            _ => return None,
        };
        let path = match &entry {
            Entry::File(path, _) | Entry::Dir(path) | Entry::Gone(path) => path,
        };
        let parts: Vec<&str> = path.split('/').collect();
        let plain =
            |part: &&str| !part.is_empty() && !part.starts_with('.') && !part.contains('\0');
        let depth_fits = match entry {
            Entry::File(..) => parts.len() == 2,
            Entry::Dir(_) => parts.len() == 1,
            Entry::Gone(_) => parts.len() <= 2,
        };
        (depth_fits && parts.iter().all(plain)).then_some(entry)
    }
}

impl Index {
    /// Makes the folder if need be, locks it, reads the index (forgetting the files that are
    /// no longer as pinsight wrote them), writes it back compacted and brings the folder within
    /// the budget.
    fn open(settings: &KeepSettings, counts: Arc<KeepCounts>) -> std::io::Result<Index> {
        let folder = settings.folder.clone();
        durable::create_dir_all(&folder)?;
        let lock = durable::lock_dir(&folder)?;
        let path = folder.join(INDEX);
        let text = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
            Ok(meta) if !meta.is_file() => {
                return Err(std::io::Error::other(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            Ok(meta) if meta.len() > MAX_INDEX_BYTES => {
                return Err(std::io::Error::other(format!(
                    "{} is larger than {MAX_INDEX_BYTES} bytes: not pinsight's index",
                    path.display()
                )));
            }
            Ok(_) => String::from_utf8_lossy(&std::fs::read(&path)?).into_owned(),
        };
        // Replayed in order; a removed file leaves a hole, so that each line costs the same.
        let mut slots: Vec<Option<(String, Written)>> = Vec::new();
        let mut slot_of = HashMap::new();
        let mut dirs = BTreeSet::new();
        for entry in text.lines().filter_map(Entry::parse) {
            match entry {
                Entry::File(path, written) => {
                    if let Some(old) = slot_of.insert(path.clone(), slots.len()) {
                        slots[old] = None;
                    }
                    slots.push(Some((path, written)));
                }
                Entry::Dir(name) => {
                    dirs.insert(name);
                }
                Entry::Gone(path) => {
                    if let Some(old) = slot_of.remove(&path) {
                        slots[old] = None;
                    }
                    dirs.remove(&path);
                }
            }
        }
        let files: VecDeque<(String, Written)> = slots
            .into_iter()
            .flatten()
            .filter(|(name, written)| Written::of(&folder.join(name)) == Some(*written))
            .collect();
        dirs.retain(|name| folder.join(name).is_dir());
        let mut per_class = HashMap::new();
        for (name, _) in &files {
            *per_class.entry(class_of(name).to_owned()).or_insert(0) += 1;
        }
        let (log, lines) = write_index(&folder, &dirs, &files)?;
        let mut index = Index {
            max_files: settings.max_files,
            max_bytes: settings.max_bytes,
            bytes: files.iter().map(|(_, written)| written.bytes).sum(),
            files,
            dirs,
            per_class,
            log,
            lines,
            counts,
            folder,
            _lock: lock,
        };
        index.trim()?;
        index.publish();
        Ok(index)
    }

    /// Writes `job`'s frame, then removes the oldest frames while over the budget; a failure
    /// is logged and counted.
    fn keep(&mut self, job: &Job) {
        let dir = class_folder(&job.guess);
        let name = photo_name(job.frame);
        match self.add(&dir, &name, &job.image) {
            Ok(path) => {
                log::debug!("keep: {}", path.display());
                self.counts.kept.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let path = self.folder.join(&dir).join(format!("{name}.jpg"));
                log::warn!("keep: cannot write {}: {e}", path.display());
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Err(e) = self.trim() {
            log::warn!(
                "keep: cannot remove older frames from {}: {e}",
                self.folder.display()
            );
        }
        self.publish();
    }

    /// Writes `image` as `<dir>/<name>.jpg` (or `<name>-1.jpg`, ... when taken) and records it.
    fn add(&mut self, dir: &str, name: &str, image: &RgbImage) -> std::io::Result<PathBuf> {
        let class_dir = self.folder.join(dir);
        if !class_dir.is_dir() {
            std::fs::create_dir(&class_dir)?;
            durable::sync_dir(&self.folder)?;
            self.record(&Entry::Dir(dir.into()))?;
            self.dirs.insert(dir.into());
        }
        let path = save_photo(&class_dir, name, image)?;
        let written = Written::of(&path).ok_or_else(|| {
            std::io::Error::other("the file was gone or replaced the moment it was written")
        })?;
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let relative = format!("{dir}/{file_name}");
        self.record(&Entry::File(relative.clone(), written))?;
        *self.per_class.entry(dir.to_owned()).or_insert(0) += 1;
        self.files.push_back((relative, written));
        self.bytes += written.bytes;
        Ok(path)
    }

    /// Removes the oldest kept files while there are more than the budget allows.
    fn trim(&mut self) -> std::io::Result<()> {
        while self.files.len() as u64 > self.max_files || self.bytes > self.max_bytes {
            let Some((name, written)) = self.files.pop_front() else {
                break;
            };
            self.bytes -= written.bytes;
            let path = self.folder.join(&name);
            let dir = durable::parent_of(&path).to_owned();
            // A file no longer as pinsight wrote it is the user's now: forgotten, not removed.
            if Written::of(&path) == Some(written) {
                std::fs::remove_file(&path)?;
                durable::sync_dir(&dir)?;
                self.counts.removed.fetch_add(1, Ordering::Relaxed);
            }
            self.record(&Entry::Gone(name.clone()))?;
            let class = class_of(&name).to_owned();
            let left = self.per_class.get_mut(&class).map_or(0, |n| {
                *n -= 1;
                *n
            });
            if left == 0 {
                self.per_class.remove(&class);
            }
            // Fails, and stays, when the user has put something in it.
            if self.dirs.contains(&class) && left == 0 && std::fs::remove_dir(&dir).is_ok() {
                durable::sync_dir(&self.folder)?;
                self.dirs.remove(&class);
                self.record(&Entry::Gone(class))?;
            }
        }
        // The index only grows between starts: rewritten when it is mostly removals.
        if self.lines > 2 * (self.files.len() + self.dirs.len()) + 64 {
            (self.log, self.lines) = write_index(&self.folder, &self.dirs, &self.files)?;
        }
        Ok(())
    }

    /// Appends `entry` to the index, on disk before this returns.
    fn record(&mut self, entry: &Entry) -> std::io::Result<()> {
        self.log.write_all(entry.line().as_bytes())?;
        self.log.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    fn publish(&self) {
        self.counts
            .files
            .store(self.files.len() as u64, Ordering::Relaxed);
        self.counts.bytes.store(self.bytes, Ordering::Relaxed);
    }
}

/// The name (without `.jpg`) of a photo of frame number `frame` taken now:
/// `<UTC time>-f<frame>`, which sorts by time.
pub fn photo_name(frame: u64) -> String {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{stamp}-f{frame}")
}

/// Saves `image` as a JPEG good enough to train on, `<dir>/<name>.jpg`, or `<name>-1.jpg`,
/// `<name>-2.jpg`, ... when the name is taken: never over a file. Written to a temporary file,
/// synced and renamed ([`durable::write_new`]). Returns its path.
pub fn save_photo(dir: &Path, name: &str, image: &RgbImage) -> std::io::Result<PathBuf> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(image)
        .map_err(std::io::Error::other)?;
    let names = std::iter::once(format!("{name}.jpg"))
        .chain((1..1000).map(|n| format!("{name}-{n}.jpg")))
        .map(|file| dir.join(file));
    durable::write_new(dir, names, &jpeg)
}

/// The class folder of a kept file's path under the folder (`cat` of `cat/….jpg`).
fn class_of(name: &str) -> &str {
    name.split('/').next().unwrap_or_default()
}

/// Writes the index of `folder` afresh with `dirs` and `files` (oldest first) and opens it for
/// appending; returns it with the number of lines in it.
fn write_index(
    folder: &Path,
    dirs: &BTreeSet<String>,
    files: &VecDeque<(String, Written)>,
) -> std::io::Result<(File, usize)> {
    let entries: Vec<Entry> = dirs
        .iter()
        .map(|dir| Entry::Dir(dir.clone()))
        .chain(files.iter().map(|(name, w)| Entry::File(name.clone(), *w)))
        .collect();
    let text: String = entries.iter().map(Entry::line).collect();
    let path = folder.join(INDEX);
    durable::write(&path, text.as_bytes()).map_err(|e| std::io::Error::other(e.to_string()))?;
    let log = std::fs::OpenOptions::new().append(true).open(&path)?;
    Ok((log, entries.len()))
}

/// The folder a best guess's frames go in: the label, with what a folder name or
/// `pinsight train` cannot take replaced (`/` and control characters by `_`, a leading `.`,
/// and the split names `train`, `validation` and `test` prefixed with `_`).
fn class_folder(label: &str) -> String {
    let name: String = label
        .trim()
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if name.is_empty() || name.starts_with('.') || ["train", "validation", "test"].contains(&&*name)
    {
        format!("_{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(folder: &Path, max_files: u64, max_bytes: u64) -> KeepSettings {
        KeepSettings {
            folder: folder.into(),
            max_files,
            max_bytes,
            min_interval: Duration::ZERO,
        }
    }

    fn open(settings: &KeepSettings) -> Index {
        Index::open(settings, Arc::default()).unwrap()
    }

    fn job(guess: &str, frame: u64) -> Job {
        // Noise, so that every frame's JPEG has about the same size.
        let mut state = frame.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let image = RgbImage::from_fn(32, 24, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        });
        Job {
            guess: guess.into(),
            frame,
            image,
        }
    }

    /// The files under `dir`, relative, sorted; hidden names left out.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for entry in walk(dir) {
            let relative = entry
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !relative.split('/').any(|part| part.starts_with('.')) {
                names.push(relative);
            }
        }
        names.sort();
        names
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn the_oldest_kept_frames_go_first_when_over_the_file_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = open(&settings(dir.path(), 3, u64::MAX));
        for frame in 0..5 {
            index.keep(&job("cat", frame));
        }
        let kept = listing(dir.path());
        assert_eq!(kept.len(), 3, "{kept:?}");
        for (name, frame) in kept.iter().zip(2..) {
            assert!(
                name.starts_with("cat/") && name.ends_with(&format!("-f{frame}.jpg")),
                "{kept:?}"
            );
        }
        let totals = index.counts.totals();
        assert_eq!((totals.kept, totals.removed, totals.files), (5, 2, 3));
        // Every kept frame decodes.
        for name in kept {
            image::open(dir.path().join(name)).unwrap();
        }
    }

    #[test]
    fn the_byte_budget_holds_and_an_emptied_class_folder_made_here_goes() {
        let dir = tempfile::tempdir().unwrap();
        let one = {
            let probe = tempfile::tempdir().unwrap();
            let mut index = open(&settings(probe.path(), 10, u64::MAX));
            index.keep(&job("x", 0));
            index.bytes
        };
        // Room for two frames and a half.
        let mut index = open(&settings(dir.path(), 100, one * 5 / 2));
        index.keep(&job("dog", 1));
        for frame in 2..6 {
            index.keep(&job("cat", frame));
        }
        assert!(index.bytes <= one * 5 / 2);
        let kept = listing(dir.path());
        assert!(kept.iter().all(|name| name.starts_with("cat/")), "{kept:?}");
        assert!(
            !dir.path().join("dog").exists(),
            "the emptied folder pinsight made is gone"
        );
    }

    #[test]
    fn only_files_pinsight_wrote_are_ever_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path();
        // The user's: a class folder with a photo, a file at the top, one beside the folder.
        std::fs::create_dir(folder.join("cat")).unwrap();
        std::fs::write(folder.join("cat/mine.jpg"), b"the user's photo").unwrap();
        std::fs::write(folder.join("notes.txt"), b"the user's notes").unwrap();
        std::fs::write(dir.path().join("cat/secret"), b"x").unwrap();
        {
            let mut index = open(&settings(folder, 2, u64::MAX));
            for frame in 0..3 {
                index.keep(&job("cat", frame));
            }
        }
        // The user replaces the oldest kept frame with a photo of their own (another size),
        // and an edited index names their files.
        let kept = listing(folder);
        let replaced = kept
            .iter()
            .find(|n| n.ends_with("-f1.jpg"))
            .unwrap()
            .clone();
        std::fs::write(folder.join(&replaced), b"sorted by the user").unwrap();
        let mut text = std::fs::read_to_string(folder.join(INDEX)).unwrap();
        for hostile in [
            "f\t16\t1\t1\tcat/mine.jpg\n",
            "f\t16\t1\t1\t../notes.txt\n",
            "f\t1\t1\t1\tcat/secret\n",
            "f\t16\t1\t1\t/etc/passwd\n",
            "d\tcat\n",
        ] {
            text.push_str(hostile);
        }
        std::fs::write(folder.join(INDEX), text).unwrap();
        {
            let mut index = open(&settings(folder, 1, u64::MAX));
            for frame in 3..6 {
                index.keep(&job("cat", frame));
            }
        }
        assert_eq!(
            std::fs::read(folder.join("cat/mine.jpg")).unwrap(),
            b"the user's photo"
        );
        assert_eq!(
            std::fs::read(folder.join("notes.txt")).unwrap(),
            b"the user's notes"
        );
        assert_eq!(
            std::fs::read(folder.join(&replaced)).unwrap(),
            b"sorted by the user"
        );
        assert!(folder.join("cat/secret").exists());
        let kept: Vec<String> = listing(folder)
            .into_iter()
            .filter(|n| n.contains("-f"))
            .collect();
        assert_eq!(
            kept.len(),
            2,
            "the user's replacement and the newest: {kept:?}"
        );
        assert!(kept.iter().any(|n| n.ends_with("-f5.jpg")));
    }

    #[test]
    fn a_taken_name_gets_a_number_and_a_second_keeper_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = open(&settings(dir.path(), 10, u64::MAX));
        let image = job("cat", 7).image;
        for _ in 0..3 {
            index.add("cat", "20261202T120000Z-f7", &image).unwrap();
        }
        assert_eq!(
            listing(dir.path()),
            [
                "cat/20261202T120000Z-f7-1.jpg",
                "cat/20261202T120000Z-f7-2.jpg",
                "cat/20261202T120000Z-f7.jpg"
            ]
        );
        let again = Index::open(&settings(dir.path(), 10, u64::MAX), Arc::default());
        assert!(again.is_err(), "the folder is this run's");
    }

    #[test]
    fn a_restart_keeps_counting_the_frames_kept_before() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut index = open(&settings(dir.path(), 100, u64::MAX));
            for frame in 0..4 {
                index.keep(&job("cat", frame));
            }
        }
        // A smaller budget on the next start removes the oldest at once.
        let index = open(&settings(dir.path(), 2, u64::MAX));
        assert_eq!(index.counts.totals().removed, 2);
        let kept = listing(dir.path());
        assert!(
            kept[0].ends_with("-f2.jpg") && kept[1].ends_with("-f3.jpg"),
            "{kept:?}"
        );
    }

    #[test]
    fn the_keeper_writes_on_its_thread_no_more_often_than_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path(), 10, u64::MAX);
        settings.min_interval = Duration::from_secs(3600);
        let keeper = Keeper::start(&settings).unwrap();
        for frame in 0..5 {
            keeper.offer("cat", frame, &job("cat", frame).image);
        }
        let totals = keeper.finish();
        assert_eq!((totals.kept, totals.dropped, totals.failed), (1, 0, 0));
        assert_eq!(listing(dir.path()).len(), 1);
    }

    #[test]
    fn labels_become_folder_names_train_takes() {
        assert_eq!(class_folder("golden retriever"), "golden retriever");
        assert_eq!(class_folder("AC/DC"), "AC_DC");
        assert_eq!(class_folder(".hidden"), "_.hidden");
        assert_eq!(class_folder("train"), "_train");
        assert_eq!(class_folder(""), "_");
        assert_eq!(class_folder("a\nb"), "a_b");
    }

    #[test]
    fn settings_are_checked_with_the_key_named() {
        let parse = |text: &str| {
            KeepSettings::from_toml(toml::from_str(text).unwrap(), Path::new("/etc/pinsight"))
        };
        let settings = parse("folder = \"unsure\"").unwrap();
        assert_eq!(settings.folder, Path::new("/etc/pinsight/unsure"));
        assert_eq!(settings.max_files, DEFAULT_MAX_FILES);
        assert_eq!(settings.max_bytes, 200_000_000);
        assert_eq!(settings.min_interval, Duration::from_secs(10));
        for (text, message) in [
            ("", "[keep]: missing field `folder`"),
            ("folder = \"\"", "[keep] folder: must name a folder"),
            (
                "folder = \"u\"\nmax_files = 0",
                "[keep] max_files: 0 is out of range",
            ),
            (
                "folder = \"u\"\nmax_files = 2.5",
                "[keep] max_files: 2.5 is not a whole",
            ),
            (
                "folder = \"u\"\nmax_megabytes = -1",
                "[keep] max_megabytes: -1 is out",
            ),
            (
                "folder = \"u\"\nmin_interval = 1e9",
                "[keep] min_interval: 1000000000 is out",
            ),
            ("folder = \"u\"\nsize = 3", "[keep]: unknown field `size`"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.starts_with(message), "{text:?}: {error}");
        }
    }
}
