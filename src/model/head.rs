//! A head folder: the small dense classifier that sits on the frozen backbone, read
//! ([`HeadFiles`]) and written ([`head_onnx`], [`write_head_dir`]) here.
//!
//! ```text
//! head.onnx    features [1, F] -> logits [1, C] (Gemm, or Gemm + Relu + Gemm)
//! labels.txt   C class names, one a line, in output order
//! head.json    metadata: the backbones (by SHA-256) whose features it was trained on, ...
//! SHA256SUMS   checksums of the three files above
//! ```
//! The ImageNet head in `models/imagenet` and the heads `pinsight train` writes share this layout.
//! [`super::Classifier`] parses `head.onnx` into a tract plan of its own.

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
    /// When a result is "unknown" (none of the head's classes): set by `pinsight train`;
    /// heads without it (the ImageNet head) never say unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownThreshold>,
    /// Everything else the writer recorded (accuracy, image counts, date, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The open-set test a head carries: a result whose known score (the head's largest logit,
/// averaged as the probabilities are) is below `threshold` is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UnknownThreshold {
    /// The known score below which a result is unknown.
    pub threshold: f32,
    /// The share of held-out photos of the head's own classes that scored at least
    /// `threshold` when it was set (`pinsight train --accept-known`).
    pub accepted: f32,
    /// How many held-out photos set it.
    pub photos: usize,
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
        if let Some(unknown) = meta.unknown.filter(|u| !u.threshold.is_finite()) {
            return Err(bad(format!(
                "{META_FILE}: the unknown threshold {} is not a number",
                unknown.threshold
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

/// The files of a head folder pinsight writes; nothing else is ever in one.
pub const HEAD_FILES: [&str; 4] = [
    ONNX_FILE,
    LABELS_FILE,
    META_FILE,
    crate::checksum::SUMS_FILE,
];

/// The field of `head.json` that says which pinsight wrote the head (its version).
pub const WRITER_FIELD: &str = "pinsight";

/// What is at a path a head is about to be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nothing: the head folder is created.
    Absent,
    /// An empty folder: it is replaced.
    Empty,
    /// A head folder pinsight wrote and nobody changed: it is replaced, its four files removed.
    PinsightHead,
}

/// Checks that a head may be written to `dir`, and says what is there. A head is written only
/// to a path that is absent, an empty folder, or a head folder pinsight wrote: a real folder
/// (not a symbolic link) holding exactly `head.onnx`, `labels.txt`, `head.json` and
/// `SHA256SUMS`, each a regular file, whose `head.json` names the pinsight that wrote it
/// (the `"pinsight"` field) and whose `SHA256SUMS` matches the three other files. Anything
/// else (a file, a link, a folder with other files or changed files) is refused with the
/// reason: pinsight never removes what it did not write.
pub fn check_destination(dir: &Path) -> Result<Destination> {
    let refuse = |reason: String| Error::OutRefused {
        path: dir.into(),
        reason,
    };
    let metadata = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::Absent),
        Err(e) => return Err(refuse(format!("cannot look at it: {e}"))),
        Ok(metadata) => metadata,
    };
    if metadata.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link: name the folder it points to, or a new folder".into(),
        ));
    }
    if !metadata.is_dir() {
        return Err(refuse(
            "it is a file, not a folder: name a new or empty folder for the head".into(),
        ));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| refuse(format!("cannot list it: {e}")))? {
        let entry = entry.map_err(|e| refuse(format!("cannot list it: {e}")))?;
        names.push(entry.file_name());
    }
    if names.is_empty() {
        return Ok(Destination::Empty);
    }
    names.sort();
    let foreign: Vec<String> = names
        .iter()
        .filter(|n| !HEAD_FILES.iter().any(|h| n.as_os_str() == *h))
        .map(|n| format!("{:?}", n.to_string_lossy()))
        .collect();
    let not_a_head = |what: String| {
        refuse(format!(
            "it is not a head folder pinsight wrote ({what}), and pinsight only replaces its \
             own: name a new or empty folder, or move those files away"
        ))
    };
    if !foreign.is_empty() {
        let shown = foreign
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = foreign.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(not_a_head(format!("it holds {shown}{more}")));
    }
    for name in HEAD_FILES {
        match std::fs::symlink_metadata(dir.join(name)) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => return Err(not_a_head(format!("{name} is not a regular file"))),
            Err(_) => return Err(not_a_head(format!("{name} is missing"))),
        }
    }
    for name in [ONNX_FILE, LABELS_FILE, META_FILE] {
        if let Err(e) = read_verified(&dir.join(name)) {
            return Err(not_a_head(format!(
                "{name} does not match its SHA256SUMS line: {e}"
            )));
        }
    }
    let meta = std::fs::read(dir.join(META_FILE)).map_err(|e| refuse(e.to_string()))?;
    let written_by_pinsight = serde_json::from_slice::<serde_json::Value>(&meta)
        .ok()
        .and_then(|v| v.get(WRITER_FIELD).map(serde_json::Value::is_string))
        .unwrap_or(false);
    if !written_by_pinsight {
        return Err(not_a_head(format!(
            "its {META_FILE} has no \"{WRITER_FIELD}\" field: `pinsight train` did not write it"
        )));
    }
    Ok(Destination::PinsightHead)
}

