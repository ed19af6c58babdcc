//! The backbone and head as one tract plan. Every use of tract in pinsight is in this module,
//! including writing a trained head as ONNX ([`head_onnx`]).
//!
//! A backbone file maps the 1 × 3 × 224 × 224 image tensor to pooled features (1 × F); a head
//! maps features to logits (1 × C). Both are checked (checksum, ONNX, shapes, the head's
//! backbone) and then spliced into one typed graph, so each image is one optimised tract run.
//! [`Backbone`] runs the backbone alone, for extracting the features a head is trained on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::source::TypedSource;

mod fold;
pub mod int8;
mod proto;

use crate::checksum::read_verified;
use crate::head::{self, HeadFiles};
use crate::preprocess::{INPUT_LEN, INPUT_SIDE};
use crate::{Error, Result};
use int8::Int8Backbone;

const INPUT_SHAPE: [usize; 4] = [1, 3, INPUT_SIDE as usize, INPUT_SIDE as usize];

type Plan = Arc<TypedRunnableModel>;

/// Which engine runs the backbone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The default: on x86_64 and aarch64, pinsight's int8 executor ([`int8`]) when the
    /// backbone is an int8 QDQ model it can read, tract otherwise. There the int8 executor is
    /// several times faster than tract and matches onnxruntime more closely. On other targets
    /// (armv7, whose build has no NEON for the executor's own loops) tract, which is as fast
    /// there (see models/README.md).
    #[default]
    Auto,
    /// tract for every backbone: an int8 file runs dequantized, on float kernels.
    Tract,
    /// pinsight's int8 executor; a backbone it cannot read is refused with the reason.
    Int8,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Engine, String> {
        match name {
            "auto" => Ok(Engine::Auto),
            "tract" => Ok(Engine::Tract),
            "int8" => Ok(Engine::Int8),
            other => Err(format!(
                "unknown engine {other:?}: expected auto, tract or int8"
            )),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Tract => "tract",
            Engine::Int8 => "int8",
        })
    }
}

/// A backbone as loaded: a typed tract model still to be optimised, or the int8 executor.
enum LoadedBackbone {
    Tract(TypedModel),
    Int8(Int8Backbone),
}

/// What runs an image.
enum Runner {
    /// Backbone and head spliced into one tract plan.
    Tract(Plan),
    /// The int8 executor for the backbone, then the head's own tract plan on its features
    /// (none when only the backbone is wanted).
    Int8 {
        backbone: Box<Int8Backbone>,
        head: Option<Plan>,
    },
}

impl Runner {
    fn engine(&self) -> Engine {
        match self {
            Runner::Tract(_) => Engine::Tract,
            Runner::Int8 { .. } => Engine::Int8,
        }
    }

    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        assert_eq!(input.len(), INPUT_LEN, "input tensor length");
        match self {
            Runner::Tract(plan) => run_plan(plan, &INPUT_SHAPE, input),
            Runner::Int8 { backbone, head } => {
                let features = backbone.features(input).map_err(inference)?;
                match head {
                    Some(head) => run_plan(head, &[1, features.len()], &features),
                    None => Ok(features),
                }
            }
        }
    }
}

/// A backbone with a head on it: image tensor in, class probabilities out.
pub struct Classifier {
    runner: Runner,
    labels: Vec<String>,
    backbone_sha256: String,
}

impl Classifier {
    /// Loads `backbone` (an ONNX file) and the head in `head_dir`, refusing damaged or
    /// mismatched files with a message that names them. The backbone runs on the default
    /// [`Engine`].
    pub fn load(backbone: &Path, head_dir: &Path) -> Result<Classifier> {
        Classifier::load_with(backbone, head_dir, Engine::default())
    }

