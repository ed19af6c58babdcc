//! Reads a QDQ ONNX graph into the steps of the int8 executor, or says why it cannot.
//!
//! The graphs this understands are what onnxruntime's `quantize_static` makes of a convolutional
//! backbone (QDQ format, u8 activations, per-channel symmetric i8 weights, int32 biases):
//!
//! ```text
//! image ─Q─ DQ ─ Conv(DQ(w), DQ(b)) ─[Relu|Clip]─ Q ─ DQ ─ … ─ Add(DQ a, DQ b) ─ Q ─ … ─ DQ ─ ReduceMean ─ features
//! ```
//!
//! Every activation between two steps is one u8 tensor with one scale and zero point. Each
//! `DQ → Conv → Q` becomes one integer convolution with its requantization, each
//! `DQ, DQ → Add → Q` one quantized add, which is how onnxruntime fuses the same file
//! (QLinearConv, QLinearAdd), so the results are its results.

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, NodeProto, TensorProto, tensor_proto, type_proto};

use super::kernels::{Quantization, Window};
use crate::model::proto::{
    floats, int_attribute, int64s, integers, ints_attribute, string_attribute,
};

/// An activation tensor: which buffer slot holds it, its shape (H, W, C) and quantization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    pub slot: usize,
    pub shape: (usize, usize, usize),
    pub q: Quantization,
}

/// A convolution with its integer weights and requantization parameters.
#[derive(Clone, Debug)]
pub struct Conv {
    pub group: usize,
    pub window: Window,
    /// `[m][c / group][kh][kw]`, as ONNX stores them.
    pub weights: Vec<i8>,
    /// int32 per output channel, in the accumulator's scale (`x_scale × w_scale[m]`).
    pub bias: Vec<i32>,
    /// `x_scale × w_scale[m] / y_scale`, computed as onnxruntime does.
    pub multipliers: Vec<f32>,
    /// Output bounds from a fused Relu or Clip (0..=255 without).
    pub min: u8,
    pub max: u8,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// QuantizeLinear of the float NCHW graph input.
    Quantize,
    Conv(Conv),
    Add,
    /// DequantizeLinear then ReduceMean over H and W: the graph's float output.
    Mean,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub inputs: Vec<Activation>,
    /// The step's u8 output; for `Mean`, its shape's C is the feature count.
    pub output: Activation,
}

/// The executor's program: steps in order, each reading slots written before.
#[derive(Clone, Debug)]
pub struct Program {
    pub input_shape: [usize; 4],
    pub steps: Vec<Step>,
    pub slots: usize,
}

/// A float result waiting for the QuantizeLinear that gives it its u8 form.
#[derive(Clone, Debug)]
struct Pending {
    op: Op,
    inputs: Vec<Activation>,
    shape: (usize, usize, usize),
    min_real: f32,
    max_real: f32,
}

struct Reader<'g> {
    graph: &'g GraphProto,
    initializers: HashMap<&'g str, &'g TensorProto>,
    consumers: HashMap<&'g str, usize>,
    /// u8 tensors (outputs of QuantizeLinear), by name.
    quantized: HashMap<&'g str, Activation>,
    /// Float tensors that are DequantizeLinear of a u8 tensor.
    dequantized: HashMap<&'g str, Activation>,
    /// Float tensors that are DequantizeLinear of a constant.
    constants: HashMap<&'g str, Constant>,
    pending: HashMap<&'g str, Pending>,
    steps: Vec<Step>,
    slots: usize,
    input_shape: [usize; 4],
    features: Option<&'g str>,
}

type Refusal = String;

/// The most values one activation or constant may hold (64 Mi: the largest tensor of the
/// bundled backbone holds 0.4 Mi). Every size computed from a graph's dimensions and
/// attributes stays below it, so no kernel's arithmetic on them can overflow.
const MAX_ELEMENTS: usize = 1 << 26;