/// A head written into a staging folder beside its destination, not yet in place: load and
/// check it from [`StagedHead::path`], then [`StagedHead::commit`] it. Dropped uncommitted, the
/// staging folder (holding only the files written here) is removed.
pub struct StagedHead {
    staging: crate::durable::StagingDir,
    target: PathBuf,
}

/// Writes a head folder's files (and their `SHA256SUMS`) into a new staging folder beside
/// `dir`, each synced to disk. `head.json` gets a `"pinsight"` field (this version), which
/// marks the folder as one pinsight may replace later.
pub fn stage_head_dir(
    dir: &Path,
    onnx: &[u8],
    labels: &[String],
    meta: &HeadMeta,
) -> Result<StagedHead> {
    let fail = |e: std::io::Error| Error::Write {
        path: dir.into(),
        reason: e.to_string(),
    };
    crate::durable::create_dir_all(crate::durable::parent_of(dir)).map_err(fail)?;
    remove_stale_staging(dir);
    let staging = crate::durable::staging_dir_for(dir, "head").map_err(fail)?;
    let mut meta = meta.clone();
    meta.extra
        .entry(WRITER_FIELD)
        .or_insert_with(|| env!("CARGO_PKG_VERSION").into());
    let labels_text: String = labels.iter().map(|l| format!("{l}\n")).collect();
    let meta_text = serde_json::to_string_pretty(&meta)
        .map_err(std::io::Error::other)
        .map_err(fail)?
        + "\n";
    let files: [(&str, &[u8]); 3] = [
        (ONNX_FILE, onnx),
        (LABELS_FILE, labels_text.as_bytes()),
        (META_FILE, meta_text.as_bytes()),
    ];
    let mut sums = String::new();
    for (name, bytes) in files {
        crate::durable::write(&staging.path().join(name), bytes)?;
        sums.push_str(&format!("{}  {name}\n", crate::checksum::sha256_hex(bytes)));
    }
    crate::durable::write(
        &staging.path().join(crate::checksum::SUMS_FILE),
        sums.as_bytes(),
    )?;
    Ok(StagedHead {
        staging,
        target: dir.into(),
    })
}

impl StagedHead {
    /// The staging folder: a complete head folder, loadable as `run` loads one.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Puts the staged head in place of its destination in one rename (an exchange when a
    /// folder is there), syncs the parent folder, then removes the previous head's files (only
    /// the four a head folder holds) and its folder. The destination is checked again first
    /// ([`check_destination`]): what is there now must still be pinsight's to replace.
    pub fn commit(self) -> Result<()> {
        let StagedHead { staging, target } = self;
        let fail = |e: std::io::Error| Error::Write {
            path: target.clone(),
            reason: e.to_string(),
        };
        let destination = check_destination(&target)?;
        // From here the staging folder is removed by hand (its four files, then the folder),
        // never by the TempDir's remove_dir_all: after an exchange it holds what was at
        // `target`. Its lock, and one on the folder it replaces, mark both as in use until the
        // end, so that another pinsight never takes either for a crash's leftover.
        let (staging, _staging_lock) = staging.keep();
        let swapped = match destination {
            Destination::Absent => {
                crate::durable::rename_noreplace(&staging, &target).map(|()| None)
            }
            Destination::Empty | Destination::PinsightHead => crate::durable::lock_dir(&target)
                .and_then(|lock| crate::durable::exchange(&staging, &target).map(|()| Some(lock))),
        };
        let _target_lock = match swapped {
            Ok(lock) => lock,
            Err(e) => {
                remove_head_folder(&staging);
                return Err(fail(e));
            }
        };
        crate::durable::sync_dir(crate::durable::parent_of(&target)).map_err(fail)?;
        if destination != Destination::Absent {
            remove_head_folder(&staging);
        }
        Ok(())
    }
}

