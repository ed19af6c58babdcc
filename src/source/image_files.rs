//! Image files as a frame source: a folder, a glob pattern or one file, in name order. It runs
//! the whole loop without a camera (dry runs, tests, demos). Each file is read when its turn
//! comes, through [`read_image_file`]: one that is not a regular file or is too large is
//! skipped with the reason, like one that does not decode.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{FrameSource, Next};
use crate::decode::{is_image_file_name, read_image_file};
use crate::frame::{Frame, PixelFormat};
use crate::{Error, Result};

pub struct Files {
    paths: std::vec::IntoIter<PathBuf>,
    sequence: u64,
}

impl Files {
    /// `spec` is a folder (its image files, by extension), a glob pattern (`photos/*.jpg`) or
    /// one file.
    pub fn open(spec: &str) -> Result<Files> {
        let path = Path::new(spec);
        let mut paths: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(path)
                .map_err(Error::read(path))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_file_name(p))
                .collect()
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            let pattern = glob::glob(spec).map_err(|e| Error::NoImages {
                spec: spec.into(),
                reason: e.to_string(),
            })?;
            pattern
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect()
        };
        if paths.is_empty() {
            let reason = "no image files (.jpg, .jpeg, .png, .webp, .bmp) there".to_string();
            return Err(Error::NoImages {
                spec: spec.into(),
                reason,
            });
        }
        paths.sort();
        Ok(Files::from_paths(paths))
    }

    /// These files, in this order (an unreadable one is skipped when its turn comes).
    pub fn from_paths(paths: Vec<PathBuf>) -> Files {
        Files {
            paths: paths.into_iter(),
            sequence: 0,
        }
    }
}

impl FrameSource for Files {
    fn next_frame(&mut self) -> Result<Next> {
        let Some(path) = self.paths.next() else {
            return Ok(Next::End);
        };
        let sequence = self.sequence;
        self.sequence += 1;
        Ok(match read_image_file(&path) {
            Ok(data) => Next::Frame(Frame {
                sequence,
                captured_at: Instant::now(),
                format: PixelFormat::Encoded,
                width: 0,
                height: 0,
                stride: 0,
                data,
                origin: path.display().to_string(),
            }),
            Err(e) => Next::Skipped(e.to_string()),
        })
    }
}