/// `dims` as sizes, each at least 1, whose product is at most [`MAX_ELEMENTS`].
fn sizes(dims: &[i64], what: &str) -> Result<Vec<usize>, Refusal> {
    let mut product = 1usize;
    let mut sizes = Vec::with_capacity(dims.len());
    for &d in dims {
        let size = usize::try_from(d)
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| format!("{what} has a dimension of {d}"))?;
        product = product
            .checked_mul(size)
            .filter(|&p| p <= MAX_ELEMENTS)
            .ok_or_else(|| format!("{what} {dims:?} holds more than {MAX_ELEMENTS} values"))?;
        sizes.push(size);
    }
    Ok(sizes)
}

/// Input `i` of `node`, which it must have.
fn input(node: &NodeProto, i: usize) -> Result<&str, Refusal> {
    node.input
        .get(i)
        .filter(|name| !name.is_empty())
        .map(String::as_str)
        .ok_or_else(|| format!("it has no input {i}"))
}

/// The first output of `node`, which it must have.
fn output(node: &NodeProto) -> Result<&str, Refusal> {
    node.output
        .first()
        .filter(|name| !name.is_empty())
        .map(String::as_str)
        .ok_or_else(|| "it has no output".into())
}

/// A quantized constant: its integer values and dimensions, scales and zero points.
#[derive(Clone, Debug)]
struct Constant {
    values: Vec<i32>,
    dims: Vec<usize>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// Reads `graph`, or says which node (or what) the int8 executor does not support.
pub fn read(graph: &GraphProto) -> Result<Program, Refusal> {
    let input = graph.input.first().ok_or("the graph has no input")?;
    let input_shape = float_shape(input).ok_or("the input is not a float tensor of fixed shape")?;
    let input_dims = input_shape.map(|d| d as i64);
    sizes(&input_dims, "the input")?;
    let [n, _, _, _] = input_shape;
    if n != 1 || graph.output.len() != 1 {
        return Err("pinsight's int8 executor runs one image into one output".into());
    }
    let mut reader = Reader {
        graph,
        initializers: graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect(),
        consumers: HashMap::new(),
        quantized: HashMap::new(),
        dequantized: HashMap::new(),
        constants: HashMap::new(),
        pending: HashMap::new(),
        steps: Vec::new(),
        slots: 0,
        input_shape,
        features: None,
    };
    for node in &graph.node {
        if node.output.first().is_none_or(String::is_empty) {
            return Err(format!(
                "node {:?} ({}) has no output",
                node.name, node.op_type
            ));
        }
        for name in &node.input {
            *reader.consumers.entry(name.as_str()).or_default() += 1;
        }
    }
    for node in &graph.node {
        reader
            .node(node)
            .map_err(|why| format!("node {:?} ({}): {why}", node.name, node.op_type))?;
    }
    if let Some(name) = reader.pending.keys().next() {
        return Err(format!("{name} is never quantized"));
    }
    match reader.features {
        Some(name) if name == graph.output[0].name => {}
        _ => return Err("the graph output is not a ReduceMean over H and W".into()),
    }
    Ok(Program {
        input_shape,
        steps: reader.steps,
        slots: reader.slots,
    })
}

fn float_shape(info: &tract_onnx::pb::ValueInfoProto) -> Option<[usize; 4]> {
    let Some(type_proto::Value::TensorType(tensor)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    if tensor.elem_type != tensor_proto::DataType::Float as i32 {
        return None;
    }
    let dims: Vec<usize> = tensor
        .shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                usize::try_from(v).ok()
            }
            _ => None,
        })
        .collect::<Option<_>>()?;
    dims.try_into().ok()
}