/// Writes a head folder so that `dir` never holds half a head ([`stage_head_dir`], then
/// [`StagedHead::commit`]).
pub fn write_head_dir(dir: &Path, onnx: &[u8], labels: &[String], meta: &HeadMeta) -> Result<()> {
    check_destination(dir)?;
    stage_head_dir(dir, onnx, labels, meta)?.commit()
}

/// Removes the staging folders beside `dir` that an earlier `pinsight train` left when it
/// crashed or lost power: a head it was writing (with the temporary file it was writing, if
/// any) or the previous head it had swapped out.
fn remove_stale_staging(dir: &Path) {
    for (stale, _lock) in crate::durable::stale_staging_dirs(dir, "head") {
        log::info!("removing {}, left by an earlier run", stale.display());
        if let Ok(entries) = std::fs::read_dir(&stale) {
            for entry in entries.flatten() {
                if crate::durable::is_temporary_name(&entry.file_name()) {
                    remove_file_we_wrote(&entry.path());
                }
            }
        }
        remove_head_folder(&stale);
    }
}

/// Removes a head folder pinsight wrote (a staged one, or the previous head swapped out): its
/// four files (regular files only) and then the folder, which fails, leaving it in place with a
/// warning, if anything else is in it.
fn remove_head_folder(dir: &Path) {
    for name in HEAD_FILES {
        remove_file_we_wrote(&dir.join(name));
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        log::warn!(
            "left the folder {} in place ({e}): it holds files pinsight did not write",
            dir.display()
        );
    } else if let Err(e) = crate::durable::sync_dir(crate::durable::parent_of(dir)) {
        log::warn!(
            "cannot sync {}: {e}",
            crate::durable::parent_of(dir).display()
        );
    }
}

/// Removes `path` if it is a regular file (not a link, a folder or a device).
fn remove_file_we_wrote(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}

/// One fully connected layer as ONNX Gemm stores it with `transB = 1`: `weights` holds
/// `outputs` rows of `inputs` values.
pub struct DenseLayer<'a> {
    pub weights: &'a [f32],
    pub bias: &'a [f32],
    pub inputs: usize,
    pub outputs: usize,
}