    /// As [`Classifier::load`], with the backbone on `engine`.
    pub fn load_with(backbone: &Path, head_dir: &Path, engine: Engine) -> Result<Classifier> {
        let (backbone_model, backbone_sha256, features) = load_backbone(backbone, engine)?;
        let head = HeadFiles::read(head_dir)?;
        head.check_backbone(backbone, &backbone_sha256)?;
        let head_path = head_dir.join(head::ONNX_FILE);
        let head_model = parse(&head_path, &head.onnx)?;
        expect_shape(
            &head_path,
            "input shape",
            input_shape(&head_model),
            &[1, features],
        )?;
        expect_shape(
            &head_path,
            "output shape",
            output_shape(&head_model),
            &[1, head.labels.len()],
        )?;
        let mut clock = Clock::start();
        let runner = match backbone_model {
            LoadedBackbone::Tract(backbone_model) => splice(backbone_model, &head_model)
                .and_then(optimize)
                .map(Runner::Tract),
            LoadedBackbone::Int8(int8) => optimize(head_model).map(|head| Runner::Int8 {
                backbone: Box::new(int8),
                head: Some(head),
            }),
        }
        .map_err(|e| Error::NotOnnx {
            path: head_path,
            reason: format!("{e:#}"),
        })?;
        clock.lap("optimized");
        log::debug!(
            "loaded {} ({} engine) with head {}: {clock}",
            backbone.display(),
            runner.engine(),
            head_dir.display()
        );
        Ok(Classifier {
            runner,
            labels: head.labels,
            backbone_sha256,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn backbone_sha256(&self) -> &str {
        &self.backbone_sha256
    }

    /// The engine the backbone runs on: [`Engine::Tract`] or [`Engine::Int8`].
    pub fn engine(&self) -> Engine {
        self.runner.engine()
    }

    /// Class probabilities (softmax of the head's logits) for one input tensor of `INPUT_LEN`
    /// values, as [`crate::preprocess::Preprocessor::tensor`] makes it.
    pub fn probabilities(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(softmax(&self.logits(input)?))
    }

    /// The head's raw outputs for one input tensor.
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.runner.run(input)
    }
}

/// The backbone alone: image tensor in, pooled features out.
pub struct Backbone {
    runner: Runner,
    sha256: String,
    feature_len: usize,
}

impl Backbone {
    /// Loads a backbone file on the default [`Engine`].
    pub fn load(path: &Path) -> Result<Backbone> {
        Backbone::load_with(path, Engine::default())
    }

    /// Loads a backbone file on `engine`.
    pub fn load_with(path: &Path, engine: Engine) -> Result<Backbone> {
        let (model, sha256, feature_len) = load_backbone(path, engine)?;
        let runner = match model {
            LoadedBackbone::Tract(model) => {
                optimize(model)
                    .map(Runner::Tract)
                    .map_err(|e| Error::NotOnnx {
                        path: path.into(),
                        reason: format!("{e:#}"),
                    })?
            }
            LoadedBackbone::Int8(backbone) => Runner::Int8 {
                backbone: Box::new(backbone),
                head: None,
            },
        };
        Ok(Backbone {
            runner,
            sha256,
            feature_len,
        })
    }

    /// The SHA-256 of the backbone file, which heads trained on its features record.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn feature_len(&self) -> usize {
        self.feature_len
    }

    /// The engine the backbone runs on: [`Engine::Tract`] or [`Engine::Int8`].
    pub fn engine(&self) -> Engine {
        self.runner.engine()
    }

    /// The pooled features of one input tensor of `INPUT_LEN` values.
    pub fn features(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.runner.run(input)
    }
}

fn optimize(model: TypedModel) -> TractResult<Plan> {
    model.into_optimized()?.into_runnable()
}

fn run_plan(plan: &Plan, shape: &[usize], input: &[f32]) -> Result<Vec<f32>> {
    let input = Tensor::from_shape(shape, input).map_err(inference)?;
    let outputs = plan.run(tvec!(input.into())).map_err(inference)?;
    let output = outputs[0].try_as_plain_ram().map_err(inference)?;
    Ok(output.as_slice::<f32>().map_err(inference)?.to_vec())
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

fn inference(e: TractError) -> Error {
    Error::Inference(format!("{e:#}"))
}

/// Reads, verifies and loads a backbone on `engine`; returns it with its SHA-256 and feature
/// count.
fn load_backbone(path: &Path, engine: Engine) -> Result<(LoadedBackbone, String, usize)> {
    let (bytes, sha256) = read_verified(path)?;
    let mut clock = Clock::start();
    let proto = decode(path, &bytes)?;
    clock.lap("decode");
    // Where the int8 executor has SIMD kernels of its own.
    const INT8_BY_DEFAULT: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
    if engine == Engine::Int8 || (engine == Engine::Auto && INT8_BY_DEFAULT) {
        let graph = proto.graph.as_ref().expect("decode checked the graph");
        match Int8Backbone::new(graph) {
            Ok(backbone) => {
                clock.lap("int8 executor");
                log::debug!("loaded {} on the int8 engine: {clock}", path.display());
                let shape = backbone.input_shape();
                expect_shape(path, "input shape", Some(shape.to_vec()), &INPUT_SHAPE)?;
                let features = backbone.feature_len();
                return Ok((LoadedBackbone::Int8(backbone), sha256, features));
            }
            Err(why) if engine == Engine::Int8 => {
                return Err(Error::NotOnnx {
                    path: path.into(),
                    reason: format!(
                        "pinsight's int8 engine cannot run it ({why}); use the tract engine"
                    ),
                });
            }
            Err(why) => log::debug!(
                "{} runs on tract: the int8 engine cannot run it ({why})",
                path.display()
            ),
        }
    }
    let model = into_tract(path, proto, clock)?;
    expect_shape(path, "input shape", input_shape(&model), &INPUT_SHAPE)?;
    let features = match output_shape(&model).as_deref() {
        Some([1, features]) => *features,
        other => {
            return Err(Error::WrongShape {
                path: path.into(),
                what: "output shape",
                found: describe(other),
                expected: "[1, features]".into(),
            });
        }
    };
    Ok((LoadedBackbone::Tract(model), sha256, features))
}

fn not_onnx(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::NotOnnx {
        path: PathBuf::from(path),
        reason,
    }
}

/// Decodes ONNX bytes, checking that the graph has one input and one output.
fn decode(path: &Path, bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto> {
    let not_onnx = not_onnx(path);
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| not_onnx(format!("{e:#}")))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| not_onnx("it holds no graph".into()))?;
    if graph.node.is_empty() || graph.input.len() != 1 || graph.output.len() != 1 {
        return Err(not_onnx(format!(
            "pinsight needs a graph with one input and one output; this one has {} nodes, {} inputs, {} outputs",
            graph.node.len(),
            graph.input.len(),
            graph.output.len()
        )));
    }
    Ok(proto)
}

/// Parses ONNX bytes into a decluttered typed model with one f32 input and one f32 output.
fn parse(path: &Path, bytes: &[u8]) -> Result<TypedModel> {
    let mut clock = Clock::start();
    let proto = decode(path, bytes)?;
    clock.lap("decode");
    into_tract(path, proto, clock)
}

/// The decoded model as a decluttered tract model, constant dequantizations folded first.
fn into_tract(
    path: &Path,
    mut proto: tract_onnx::pb::ModelProto,
    mut clock: Clock,
) -> Result<TypedModel> {
    let not_onnx = not_onnx(path);
    let graph = proto.graph.as_mut().expect("decode checked the graph");
    let folded = fold::fold_constant_dequantization(graph);
    clock.lap("fold");
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(|e| not_onnx(format!("{e:#}")))?;
    clock.lap("graph");
    let model = model.into_typed().map_err(|e| not_onnx(format!("{e:#}")))?;
    clock.lap("typed");
    let model = model
        .into_decluttered()
        .map_err(|e| not_onnx(format!("{e:#}")))?;
    clock.lap("decluttered");
    log::debug!(
        "parsed {} ({folded} constant dequantizations folded): {clock}",
        path.display()
    );
    for fact in [model.input_fact(0), model.output_fact(0)] {
        let datum_type = fact.map_err(|e| not_onnx(format!("{e:#}")))?.datum_type;
        if datum_type != f32::datum_type() {
            return Err(not_onnx(format!(
                "its input and output must be float32, not {datum_type:?}"
            )));
        }
    }
    Ok(model)
}

/// Where load time goes, for `RUST_LOG=pinsight=debug`.
struct Clock {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, what: &'static str) {
        let now = Instant::now();
        self.laps
            .push((what, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (ix, (what, ms)) in self.laps.iter().enumerate() {
            let separator = if ix == 0 { "" } else { ", " };
            write!(f, "{separator}{what} {ms:.1} ms")?;
        }
        Ok(())
    }
}

fn input_shape(model: &TypedModel) -> Option<Vec<usize>> {
    concrete(model.input_fact(0).ok())
}

fn output_shape(model: &TypedModel) -> Option<Vec<usize>> {
    concrete(model.output_fact(0).ok())
}

fn concrete(fact: Option<&TypedFact>) -> Option<Vec<usize>> {
    fact.and_then(|fact| fact.shape.as_concrete())
        .map(<[usize]>::to_vec)
}

fn describe(shape: Option<&[usize]>) -> String {
    shape.map_or_else(|| "not fixed".into(), |shape| format!("{shape:?}"))
}

fn expect_shape(
    path: &Path,
    what: &'static str,
    found: Option<Vec<usize>>,
    expected: &[usize],
) -> Result<()> {
    if found.as_deref() == Some(expected) {
        return Ok(());
    }
    Err(Error::WrongShape {
        path: path.into(),
        what,
        found: describe(found.as_deref()),
        expected: format!("{expected:?}"),
    })
}

/// Wires every node of `head` after the output of `backbone`, whose output becomes the head's.
fn splice(mut backbone: TypedModel, head: &TypedModel) -> TractResult<TypedModel> {
    let mut outlets: HashMap<OutletId, OutletId> = HashMap::new();
    outlets.insert(head.input_outlets()?[0], backbone.output_outlets()?[0]);
    for id in head.eval_order()? {
        let node = head.node(id);
        if node.op_is::<TypedSource>() {
            continue;
        }
        let inputs: TVec<OutletId> = node.inputs.iter().map(|input| outlets[input]).collect();
        let wired = backbone.wire_node(format!("head.{}", node.name), node.op.clone(), &inputs)?;
        for (slot, outlet) in wired.into_iter().enumerate() {
            outlets.insert(OutletId::new(id, slot), outlet);
        }
    }
    let logits = outlets[&head.output_outlets()?[0]];
    backbone.select_output_outlets(&[logits])?;
    Ok(backbone)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0, 9.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[3] > 0.99 && p[1] > p[2] && p[2] > p[0]);
        assert_eq!(softmax(&[1000.0, 1000.0]), [0.5, 0.5]);
    }
}
