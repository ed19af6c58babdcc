//! The library's error type: each variant names the file it is about and what to do.
//!
//! Each message is whole on its own: it includes its cause (the operating system's reason, the
//! decoder's) in its own words. No variant therefore reports that cause again as its
//! `std::error::Error::source`: thiserror takes a field named `source` as one, and `pinsight`
//! prints an error with its chain of sources, which would say the cause twice ("No such file or
//! directory (os error 2): No such file or directory (os error 2)"). Name such a field `cause`.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read: the operating system's error, or pinsight refusing it (not a
    /// regular file: `cause` is `InvalidInput`; larger than pinsight reads: `FileTooLarge`).
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },

    #[error(
        "{} has no checksum in {}: pinsight only loads model files listed there \
         (add one with `sha256sum {name} >> SHA256SUMS` in that folder)",
        path.display(), sums.display()
    )]
    NoChecksum {
        path: PathBuf,
        sums: PathBuf,
        name: String,
    },

    #[error(
        "{} is damaged or was changed: its SHA-256 is {actual}, {} expects {expected} \
         (restore the file, e.g. `git checkout -- {}`, or rebuild it with models/export.py)",
        path.display(), sums.display(), path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        sums: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{} is not an ONNX model pinsight can run: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },

    #[error("{} has the wrong {what}: it is {found}, pinsight needs {expected}", path.display())]
    WrongShape {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },

    #[error("head {} is not usable: {reason}", dir.display())]
    BadHead { dir: PathBuf, reason: String },

    #[error(
        "head {} was made for another backbone (it lists {expected}, the backbone {} is {actual}): \
         use the backbone it was trained with, or train the head again with `pinsight train`",
        dir.display(), backbone.display()
    )]
    HeadForOtherBackbone {
        dir: PathBuf,
        backbone: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("cannot decode image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    #[error("inference failed: {0}")]
    Inference(String),

    #[error(
        "no camera at {}: check that it is plugged in and which /dev/video* node it got \
         (`ls /dev/video*`, `v4l2-ctl --list-devices`)",
        device.display()
    )]
    CameraMissing { device: PathBuf },

    #[error(
        "permission denied opening {}: add the user to the `video` group \
         (`sudo usermod -aG video $USER`, then log in again; see board/README.md)",
        device.display()
    )]
    CameraPermission { device: PathBuf },

    #[error(
        "{} is busy: another program is streaming from it (find it with `fuser -v {}`)",
        device.display(), device.display()
    )]
    CameraBusy { device: PathBuf },

    #[error("camera {}: {reason}", device.display())]
    Camera { device: PathBuf, reason: String },

    #[error("training data {}: {reason}", dir.display())]
    Dataset { dir: PathBuf, reason: String },

    #[error("training failed: {0}")]
    Training(String),

    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },

    #[error("cannot write results: {0}")]
    Output(String),

    #[error("{failed} of {total} images could not be read")]
    Unreadable { failed: u64, total: usize },

    #[error("{0}")]
    Usage(String),

    #[error("internal error: {0}")]
    Internal(String),

    #[error("no images to read at {spec}: {reason}")]
    NoImages { spec: String, reason: String },

    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    #[error("GPIO {what}: {reason}")]
    Gpio { what: String, reason: String },

    #[error(
        "permission denied opening {}: add the user to the `gpio` group \
         (`sudo groupadd -f gpio && sudo usermod -aG gpio $USER`, install \
         board/60-pinsight-gpio.rules where the system has no such rule, then log in again; \
         see board/README.md)",
        device.display()
    )]
    GpioPermission { device: PathBuf },

    #[error("will not write a head to {}: {reason}", path.display())]
    OutRefused { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Read { path, cause }
    }
}
