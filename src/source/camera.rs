//! A V4L2 camera (USB/UVC or CSI through a V4L2 driver), streaming through memory-mapped buffers.
//!
//! A capture thread owns the device: it dequeues every frame as the camera delivers it and keeps
//! only the newest, so the run loop always classifies the latest scene however slow the model
//! is; frames it replaces are counted as dropped. When the stream fails (the camera was
//! unplugged, the driver went away, no frame for [`STALL`]), the thread closes the device and
//! reopens it with a growing pause between attempts (up to [`MAX_BACKOFF`]): the loop waits
//! and resumes when the camera is back.
//!
//! # Permissions
//! `/dev/video*` belongs to the `video` group: run pinsight as a member of it
//! (`sudo usermod -aG video $USER`, then log in again) rather than as root.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::{FrameSource, Next};
use crate::frame::{Frame, PixelFormat};
use crate::{Error, Result};

/// No frame for this long means the stream is stuck: reopen the device.
const STALL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long `next_frame` waits before it returns `Next::Waiting`.
const WAIT: Duration = Duration::from_millis(250);
const BUFFERS: u32 = 4;

/// Formats in the order pinsight prefers them when the camera offers several: the cheapest to
/// convert first (YUYV at 640×480 converts in well under a millisecond; an MJPEG frame must be
/// decoded).
const PREFERRED: [PixelFormat; 6] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Mjpeg,
    PixelFormat::Grey,
];

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub device: PathBuf,
    /// The size to ask for; the driver picks the nearest it supports.
    pub width: u32,
    pub height: u32,
    /// A format to insist on, or `None` for the cheapest to convert that the camera offers.
    pub format: Option<PixelFormat>,
}

/// The negotiated stream, as the driver set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

pub struct Camera {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    format: StreamFormat,
    /// Frames dropped before the one last taken (see [`FrameSource::dropped`]).
    dropped: u64,
    /// When streaming started.
    opened: Instant,
}

#[derive(Default)]
struct Shared {
    latest: Mutex<Latest>,
    fresh: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct Latest {
    frame: Option<Frame>,
    captured: u64,
    dropped: u64,
    /// When the newest frame came, taken or not.
    last_capture: Option<Instant>,
}

impl Camera {
    /// Opens the camera and starts streaming. Fails with a message naming the device and the
    /// fix when it is missing, busy, not a camera, or not ours to open.
    pub fn open(config: CameraConfig) -> Result<Camera> {
        let (device, stream, format) = open_stream(&config)?;
        log::info!(
            "{}: streaming {} {}x{}",
            config.device.display(),
            format.format.fourcc(),
            format.width,
            format.height
        );
        let shared = Arc::new(Shared::default());
        let path = config.device.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn({
                let shared = shared.clone();
                move || capture(config, device, stream, format, &shared)
            })
            .map_err(|e| Error::Camera {
                device: path,
                reason: format!("cannot start the capture thread: {e}"),
            })?;
        Ok(Camera {
            shared,
            thread: Some(thread),
            format,
            dropped: 0,
            opened: Instant::now(),
        })
    }