impl<'g> Reader<'g> {
    fn node(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(format!("domain {:?} is not supported", node.domain));
        }
        match node.op_type.as_str() {
            "QuantizeLinear" => self.quantize(node),
            "DequantizeLinear" => self.dequantize(node),
            "Conv" => self.conv(node),
            "Relu" | "Clip" => self.activation(node),
            "Add" => self.add(node),
            "ReduceMean" => self.mean(node),
            other => Err(format!("{other} is not supported")),
        }
    }

    fn initializer(&self, name: &str) -> Option<&'g TensorProto> {
        self.initializers.get(name).copied()
    }

    /// A scalar scale and u8 zero point, from inputs 1 and 2 of a (De)QuantizeLinear.
    fn scalar_quantization(&self, node: &NodeProto) -> Result<Quantization, Refusal> {
        let scale = node
            .input
            .get(1)
            .and_then(|n| self.initializer(n))
            .and_then(floats)
            .filter(|s| s.len() == 1)
            .ok_or("its scale is not one constant")?[0];
        let zero = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => 0,
            Some(name) => {
                let t = self
                    .initializer(name)
                    .ok_or("its zero point is not a constant")?;
                if t.data_type != tensor_proto::DataType::Uint8 as i32 {
                    return Err("only u8 activations are supported".into());
                }
                let z = integers(t)
                    .filter(|z| z.len() == 1)
                    .ok_or("its zero point is not one value")?;
                u8::try_from(z[0]).map_err(|_| format!("its zero point {} is not a u8", z[0]))?
            }
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("scale {scale} is not a positive number"));
        }
        Ok(Quantization {
            scale,
            zero_point: zero,
        })
    }

    fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    fn quantize(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        let q = self.scalar_quantization(node)?;
        let input = input(node, 0)?;
        let output = output(node)?;
        let (op, inputs, shape, bounds) = if input == self.graph.input[0].name {
            let [_, c, h, w] = self.input_shape;
            (Op::Quantize, vec![], (h, w, c), (0, 255))
        } else {
            let pending = self
                .pending
                .remove(input)
                .ok_or("it quantizes neither the image nor a Conv or Add result")?;
            let bounds = clamp_bounds(q, pending.min_real, pending.max_real);
            (pending.op, pending.inputs, pending.shape, bounds)
        };
        let op = match op {
            Op::Conv(mut conv) => {
                let x = inputs[0].q;
                conv.multipliers = conv
                    .multipliers
                    .iter()
                    .map(|ws| x.scale * ws / q.scale)
                    .collect();
                (conv.min, conv.max) = bounds;
                Op::Conv(conv)
            }
            Op::Add if bounds != (0, 255) => {
                return Err("a Relu or Clip after Add is not supported".into());
            }
            op => op,
        };
        let activation = Activation {
            slot: self.new_slot(),
            shape,
            q,
        };
        self.quantized.insert(output, activation);
        self.steps.push(Step {
            op,
            inputs,
            output: activation,
        });
        Ok(())
    }

    fn dequantize(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        let input = input(node, 0)?;
        let output = output(node)?;
        if let Some(&activation) = self.quantized.get(input) {
            if self.scalar_quantization(node)? != activation.q {
                return Err("it dequantizes with other parameters than its QuantizeLinear".into());
            }
            self.dequantized.insert(output, activation);
            return Ok(());
        }
        let constant = self
            .initializer(input)
            .ok_or("its input is neither quantized nor constant")?;
        let values = integers(constant).ok_or("its constant is not int8 or int32")?;
        let scales = node
            .input
            .get(1)
            .and_then(|n| self.initializer(n))
            .and_then(floats)
            .ok_or("its scale is not constant")?;
        let zeros = match node.input.get(2).filter(|n| !n.is_empty()) {
            Some(name) => self
                .initializer(name)
                .and_then(integers)
                .ok_or("its zero point is not constant")?,
            None => vec![0; scales.len()],
        };
        if int_attribute(node, "axis").unwrap_or(1) != 0 && scales.len() > 1 {
            return Err("per-channel constants must be quantized along axis 0".into());
        }
        if zeros.len() != scales.len() {
            return Err("scale and zero point lengths differ".into());
        }
        if scales.is_empty() {
            return Err("its scale is empty".into());
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return Err(format!("its scale {s} is not a finite non-negative number"));
        }
        let dims = sizes(&constant.dims, "its constant")?;
        if dims.iter().product::<usize>() != values.len() {
            return Err(format!(
                "its constant holds {} values, not the {dims:?} its dimensions say",
                values.len()
            ));
        }
        self.constants.insert(
            output,
            Constant {
                values,
                dims,
                scales,
                zeros,
            },
        );
        Ok(())
    }

    fn activation_input(&self, name: &str) -> Result<Activation, Refusal> {
        self.dequantized
            .get(name)
            .copied()
            .ok_or_else(|| format!("input {name} is not a dequantized u8 tensor"))
    }

    fn single_consumer(&self, node: &NodeProto) -> Result<(), Refusal> {
        if self.consumers.get(output(node)?) != Some(&1) {
            return Err("its float output must feed exactly one node".into());
        }
        Ok(())
    }

    fn conv(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        self.single_consumer(node)?;
        let x = self.activation_input(input(node, 0)?)?;
        let Constant {
            values: weights,
            dims,
            scales: w_scales,
            zeros: w_zeros,
        } = self
            .constants
            .get(input(node, 1)?)
            .ok_or("its weights are not a dequantized constant")?
            .clone();
        if w_zeros.iter().any(|&z| z != 0) {
            return Err("weights must be symmetric (zero point 0)".into());
        }
        let [m, cg, kh, kw] = dims[..] else {
            return Err("weights are not 4-D".into());
        };
        // `dequantize` checked that the weights hold exactly m·cg·kh·kw values.
        if weights.iter().any(|&w| !(-128..=127).contains(&w)) {
            return Err("weights are not int8".into());
        }
        let (h, w, c) = x.shape;
        let group = int_attribute(node, "group").unwrap_or(1);
        let group = usize::try_from(group)
            .ok()
            .filter(|g| (1..=c).contains(g))
            .ok_or_else(|| format!("group {group} is not within 1..={c} (the input channels)"))?;
        if c != cg * group || m % group != 0 {
            return Err(format!(
                "{c} input channels do not fit weights {dims:?} in {group} groups"
            ));
        }
        if group != 1 && !(group == c && m == c) {
            return Err("grouped convolutions other than depthwise are not supported".into());
        }
        if let Some(auto_pad) = string_attribute(node, "auto_pad")
            && auto_pad != "NOTSET"
        {
            return Err(format!("auto_pad {auto_pad} is not supported"));
        }
        if ints_attribute(node, "dilations").is_some_and(|d| d != [1, 1]) {
            return Err("dilated convolutions are not supported (dilations must be [1, 1])".into());
        }
        if ints_attribute(node, "kernel_shape").is_some_and(|k| k != [kh as i64, kw as i64]) {
            return Err("kernel_shape differs from the weights".into());
        }
        let strides = ints_attribute(node, "strides").unwrap_or(vec![1, 1]);
        let pads = ints_attribute(node, "pads").unwrap_or(vec![0, 0, 0, 0]);
        let (&[sh, sw], &[top, left, bottom, right]) = (&strides[..], &pads[..]) else {
            return Err("strides or pads are not 2-D".into());
        };
        // A stride is at least 1 and at most the padded input; a pad is less than the kernel
        // along its axis (a window wholly in the padding sees no input); with the kernel
        // within the padded input, the output is at least 1 × 1 and every window inside it.
        let stride = |s: i64, padded: usize| {
            usize::try_from(s)
                .ok()
                .filter(|s| (1..=padded).contains(s))
                .ok_or_else(|| format!("stride {s} is not within 1..={padded}"))
        };
        let pad = |p: i64, kernel: usize| {
            usize::try_from(p)
                .ok()
                .filter(|&p| p < kernel)
                .ok_or_else(|| format!("pad {p} is not within 0..{kernel} (the kernel)"))
        };
        let pads = [
            pad(top, kh)?,
            pad(left, kw)?,
            pad(bottom, kh)?,
            pad(right, kw)?,
        ];
        let (padded_h, padded_w) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        if padded_h < kh || padded_w < kw {
            return Err("the kernel is larger than the padded input".into());
        }
        let window = Window {
            kernel: [kh, kw],
            stride: [stride(sh, padded_h)?, stride(sw, padded_w)?],
            pads,
        };
        let w_scales = match w_scales.len() {
            1 => vec![w_scales[0]; m],
            n if n == m => w_scales,
            _ => return Err("weight scales are neither per tensor nor per output channel".into()),
        };
        let (oh, ow) = window.output(h, w);
        // What the kernels allocate: the output, the padded input, the im2col matrix.
        let size = |n: usize| n as i64;
        sizes(&[size(oh), size(ow), size(m)], "its output")?;
        sizes(
            &[size(padded_h), size(padded_w), size(c)],
            "its padded input",
        )?;
        sizes(
            &[size(oh), size(ow), size(kh * kw * cg + 15)],
            "its im2col matrix",
        )?;
        let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => vec![0; m],
            Some(name) => {
                let Constant {
                    values,
                    scales,
                    zeros,
                    ..
                } = self
                    .constants
                    .get(name.as_str())
                    .ok_or("its bias is not a dequantized constant")?;
                if values.len() != m {
                    return Err("the bias length differs from the output channels".into());
                }
                if ![1, m].contains(&scales.len()) || ![1, m].contains(&zeros.len()) {
                    return Err("bias scales are neither per tensor nor per output channel".into());
                }
                fn param<T: Copy>(v: &[T], i: usize) -> T {
                    if v.len() == 1 { v[0] } else { v[i] }
                }
                (0..m)
                    .map(|i| {
                        let real = (values[i] - param(zeros, i)) as f32 * param(scales, i);
                        let acc_scale = x.scale() * w_scales[i];
                        // onnxruntime writes the bias in the accumulator's scale; anything
                        // else is rescaled to it.
                        if (param(scales, i) - acc_scale).abs() <= acc_scale * 1e-6
                            && param(zeros, i) == 0
                        {
                            values[i]
                        } else {
                            (real / acc_scale).round_ties_even() as i32
                        }
                    })
                    .collect()
            }
        };
        self.pending.insert(
            output(node)?,
            Pending {
                op: Op::Conv(Conv {
                    group,
                    window,
                    weights: weights.iter().map(|&w| w as i8).collect(),
                    bias,
                    // Completed with the input and output scales at the QuantizeLinear.
                    multipliers: w_scales,
                    min: 0,
                    max: 255,
                }),
                inputs: vec![x],
                shape: (oh, ow, m),
                min_real: f32::NEG_INFINITY,
                max_real: f32::INFINITY,
            },
        );
        Ok(())
    }

    fn activation(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        self.single_consumer(node)?;
        let mut pending = self
            .pending
            .remove(input(node, 0)?)
            .ok_or("it does not follow a Conv")?;
        let bound = |ix: usize| -> Result<Option<f32>, Refusal> {
            match node.input.get(ix).filter(|n| !n.is_empty()) {
                None => Ok(None),
                Some(name) => self
                    .initializer(name)
                    .and_then(floats)
                    .filter(|v| v.len() == 1)
                    .map(|v| Some(v[0]))
                    .ok_or_else(|| "its bounds are not constants".into()),
            }
        };
        let (min, max) = if node.op_type == "Relu" {
            (Some(0.0), None)
        } else {
            (bound(1)?, bound(2)?)
        };
        pending.min_real = pending.min_real.max(min.unwrap_or(f32::NEG_INFINITY));
        pending.max_real = pending.max_real.min(max.unwrap_or(f32::INFINITY));
        self.pending.insert(output(node)?, pending);
        Ok(())
    }

    fn add(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        self.single_consumer(node)?;
        let a = self.activation_input(input(node, 0)?)?;
        let b = self.activation_input(input(node, 1)?)?;
        if a.shape != b.shape {
            return Err("broadcasting Add is not supported".into());
        }
        self.pending.insert(
            output(node)?,
            Pending {
                op: Op::Add,
                inputs: vec![a, b],
                shape: a.shape,
                min_real: f32::NEG_INFINITY,
                max_real: f32::INFINITY,
            },
        );
        Ok(())
    }

    fn mean(&mut self, node: &'g NodeProto) -> Result<(), Refusal> {
        let x = self.activation_input(input(node, 0)?)?;
        let axes = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(name) => self
                .initializer(name)
                .and_then(int64s)
                .ok_or("its axes are not constant")?,
            None => ints_attribute(node, "axes").ok_or("it has no axes")?,
        };
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + 4 } else { a })
            .collect();
        axes.sort();
        if axes != [2, 3] || int_attribute(node, "keepdims") != Some(0) {
            return Err("only a mean over H and W without kept dimensions is supported".into());
        }
        let (_, _, c) = x.shape;
        self.features = Some(output(node)?);
        let output = Activation {
            slot: usize::MAX,
            shape: (1, 1, c),
            q: x.q,
        };
        self.steps.push(Step {
            op: Op::Mean,
            inputs: vec![x],
            output,
        });
        Ok(())
    }
}

