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

/// Writes a head folder so that `dir` never holds half a head: the files (and their
/// `SHA256SUMS`) are written into a temporary folder beside it, which then takes `dir`'s place
/// in one rename (an existing head is swapped out atomically and removed).
pub fn write_head_dir(dir: &Path, onnx: &[u8], labels: &[String], meta: &HeadMeta) -> Result<()> {
    let fail = |e: std::io::Error| Error::Write {
        path: dir.into(),
        reason: e.to_string(),
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(fail)?;
    let staging = tempfile::Builder::new()
        .prefix(".pinsight-head-")
        .tempdir_in(parent)
        .map_err(fail)?;
    let labels_text: String = labels.iter().map(|l| format!("{l}\n")).collect();
    let meta_text = serde_json::to_string_pretty(meta).expect("metadata serialises") + "\n";
    let files: [(&str, &[u8]); 3] = [
        (ONNX_FILE, onnx),
        (LABELS_FILE, labels_text.as_bytes()),
        (META_FILE, meta_text.as_bytes()),
    ];
    let mut sums = String::new();
    for (name, bytes) in files {
        std::fs::write(staging.path().join(name), bytes).map_err(fail)?;
        sums.push_str(&format!("{}  {name}\n", crate::checksum::sha256_hex(bytes)));
    }
    std::fs::write(staging.path().join(crate::checksum::SUMS_FILE), sums).map_err(fail)?;
    for name in [
        ONNX_FILE,
        LABELS_FILE,
        META_FILE,
        crate::checksum::SUMS_FILE,
    ] {
        std::fs::File::open(staging.path().join(name))
            .and_then(|f| f.sync_all())
            .map_err(fail)?;
    }
    swap_into_place(staging.path(), dir).map_err(fail)?;
    // `staging` now holds the previous head, if there was one; dropping it removes it.
    Ok(())
}

/// Moves the folder `from` to `to`. When `to` exists the two are exchanged in one
/// `renameat2(RENAME_EXCHANGE)`, so `to` is always a complete folder.
fn swap_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if !to.exists() {
        return std::fs::rename(from, to);
    }
    if !to.is_dir() {
        return Err(std::io::Error::other("exists and is not a folder"));
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: `from_c` and `to_c` are `CString`s (built just above, which refuses an interior
    // NUL), so each pointer is a NUL-terminated string; both live to the end of this function,
    // past the call, and renameat2 only reads them.
    let status = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