    pub fn format(&self) -> StreamFormat {
        self.format
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Result<Next> {
        let latest = self.shared.latest.lock().unwrap();
        let (mut latest, _) = self
            .shared
            .fresh
            .wait_timeout_while(latest, WAIT, |latest| latest.frame.is_none())
            .unwrap();
        let frame = latest.frame.take();
        if frame.is_some() {
            // Read under the same lock as the frame was taken: the capture thread goes on
            // replacing newer frames while this one is classified, and those are not yet part
            // of this frame's account.
            self.dropped = latest.dropped;
        }
        Ok(frame.map_or(Next::Waiting, Next::Frame))
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    fn last_capture(&self) -> Option<Instant> {
        // Before the first frame, "never": a camera that never delivers is stuck too.
        Some(
            self.shared
                .latest
                .lock()
                .unwrap()
                .last_capture
                .unwrap_or(self.opened),
        )
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The capture thread: publish frames, reconnect on failure, until asked to stop.
fn capture(
    config: CameraConfig,
    device: Device,
    stream: Stream<'static>,
    format: StreamFormat,
    shared: &Shared,
) {
    let mut current = Some((device, stream, format));
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some((_, stream, format)) = current.as_mut() else {
            sleep_unless_stopped(backoff, shared);
            match open_stream(&config) {
                Ok(opened) => {
                    log::warn!(
                        "{}: camera is back, streaming again",
                        config.device.display()
                    );
                    current = Some(opened);
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    log::debug!("{e}; retrying in {backoff:?}");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        match stream.next() {
            Ok((buffer, meta)) => publish(
                &config.device,
                *format,
                buffer,
                meta.bytesused as usize,
                shared,
            ),
            Err(e) => {
                log::warn!(
                    "{}: camera stopped streaming ({e}); reconnecting (is it unplugged?)",
                    config.device.display()
                );
                close(current.take());
            }
        }
    }
    close(current.take());
}

fn publish(device: &Path, format: StreamFormat, buffer: &[u8], used: usize, shared: &Shared) {
    // Some drivers leave bytesused at 0 for raw formats: the whole buffer is the frame then.
    let data = if used == 0 || used > buffer.len() {
        buffer
    } else {
        &buffer[..used]
    };
    let mut latest = shared.latest.lock().unwrap();
    let sequence = latest.captured;
    latest.captured += 1;
    // Reuse the buffer of a frame nobody took: it is dropped in favour of this one.
    let mut bytes = match latest.frame.take() {
        Some(replaced) => {
            latest.dropped += 1;
            replaced.data
        }
        None => Vec::with_capacity(data.len()),
    };
    bytes.clear();
    bytes.extend_from_slice(data);
    let now = Instant::now();
    latest.last_capture = Some(now);
    latest.frame = Some(Frame {
        sequence,
        captured_at: now,
        format: format.format,
        width: format.width,
        height: format.height,
        stride: format.stride,
        data: bytes,
        origin: device.display().to_string(),
    });
    drop(latest);
    shared.fresh.notify_one();
}

/// Stops the stream and closes the device. v4l's stream panics in `drop` when STREAMOFF fails
/// with anything but ENODEV, which a driver that is going away can return: contain it.
fn close(current: Option<(Device, Stream<'static>, StreamFormat)>) {
    if let Some((device, stream, _)) = current {
        if catch_unwind(AssertUnwindSafe(move || drop(stream))).is_err() {
            log::debug!("stopping the stream failed; the device is closed anyway");
        }
        drop(device);
    }
}

fn sleep_unless_stopped(duration: Duration, shared: &Shared) {
    let until = Instant::now() + duration;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(WAIT));
    }
}

/// Opens the device, checks that it captures video, negotiates a format and starts a stream.
fn open_stream(config: &CameraConfig) -> Result<(Device, Stream<'static>, StreamFormat)> {
    let path = &config.device;
    let fail = |e: io::Error| camera_error(path, e);
    check_video_node(path).map_err(fail)?;
    let device = Device::with_path(path).map_err(fail)?;
    let caps = device.query_caps().map_err(fail)?;
    if !caps
        .capabilities
        .contains(Flags::VIDEO_CAPTURE | Flags::STREAMING)
    {
        return Err(Error::Camera {
            device: path.clone(),
            reason: format!(
                "{} ({}) is not a video capture device with streaming; a camera often has \
                 several /dev/video nodes, try another one (`v4l2-ctl --list-devices`)",
                caps.card, caps.driver
            ),
        });
    }
    let offered: Vec<FourCC> = device
        .enum_formats()
        .map_err(fail)?
        .into_iter()
        .map(|d| d.fourcc)
        .collect();
    let usable = |format: PixelFormat| {
        offered
            .iter()
            .any(|f| PixelFormat::from_fourcc(&f.repr) == Some(format))
    };
    let chosen = match config.format {
        Some(format) if usable(format) => format,
        Some(format) => return Err(no_format(path, &offered, Some(format))),
        None => *PREFERRED
            .iter()
            .find(|f| usable(**f))
            .ok_or_else(|| no_format(path, &offered, None))?,
    };
    let fourcc = offered
        .iter()
        .find(|f| PixelFormat::from_fourcc(&f.repr) == Some(chosen))
        .unwrap();
    let set = device
        .set_format(&Format::new(config.width, config.height, *fourcc))
        .map_err(fail)?;
    if PixelFormat::from_fourcc(&set.fourcc.repr) != Some(chosen) {
        return Err(Error::Camera {
            device: path.clone(),
            reason: format!(
                "the driver refused format {} (it set {})",
                chosen.fourcc(),
                set.fourcc
            ),
        });
    }
    let format = StreamFormat {
        format: chosen,
        width: set.width,
        height: set.height,
        stride: set.stride as usize,
    };
    let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS).map_err(fail)?;
    stream.set_timeout(STALL);
    Ok((device, stream, format))
}

/// V4L2 devices are character devices with major number 81. Checking that first names a wrong
/// path (a serial port, /dev/null) plainly, whatever its driver answers to V4L2's ioctls.
fn check_video_node(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const VIDEO_MAJOR: u32 = 81;
    let metadata = std::fs::metadata(path)?;
    if metadata.file_type().is_char_device() && libc::major(metadata.rdev()) == VIDEO_MAJOR {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOTTY))
    }
}

fn no_format(path: &Path, offered: &[FourCC], wanted: Option<PixelFormat>) -> Error {
    let offered: Vec<String> = offered.iter().map(FourCC::to_string).collect();
    let supported: Vec<&str> = PREFERRED.iter().map(|f| f.fourcc()).collect();
    let reason = match wanted {
        Some(format) => format!(
            "it does not offer {} (it offers {})",
            format.fourcc(),
            offered.join(", ")
        ),
        None => format!(
            "it offers {}, none of which pinsight reads ({})",
            offered.join(", "),
            supported.join(", ")
        ),
    };
    Error::Camera {
        device: path.into(),
        reason,
    }
}

fn camera_error(path: &Path, error: io::Error) -> Error {
    let device = path.to_path_buf();
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::NotFound, _) | (_, Some(libc::ENODEV | libc::ENXIO)) => {
            Error::CameraMissing { device }
        }
        (io::ErrorKind::PermissionDenied, _) => Error::CameraPermission { device },
        (_, Some(libc::EBUSY)) => Error::CameraBusy { device },
        (_, Some(libc::ENOTTY | libc::EINVAL)) => Error::Camera {
            device,
            reason: "is not a V4L2 video device: cameras are /dev/videoN nodes \
                     (`v4l2-ctl --list-devices`)"
                .into(),
        },
        _ => Error::Camera {
            device,
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_taken(camera: &mut Camera) -> Frame {
        match camera.next_frame().unwrap() {
            Next::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The count the run loop reports with a frame covers the frames before it, so that the
    /// frames taken and the frames dropped add up to its sequence number + 1 on every result
    /// line, however many frames the camera delivered while it was being classified.
    #[test]
    fn dropped_counts_the_frames_older_than_the_one_taken() {
        let format = StreamFormat {
            format: PixelFormat::Yuyv,
            width: 2,
            height: 1,
            stride: 4,
        };
        let shared = Arc::new(Shared::default());
        let mut camera = Camera {
            shared: shared.clone(),
            thread: None,
            format,
            dropped: 0,
            opened: Instant::now(),
        };
        let deliver = |frames: usize| {
            for _ in 0..frames {
                publish(Path::new("/dev/video9"), format, &[0; 4], 4, &shared);
            }
        };

        deliver(3);
        let first = frame_taken(&mut camera);
        assert_eq!(
            (first.sequence, camera.dropped()),
            (2, 2),
            "frames 0 and 1 replaced"
        );

        // Frames 3 to 7 come while frame 2 is classified: 3 to 6 are replaced by the next.
        deliver(5);
        assert_eq!(
            camera.dropped(),
            2,
            "frame 2's account is unchanged until the next take"
        );
        let second = frame_taken(&mut camera);
        assert_eq!((second.sequence, camera.dropped()), (7, 6));
        assert_eq!(
            2 + camera.dropped(),
            second.sequence + 1,
            "two taken, six dropped"
        );
    }
}
