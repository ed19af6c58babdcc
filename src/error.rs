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

    /// A network output cannot start: the HTTP address cannot be bound (in use, or not this
    /// machine's), or the MQTT client cannot be set up.
    #[error("{what}: {reason}")]
    Network { what: String, reason: String },

    #[error("will not write a head to {}: {reason}", path.display())]
    OutRefused { path: PathBuf, reason: String },

    #[error("will not write a report to {}: {reason}", path.display())]
    ReportRefused { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Read { path, cause }
    }
}

/// What kind of failure an [`Error`] is, which is what `pinsight`'s exit status says: a script
/// or a systemd unit acts on the kind (retry a busy camera, stop retrying a bad config), and the
/// message says the rest. The same scheme holds for every subcommand; [`EXIT_STATUS_HELP`] is
/// the table `pinsight --help` prints and README.md repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line asks for something that cannot be done (clap's own usage errors exit
    /// with the same status). Exit status 2.
    Usage,
    /// A file pinsight was pointed at is bad: an image, a model, a head, a training folder, a
    /// config or board file. Fix the file or point at another; running again as it is fails
    /// again. Exit status 3.
    Input,
    /// The machine said no: a camera or GPIO chip missing, busy or not allowed, a file or
    /// stdout that cannot be written, a file that cannot be read for lack of permission. It may
    /// work later or after a change of groups. Exit status 4.
    System,
    /// The work was done, but some inputs were skipped (each named on stderr), e.g. `classify`
    /// with some unreadable images. Exit status 5.
    Partial,
    /// A bug in pinsight or in what it builds on: report it. Exit status 70 (`EX_SOFTWARE` in
    /// sysexits.h). A panic exits 101, Rust's own status for one, which is a bug too.
    Internal,
}

/// The exit statuses as `pinsight --help` lists them (README.md has the same table).
pub const EXIT_STATUS_HELP: &str = "\
Exit status (the same for every subcommand):
  0    success
  2    usage: the command line asks for something that cannot be done
  3    bad input: an image, model, head, training folder, config or board file is unusable
  4    system: a camera or GPIO chip is missing, busy or not allowed, or a file cannot be written
  5    partly done: some inputs were skipped (each is named on stderr), the rest were done
  70   internal error in pinsight: please report it (a panic exits 101)";

impl ErrorKind {
    /// The process exit status for this kind of failure.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::Input => 3,
            ErrorKind::System => 4,
            ErrorKind::Partial => 5,
            ErrorKind::Internal => 70,
        }
    }

    /// The kind a `pinsight` process's exit status says, if it is one of [`Self::exit_code`]'s.
    pub fn from_exit_code(code: i32) -> Option<ErrorKind> {
        [
            ErrorKind::Usage,
            ErrorKind::Input,
            ErrorKind::System,
            ErrorKind::Partial,
            ErrorKind::Internal,
        ]
        .into_iter()
        .find(|kind| i32::from(kind.exit_code()) == code)
    }
}

impl Error {
    /// Which kind of failure this is (and so which exit status `pinsight` gives it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Usage(_) => ErrorKind::Usage,
            Error::Read { cause, .. } if cause.kind() == io::ErrorKind::PermissionDenied => {
                ErrorKind::System
            }
            Error::Read { .. }
            | Error::NoChecksum { .. }
            | Error::ChecksumMismatch { .. }
            | Error::NotOnnx { .. }
            | Error::WrongShape { .. }
            | Error::BadHead { .. }
            | Error::HeadForOtherBackbone { .. }
            | Error::Image { .. }
            | Error::Dataset { .. }
            | Error::Training(_)
            | Error::NoImages { .. }
            | Error::OutRefused { .. }
            | Error::ReportRefused { .. }
            | Error::Config { .. } => ErrorKind::Input,
            Error::CameraMissing { .. }
            | Error::CameraPermission { .. }
            | Error::CameraBusy { .. }
            | Error::Camera { .. }
            | Error::Gpio { .. }
            | Error::GpioPermission { .. }
            | Error::Write { .. }
            | Error::Network { .. }
            | Error::Output(_) => ErrorKind::System,
            Error::Unreadable { .. } => ErrorKind::Partial,
            Error::Inference(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// One error of every variant with the kind it must have: adding a variant without a kind
    /// fails to compile in [`Error::kind`], and this list says what each one means to a script.
    #[test]
    fn every_variant_has_the_kind_its_exit_status_promises() {
        let path = || PathBuf::from("x");
        let text = || String::from("x");
        let read = |kind: io::ErrorKind| Error::Read {
            path: path(),
            cause: io::Error::from(kind),
        };
        let cases = [
            (Error::Usage(text()), ErrorKind::Usage),
            (read(io::ErrorKind::NotFound), ErrorKind::Input),
            (read(io::ErrorKind::InvalidData), ErrorKind::Input),
            (read(io::ErrorKind::PermissionDenied), ErrorKind::System),
            (
                Error::NoChecksum {
                    path: path(),
                    sums: path(),
                    name: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::ChecksumMismatch {
                    path: path(),
                    sums: path(),
                    expected: text(),
                    actual: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::NotOnnx {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::WrongShape {
                    path: path(),
                    what: "x",
                    found: text(),
                    expected: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::BadHead {
                    dir: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::HeadForOtherBackbone {
                    dir: path(),
                    backbone: path(),
                    expected: text(),
                    actual: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::Image {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (Error::Inference(text()), ErrorKind::Internal),
            (Error::CameraMissing { device: path() }, ErrorKind::System),
            (
                Error::CameraPermission { device: path() },
                ErrorKind::System,
            ),
            (Error::CameraBusy { device: path() }, ErrorKind::System),
            (
                Error::Camera {
                    device: path(),
                    reason: text(),
                },
                ErrorKind::System,
            ),
            (
                Error::Dataset {
                    dir: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (Error::Training(text()), ErrorKind::Input),
            (
                Error::Write {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::System,
            ),
            (Error::Output(text()), ErrorKind::System),
            (
                Error::Unreadable {
                    failed: 1,
                    total: 2,
                },
                ErrorKind::Partial,
            ),
            (Error::Internal(text()), ErrorKind::Internal),
            (
                Error::NoImages {
                    spec: text(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::Config {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::Gpio {
                    what: text(),
                    reason: text(),
                },
                ErrorKind::System,
            ),
            (Error::GpioPermission { device: path() }, ErrorKind::System),
            (
                Error::OutRefused {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
            (
                Error::ReportRefused {
                    path: path(),
                    reason: text(),
                },
                ErrorKind::Input,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn exit_codes_are_distinct_and_round_trip() {
        let kinds = [
            ErrorKind::Usage,
            ErrorKind::Input,
            ErrorKind::System,
            ErrorKind::Partial,
            ErrorKind::Internal,
        ];
        let codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        assert_eq!(codes, [2, 3, 4, 5, 70]);
        for kind in kinds {
            assert_eq!(
                ErrorKind::from_exit_code(kind.exit_code().into()),
                Some(kind)
            );
            let line = format!("  {:<4} ", kind.exit_code());
            assert!(EXIT_STATUS_HELP.contains(&line), "{line:?} in the help");
        }
        for code in [0, 1, 101, 124] {
            assert_eq!(ErrorKind::from_exit_code(code), None, "{code}");
        }
    }
}
