//! `pinsight capture`: frames from any source `pinsight run` reads (a camera, a folder, a glob,
//! a file), saved as photos of one class into `PHOTOS/<class>/`, the layout `pinsight train`
//! reads. Each photo is written to a temporary file, synced and renamed to a name no other
//! photo has (`<UTC time>-f<frame>.jpg`, numbered when taken): a second session adds to the
//! first, and nothing in the folder is ever replaced ([`crate::keep::save_photo`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::Converter;
use crate::keep::{photo_name, save_photo};
use crate::run::{CameraSettings, open_source};
use crate::source::Next;
use crate::{Error, Result, STOP_CHECK, durable};

/// Seconds between two photos: 0 (as fast as frames come) to an hour.
pub const EVERY: (f64, f64) = (0.0, 3600.0);
/// Photos one session saves: 1 to 100 000.
pub const COUNT: (u64, u64) = (1, 100_000);
/// How long a camera streams before its first photo: its automatic exposure and white balance
/// settle in the first frames.
pub const CAMERA_SETTLE: Duration = Duration::from_secs(1);

/// Everything `pinsight capture` is told.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The photos folder; the photos go in its `<class>/` folder.
    pub photos: PathBuf,
    pub class: String,
    /// Photos to save.
    pub count: u64,
    /// The least time between two photos.
    pub every: Duration,
    /// A camera (`/dev/…`), a folder, a glob pattern or a file.
    pub source: String,
    pub camera: CameraSettings,
}

/// What a session did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    pub saved: u64,
    /// Frames that could not be had or converted.
    pub skipped: u64,
}

/// Saves `options.count` photos (fewer if the source ends first, or SIGINT or SIGTERM comes),
/// naming each to `saved` as it is written; a camera's first photo is taken after
/// [`CAMERA_SETTLE`]. The class name is checked first
/// ([`crate::train::check_new_class_name`]), then the source is opened and the folder made.
/// Corrupt frames are logged and skipped; if any were, the error at the end counts them.
pub fn capture(
    options: &CaptureOptions,
    mut saved: impl FnMut(&Path) -> std::io::Result<()>,
) -> Result<CaptureSummary> {
    crate::train::check_new_class_name(&options.class).map_err(Error::Usage)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Error::Internal(format!("cannot watch for signals: {e}")))?;
    }
    let (mut source, is_camera) = open_source(&options.source, &options.camera)?;
    let dir = options.photos.join(&options.class);
    durable::create_dir_all(&dir).map_err(|e| Error::Write {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let mut converter = Converter::default();
    let mut summary = CaptureSummary::default();
    let mut next = Instant::now()
        + if is_camera {
            CAMERA_SETTLE
        } else {
            Duration::ZERO
        };
    while summary.saved < options.count && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(STOP_CHECK));
            continue;
        }
        let frame = match source.next_frame()? {
            Next::Frame(frame) => frame,
            Next::Waiting => continue,
            Next::Skipped(why) => {
                summary.skipped += 1;
                log::warn!("{why}; skipped");
                continue;
            }
            Next::End => {
                log::warn!(
                    "{} ended after {} of {} photos",
                    options.source,
                    summary.saved,
                    options.count
                );
                break;
            }
        };
        let image = match converter.to_rgb(&frame) {
            Ok(image) => image,
            Err(e) => {
                summary.skipped += 1;
                log::warn!("{e}; skipped");
                continue;
            }
        };
        let name = photo_name(frame.sequence);
        let path = save_photo(&dir, &name, image).map_err(|e| Error::Write {
            path: dir.join(format!("{name}.jpg")),
            reason: e.to_string(),
        })?;
        summary.saved += 1;
        saved(&path).map_err(|e| Error::Output(e.to_string()))?;
        next = Instant::now() + options.every;
    }
    log::info!(
        "saved {} photos of {:?} in {}",
        summary.saved,
        options.class,
        dir.display()
    );
    if summary.skipped > 0 {
        return Err(Error::Unreadable {
            failed: summary.skipped,
            total: (summary.saved + summary.skipped) as usize,
        });
    }
    Ok(summary)
}
