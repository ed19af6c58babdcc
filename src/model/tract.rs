//! Everything that parses, optimises and runs an ONNX model with tract: decoding the bytes,
//! turning them into a decluttered typed model, checking its shapes, and running the optimised
//! plan on a float tensor. The backbone (when tract runs it) and every head are [`Plan`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{Clock, fold};
use crate::{Error, Result};

/// An optimised tract model with one fixed-shape f32 input and one f32 output.
pub(super) struct Plan {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
}

impl Plan {
    /// Optimises `model` (read from `path`, its shapes checked); a failure is reported as a
    /// model pinsight cannot run.
    pub(super) fn optimize(path: &Path, model: TypedModel) -> Result<Plan> {
        let input_shape = input_shape(&model)
            .ok_or_else(|| not_onnx(path)("its input shape is not fixed".into()))?;
        let plan = model
            .into_optimized()
            .and_then(|model| model.into_runnable())
            .map_err(|e| not_onnx(path)(format!("{e:#}")))?;
        Ok(Plan { plan, input_shape })
    }

    /// The output for one input of the plan's input shape.
    pub(super) fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let input = Tensor::from_shape(&self.input_shape, input).map_err(inference)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(inference)?;
        let output = outputs[0].try_as_plain_ram().map_err(inference)?;
        Ok(output.as_slice::<f32>().map_err(inference)?.to_vec())
    }
}

fn inference(e: TractError) -> Error {
    Error::Inference(format!("{e:#}"))
}

fn not_onnx(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::NotOnnx {
        path: PathBuf::from(path),
        reason,
    }
}

/// Decodes ONNX bytes, checking that the graph has one input and one output.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto> {
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
    // tract 0.23 panics on an output that nothing computes (it looks the name up unchecked).
    let output = &graph.output[0].name;
    let defined = graph.node.iter().any(|node| node.output.contains(output))
        || graph.input.iter().any(|input| &input.name == output)
        || graph
            .initializer
            .iter()
            .any(|tensor| &tensor.name == output);
    if !defined {
        return Err(not_onnx(format!(
            "its output {output:?} is computed by no node"
        )));
    }
    Ok(proto)
}

/// Parses ONNX bytes into a decluttered typed model with one f32 input and one f32 output.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<TypedModel> {
    let mut clock = Clock::start();
    let proto = decode(path, bytes)?;
    clock.lap("decode");
    into_tract(path, proto, clock)
}

/// The decoded model as a decluttered tract model, constant dequantizations folded first.
pub(super) fn into_tract(
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

pub(super) fn input_shape(model: &TypedModel) -> Option<Vec<usize>> {
    concrete(model.input_fact(0).ok())
}

pub(super) fn output_shape(model: &TypedModel) -> Option<Vec<usize>> {
    concrete(model.output_fact(0).ok())
}

fn concrete(fact: Option<&TypedFact>) -> Option<Vec<usize>> {
    fact.and_then(|fact| fact.shape.as_concrete())
        .map(<[usize]>::to_vec)
}

/// A shape for an error message.
pub(super) fn describe(shape: Option<&[usize]>) -> String {
    shape.map_or_else(|| "not fixed".into(), |shape| format!("{shape:?}"))
}

/// Refuses a model whose `what` (input or output shape) is not `expected`.
pub(super) fn expect_shape(
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
