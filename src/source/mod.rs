//! Where frames come from: a V4L2 camera ([`Camera`]) or image files ([`Files`]), behind one
//! small trait so that the run loop, dry runs and tests do not care which.

mod camera;
mod image_files;

pub use camera::{Camera, CameraConfig};
pub use image_files::Files;

use crate::Result;
use crate::frame::Frame;

/// What a source has for the run loop.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// Nothing yet (a camera between frames, or reconnecting); ask again. Sources return this
    /// after a bounded wait, so that the loop can notice a stop request.
    Waiting,
    /// A frame that could not be had (an image file that cannot be read), and why: the loop
    /// counts it as skipped and asks again.
    Skipped(String),
    /// The source has no more frames (the end of a folder).
    End,
}

pub trait FrameSource {
    /// The newest frame. A camera that produces frames faster than they are taken drops the
    /// older ones: a slow model never falls behind the scene.
    fn next_frame(&mut self) -> Result<Next>;

    /// How many frames older than the one last taken were replaced by a newer one before they
    /// could be taken. With the frames taken it makes the last frame's sequence number + 1:
    /// every frame up to it is accounted for (frames dropped since are counted with the next).
    fn dropped(&self) -> u64 {
        0
    }

    /// When a source that captures on its own (a camera's capture thread) last delivered a
    /// frame, taken or not: a loop that waits (for a trigger, or for its next frame at `fps`)
    /// is alive only while its source is. `None` for a source that gives frames only when
    /// asked (files).
    fn last_capture(&self) -> Option<std::time::Instant> {
        None
    }
}
