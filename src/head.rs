//! A head folder: the small dense classifier that sits on the frozen backbone.
//!
//! ```text
//! head.onnx    features [1, F] -> logits [1, C] (Gemm, or Gemm + Relu + Gemm)
//! labels.txt   C class names, one a line, in output order
//! head.json    metadata: the backbones (by SHA-256) whose features it was trained on, ...
//! SHA256SUMS   checksums of the three files above
//! ```
//! The ImageNet head in `models/imagenet` and the heads `pinsight train` writes share this layout.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::read_verified;
use crate::{Error, Result};

pub const ONNX_FILE: &str = "head.onnx";
pub const LABELS_FILE: &str = "labels.txt";
pub const META_FILE: &str = "head.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    pub name: String,
    pub classes: usize,
    /// The SHA-256 of each backbone file this head may run on.
    pub backbone_sha256: Vec<String>,
    /// Everything else the writer recorded (accuracy, image counts, date, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A head folder's files, read and checked, not yet parsed as a model.
#[derive(Debug)]
pub struct HeadFiles {
    pub dir: PathBuf,
    pub onnx: Vec<u8>,
    pub labels: Vec<String>,
    pub meta: HeadMeta,
}

impl HeadFiles {
    pub fn read(dir: &Path) -> Result<HeadFiles> {
        let (onnx, _) = read_verified(&dir.join(ONNX_FILE))?;
        let (labels, _) = read_verified(&dir.join(LABELS_FILE))?;
        let (meta, _) = read_verified(&dir.join(META_FILE))?;
        let bad = |reason: String| Error::BadHead {
            dir: dir.into(),
            reason,
        };
        let labels =
            String::from_utf8(labels).map_err(|_| bad(format!("{LABELS_FILE} is not UTF-8")))?;
        let labels: Vec<String> = labels.lines().map(str::to_owned).collect();
        let meta: HeadMeta =
            serde_json::from_slice(&meta).map_err(|e| bad(format!("{META_FILE}: {e}")))?;
        if labels.len() != meta.classes {
            return Err(bad(format!(
                "{LABELS_FILE} has {} labels but {META_FILE} says {} classes",
                labels.len(),
                meta.classes
            )));
        }
        if labels.len() < 2 || labels.iter().any(|l| l.trim().is_empty()) {
            return Err(bad(format!(
                "{LABELS_FILE} needs two or more non-empty labels"
            )));
        }
        Ok(HeadFiles {
            dir: dir.into(),
            onnx,
            labels,
            meta,
        })
    }

    /// Refuses a head trained on another backbone's features.
    pub fn check_backbone(&self, backbone: &Path, backbone_sha256: &str) -> Result<()> {
        if self
            .meta
            .backbone_sha256
            .iter()
            .any(|s| s.eq_ignore_ascii_case(backbone_sha256))
        {
            return Ok(());
        }
        Err(Error::HeadForOtherBackbone {
            dir: self.dir.clone(),
            backbone: backbone.into(),
            expected: self.meta.backbone_sha256.join(" or "),
            actual: backbone_sha256.into(),
        })
    }
}