/// A head as ONNX bytes: `features [1, F]` → Gemm → (Relu → Gemm)* → `logits [1, C]`, the
/// layout pinsight loads (a Relu between consecutive layers).
pub fn head_onnx(layers: &[DenseLayer]) -> Vec<u8> {
    use prost::Message;
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
        tensor_shape_proto, type_proto,
    };

    let value_info = |name: &str, width: usize| {
        let dim = |value: usize| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(value as i64)),
            ..Default::default()
        };
        let tensor = type_proto::Tensor {
            elem_type: tensor_proto::DataType::Float as i32,
            shape: Some(TensorShapeProto {
                dim: vec![dim(1), dim(width)],
            }),
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(tensor)),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let initializer = |name: String, dims: Vec<i64>, values: &[f32]| TensorProto {
        name,
        dims,
        data_type: tensor_proto::DataType::Float as i32,
        float_data: values.to_vec(),
        ..Default::default()
    };
    let mut graph = GraphProto {
        name: "pinsight_head".into(),
        ..Default::default()
    };
    let mut input = "features".to_string();
    for (i, layer) in layers.iter().enumerate() {
        let last = i + 1 == layers.len();
        let (weights, bias) = (format!("dense{i}.weight"), format!("dense{i}.bias"));
        let gemm = if last {
            "logits".to_string()
        } else {
            format!("dense{i}")
        };
        graph.initializer.push(initializer(
            weights.clone(),
            vec![layer.outputs as i64, layer.inputs as i64],
            layer.weights,
        ));
        graph.initializer.push(initializer(
            bias.clone(),
            vec![layer.outputs as i64],
            layer.bias,
        ));
        graph.node.push(NodeProto {
            name: format!("dense{i}"),
            op_type: "Gemm".into(),
            input: vec![input, weights, bias],
            output: vec![gemm.clone()],
            attribute: vec![AttributeProto {
                name: "transB".into(),
                r#type: attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        input = gemm;
        if !last {
            let relu = format!("relu{i}");
            graph.node.push(NodeProto {
                name: relu.clone(),
                op_type: "Relu".into(),
                input: vec![input],
                output: vec![relu.clone()],
                ..Default::default()
            });
            input = relu;
        }
    }
    graph.input.push(value_info(
        "features",
        layers.first().map_or(0, |l| l.inputs),
    ));
    graph
        .output
        .push(value_info("logits", layers.last().map_or(0, |l| l.outputs)));
    let model = ModelProto {
        ir_version: 9,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 18,
        }],
        producer_name: "pinsight".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_head() -> (Vec<u8>, Vec<String>, HeadMeta) {
        let onnx = head_onnx(&[DenseLayer {
            weights: &[1.0, 0.0, 0.0, 1.0],
            bias: &[0.0, 0.0],
            inputs: 2,
            outputs: 2,
        }]);
        let meta = HeadMeta {
            unknown: None,
            name: "test".into(),
            classes: 2,
            backbone_sha256: vec!["0".repeat(64)],
            extra: serde_json::Map::new(),
        };
        (onnx, vec!["a".into(), "b".into()], meta)
    }

    fn refused(dir: &Path, why: &str) {
        match check_destination(dir) {
            Err(Error::OutRefused { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{} should be refused ({why}): {other:?}", dir.display()),
        }
    }

    #[test]
    fn only_new_empty_or_pinsight_head_folders_are_replaced() {
        let work = tempfile::tempdir().unwrap();
        let (onnx, labels, meta) = a_head();
        let dir = work.path().join("head");
        assert_eq!(check_destination(&dir).unwrap(), Destination::Absent);
        write_head_dir(&dir, &onnx, &labels, &meta).unwrap();
        assert_eq!(check_destination(&dir).unwrap(), Destination::PinsightHead);
        // Written again over itself: replaced, and no staging folder left beside it.
        write_head_dir(&dir, &onnx, &labels, &meta).unwrap();
        let beside: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
        assert_eq!(beside.len(), 1);

        std::fs::create_dir(work.path().join("empty")).unwrap();
        assert_eq!(
            check_destination(&work.path().join("empty")).unwrap(),
            Destination::Empty
        );

        // The ImageNet head has the four files but pinsight train did not write it.
        let imagenet = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagenet");
        refused(&imagenet, "no \"pinsight\" field");

        // A label edited by hand: the folder is no longer what pinsight wrote.
        std::fs::write(dir.join(LABELS_FILE), "a\nc\n").unwrap();
        refused(&dir, "SHA256SUMS");
        let edited = std::fs::read(dir.join(LABELS_FILE)).unwrap();
        assert!(write_head_dir(&dir, &onnx, &labels, &meta).is_err());
        assert_eq!(std::fs::read(dir.join(LABELS_FILE)).unwrap(), edited);

        let link = work.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        refused(&link, "symbolic link");
    }

    /// A staging folder as a crash leaves it, with its files and an old modification time.
    fn left_behind(parent: &Path, name: &str, files: &[&str]) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        for file in files {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        dir
    }

    #[test]
    fn staging_folders_a_crash_left_are_removed_and_those_in_use_kept() {
        let work = tempfile::tempdir().unwrap();
        let (onnx, labels, meta) = a_head();
        // A head half written, and a previous head swapped out but not yet removed.
        let half = left_behind(
            work.path(),
            ".pinsight-head-aaaaaa",
            &[ONNX_FILE, ".pinsight-Xy12Zq"],
        );
        let swapped_out = left_behind(work.path(), ".pinsight-head-bbbbbb", &HEAD_FILES);
        // One that another pinsight holds at this moment, and one with a file of the user's.
        let in_use = left_behind(work.path(), ".pinsight-head-cccccc", &[ONNX_FILE]);
        let _held = crate::durable::lock_dir(&in_use).unwrap();
        let foreign = left_behind(work.path(), ".pinsight-head-dddddd", &["notes.txt"]);

        write_head_dir(&work.path().join("head"), &onnx, &labels, &meta).unwrap();
        assert!(!half.exists() && !swapped_out.exists());
        assert!(in_use.join(ONNX_FILE).exists());
        assert!(foreign.join("notes.txt").exists());
    }
}