impl Activation {
    fn scale(&self) -> f32 {
        self.q.scale
    }
}

/// The u8 range a fused Relu or Clip leaves: real bounds quantized with the output's
/// parameters, within 0..=255.
fn clamp_bounds(q: Quantization, min_real: f32, max_real: f32) -> (u8, u8) {
    let quantize = |real: f32| (real / q.scale).round_ties_even() + f32::from(q.zero_point);
    let min = if min_real.is_finite() {
        quantize(min_real).clamp(0.0, 255.0) as u8
    } else {
        0
    };
    let max = if max_real.is_finite() {
        quantize(max_real).clamp(0.0, 255.0) as u8
    } else {
        255
    };
    (min, max.max(min))
}

#[cfg(test)]
mod tests {
    //! The bundled int8 backbone, read as it is and with one attribute or shape made wrong:
    //! each wrong one is refused with its reason, never a panic.

    use tract_onnx::pb::{AttributeProto, ModelProto, attribute_proto::AttributeType};
    use tract_onnx::prelude::Framework;

    use super::*;

    fn backbone() -> ModelProto {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/efficientnet-lite0/backbone-int8.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .unwrap()
    }

    /// The graph of the backbone with `change` made to its first Conv (the 3 × 3, stride 2
    /// stem) and to the graph.
    fn refusal(change: impl FnOnce(&mut GraphProto, usize)) -> String {
        let mut model = backbone();
        let graph = model.graph.as_mut().unwrap();
        let conv = graph.node.iter().position(|n| n.op_type == "Conv").unwrap();
        change(graph, conv);
        let result = std::panic::catch_unwind(|| read(graph));
        match result {
            Ok(Ok(_)) => panic!("the changed graph was accepted"),
            Ok(Err(why)) => why,
            Err(_) => panic!("reading the changed graph panicked"),
        }
    }

    fn set_ints(graph: &mut GraphProto, node: usize, name: &str, ints: &[i64]) {
        let node = &mut graph.node[node];
        node.attribute.retain(|a| a.name != name);
        node.attribute.push(AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: ints.to_vec(),
            ..AttributeProto::default()
        });
    }

    fn set_int(graph: &mut GraphProto, node: usize, name: &str, value: i64) {
        let node = &mut graph.node[node];
        node.attribute.retain(|a| a.name != name);
        node.attribute.push(AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: value,
            ..AttributeProto::default()
        });
    }

    /// The initializer holding the int8 weights of the Conv `node` (behind its DequantizeLinear).
    fn weights(graph: &mut GraphProto, node: usize) -> &mut TensorProto {
        let dq_output = graph.node[node].input[1].clone();
        let dq = graph
            .node
            .iter()
            .find(|n| n.output.first() == Some(&dq_output))
            .unwrap();
        let name = dq.input[0].clone();
        graph
            .initializer
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap()
    }

    fn assert_names(why: &str, expected: &str) {
        assert!(why.contains(expected), "{why:?} should say {expected:?}");
        assert!(
            why.starts_with("node "),
            "the refusal names the node: {why}"
        );
    }

    #[test]
    fn the_bundled_backbone_is_read() {
        let program = read(backbone().graph.as_ref().unwrap()).unwrap();
        assert_eq!(program.input_shape, [1, 3, 224, 224]);
        let Op::Conv(stem) = &program.steps[1].op else {
            panic!("the stem follows the quantization")
        };
        assert_eq!(stem.window.stride, [2, 2]);
        assert_eq!(program.steps[1].output.shape, (112, 112, 32));
    }

    #[test]
    fn negative_or_zero_or_huge_strides_are_refused() {
        for (strides, says) in [
            (&[-1, 2][..], "stride -1 is not within 1..=225"),
            (&[2, 0][..], "stride 0 is not within 1..=225"),
            (&[1 << 40, 2][..], "stride 1099511627776"),
            (&[2][..], "strides or pads are not 2-D"),
        ] {
            let why = refusal(|g, conv| set_ints(g, conv, "strides", strides));
            assert_names(&why, says);
        }
    }

    #[test]
    fn negative_or_huge_pads_are_refused() {
        for (pads, says) in [
            (&[0, 0, -1, 1][..], "pad -1 is not within 0..3"),
            (
                &[0, 0, 1, 1 << 40][..],
                "pad 1099511627776 is not within 0..3",
            ),
            (&[3, 0, 1, 1][..], "pad 3 is not within 0..3"),
            (&[1, 1][..], "strides or pads are not 2-D"),
        ] {
            let why = refusal(|g, conv| set_ints(g, conv, "pads", pads));
            assert_names(&why, says);
        }
    }

    #[test]
    fn groups_that_do_not_divide_the_channels_are_refused() {
        for (group, says) in [
            (0, "group 0 is not within 1..=3"),
            (-3, "group -3 is not within 1..=3"),
            (1 << 40, "group 1099511627776"),
            (3, "input channels do not fit weights"),
        ] {
            let why = refusal(|g, conv| set_int(g, conv, "group", group));
            assert_names(&why, says);
        }
    }

    #[test]
    fn dilations_and_kernel_shapes_other_than_the_weights_are_refused() {
        let why = refusal(|g, conv| set_ints(g, conv, "dilations", &[2, 2]));
        assert_names(&why, "dilated convolutions are not supported");
        let why = refusal(|g, conv| set_ints(g, conv, "dilations", &[1]));
        assert_names(&why, "dilations must be [1, 1]");
        let why = refusal(|g, conv| set_ints(g, conv, "kernel_shape", &[-3, 3]));
        assert_names(&why, "kernel_shape differs from the weights");
    }

    #[test]
    fn weights_whose_shape_does_not_match_are_refused() {
        // Dimensions that do not multiply to the values held.
        let why = refusal(|g, conv| weights(g, conv).dims[0] += 1);
        assert_names(&why, "its constant holds 864 values, not the [33, 3, 3, 3]");
        // As many values, but shaped for other input channels.
        let why = refusal(|g, conv| weights(g, conv).dims = vec![32, 9, 3, 1]);
        assert_names(&why, "3 input channels do not fit weights [32, 9, 3, 1]");
        // A negative or zero dimension.
        let why = refusal(|g, conv| weights(g, conv).dims[2] = -3);
        assert_names(&why, "its constant has a dimension of -3");
        let why = refusal(|g, conv| weights(g, conv).dims = vec![32, 3, 3, 3, 0]);
        assert_names(&why, "its constant has a dimension of 0");
    }

    #[test]
    fn input_shapes_out_of_range_are_refused() {
        use tract_onnx::pb::tensor_shape_proto::dimension::Value;
        for (dims, says) in [
            ([1, 3, 0, 224], "the input has a dimension of 0"),
            ([1, 3, 1 << 20, 1 << 20], "holds more than 67108864 values"),
        ] {
            let why = refusal(|g, _| {
                let Some(type_proto::Value::TensorType(tensor)) =
                    g.input[0].r#type.as_mut().unwrap().value.as_mut()
                else {
                    unreachable!()
                };
                for (dim, value) in tensor.shape.as_mut().unwrap().dim.iter_mut().zip(dims) {
                    dim.value = Some(Value::DimValue(value));
                }
            });
            assert!(why.contains(says), "{why:?} should say {says:?}");
        }
    }

    #[test]
    fn nodes_missing_inputs_or_outputs_are_refused() {
        let why = refusal(|g, conv| g.node[conv].input.truncate(1));
        assert_names(&why, "it has no input 1");
        let why = refusal(|g, conv| g.node[conv].input.clear());
        assert_names(&why, "it has no input 0");
        let why = refusal(|g, conv| g.node[conv].output.clear());
        assert_names(&why, "has no output");
        // The QuantizeLinear of the image, with no input at all.
        let why = refusal(|g, _| g.node[0].input.clear());
        assert!(why.contains("QuantizeLinear"), "{why}");
    }
}
