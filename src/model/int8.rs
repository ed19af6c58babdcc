//! pinsight's int8 executor: runs a QDQ-quantized convolutional backbone (EfficientNet-Lite,
//! MobileNet and kin, as onnxruntime's `quantize_static` writes them) on integer kernels,
//! activations kept as u8 from the first convolution to the pooled features.
//!
//! # Why a small executor of its own rather than custom ops inside tract
//! tract 0.23 runs such a file by dequantizing everything to float; its integer path
//! (QLinearConv) sends depthwise convolutions through im2col as one tiny matrix product per
//! channel and requantizes per channel in separate passes (see the module docs of
//! [`pointwise`]). Fixing that inside tract means custom ops plus a rewrite pass that keeps
//! tract's axis and layout machinery (NCHW everywhere, batch axis, patch/declutter rules) happy,
//! while every op still round-trips through `TValue`s, and its optimizer (about 100 ms of load
//! time for this model) still runs. The family of graphs pinsight ships is tiny — a chain of
//! `Q → DQ → Conv → Q` with residual adds and a final mean — so reading it directly
//! (`graph.rs`) into a list of steps on NHWC u8 buffers is less code, loads in milliseconds,
//! and leaves nothing between two kernels but the kernels. What it cannot read it refuses with
//! the reason, and pinsight falls back on tract.
//!
//! Pointwise convolutions (88% of the arithmetic) are matrix products ([`pointwise`]): on the
//! SIMD kernel sets pinsight's own, elsewhere tract-linalg's int8 matrix kernels on weights
//! packed at load. Depthwise convolutions are direct kernels here ([`depthwise`]); the rest is
//! element-wise ([`kernels`]).
//!
//! Which SIMD kernels run (AVX2 with or without VNNI, NEON with or without SDOT, or none) is the
//! [`KernelSet`] the executor is built with, picked from the CPU features probed once
//! ([`super::cpu`]) and passed down to every kernel; no kernel probes the CPU itself.

pub mod depthwise;
#[cfg(target_arch = "aarch64")]
mod gemm_neon;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
mod graph;
pub mod kernels;
pub mod pointwise;

use std::sync::Mutex;

use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::TractResult;
use tract_onnx::tract_core::internal::ensure;

pub use depthwise::{DepthwiseConv, DepthwiseScratch};
pub use kernels::{Quantization, QuantizedAdd, Requantizer, Window};
pub use pointwise::{PointwiseConv, PointwiseScratch};

use super::cpu::KernelSet;
use graph::{Activation, Op, Program};

/// What one step computes.
enum Kernel {
    /// The float NCHW image to u8 NHWC.
    Quantize(Quantization),
    Pointwise(PointwiseConv),
    Depthwise(DepthwiseConv),
    /// Any other convolution: im2col, then a matrix product.
    General {
        window: Window,
        pad: u8,
        conv: PointwiseConv,
    },
    Add(QuantizedAdd),
    /// The pooled float features.
    Mean(Quantization),
}

struct Step {
    kernel: Kernel,
    /// (buffer, H × W × C) of each input.
    inputs: Vec<(usize, (usize, usize, usize))>,
    /// (buffer, length) of the output; unused by `Mean`.
    output: (usize, usize),
}

/// A backbone loaded into the int8 executor: image tensor in, pooled features out.
pub(crate) struct Int8Backbone {
    steps: Vec<Step>,
    input_shape: [usize; 4],
    feature_len: usize,
    buffer_sizes: Vec<usize>,
    kernels: KernelSet,
    /// Each 0–255 value of an RGB crop as the first step quantizes it, normalised first
    /// ([`crate::preprocess::normalise`]): the same integers as the float tensor gives.
    input_table: [u8; 256],
    scratch: Mutex<Scratch>,
}

/// What [`Int8Backbone`] is given: the float NCHW tensor, or the 224 × 224 RGB crop (HWC
/// bytes) it is made from, which goes to u8 NHWC in one table lookup a value.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    Tensor(&'a [f32]),
    Rgb(&'a [u8]),
}

#[derive(Default)]
struct Scratch {
    buffers: Vec<Vec<u8>>,
    pointwise: Vec<Option<PointwiseScratch>>,
    depthwise: DepthwiseScratch,
    columns: Vec<u8>,
    padded: Vec<u8>,
}

impl Int8Backbone {
    /// Reads `graph` for running on `kernels`; `Err` says why the int8 executor cannot run it.
    /// Panics if this CPU cannot execute `kernels`.
    pub(crate) fn new(graph: &GraphProto, kernels: KernelSet) -> Result<Int8Backbone, String> {
        kernels.assert_runs_here();
        let program = graph::read(graph)?;
        Int8Backbone::compile(program, kernels).map_err(|e| format!("{e:#}"))
    }

    fn compile(program: Program, kernels: KernelSet) -> TractResult<Int8Backbone> {
        let buffers = assign_buffers(&program);
        let mut buffer_sizes = vec![0usize; buffers.iter().flatten().max().map_or(0, |&b| b + 1)];
        let mut steps = Vec::with_capacity(program.steps.len());
        let mut feature_len = 0;
        let mut input_table = [0u8; 256];
        let [_, c, h, w] = program.input_shape;
        for step in &program.steps {
            let (oh, ow, oc) = step.output.shape;
            let kernel = match &step.op {
                Op::Quantize => {
                    for (v, q8) in (0..=255u8).zip(input_table.iter_mut()) {
                        *q8 = kernels::quantize_one(crate::preprocess::normalise(v), step.output.q);
                    }
                    Kernel::Quantize(step.output.q)
                }
                Op::Add => Kernel::Add(QuantizedAdd {
                    a: step.inputs[0].q,
                    b: step.inputs[1].q,
                    y: step.output.q,
                }),
                Op::Mean => {
                    feature_len = oc;
                    Kernel::Mean(step.inputs[0].q)
                }
                Op::Conv(conv) => compile_conv(conv, &step.inputs[0], &step.output, kernels)?,
            };
            let inputs = step
                .inputs
                .iter()
                .map(|a| (buffers[a.slot].expect("an input has a buffer"), a.shape))
                .collect();
            let output = match step.op {
                Op::Mean => (usize::MAX, 0),
                _ => {
                    let buffer = buffers[step.output.slot].expect("an output has a buffer");
                    let len = oh * ow * oc;
                    buffer_sizes[buffer] = buffer_sizes[buffer].max(len);
                    (buffer, len)
                }
            };
            steps.push(Step {
                kernel,
                inputs,
                output,
            });
        }
        let scratch = Scratch {
            buffers: buffer_sizes.iter().map(|&len| vec![0u8; len]).collect(),
            pointwise: steps
                .iter()
                .map(|s| match &s.kernel {
                    Kernel::Pointwise(conv) | Kernel::General { conv, .. } => Some(conv.scratch()),
                    _ => None,
                })
                .collect(),
            ..Scratch::default()
        };
        log::debug!(
            "int8 executor: {} steps, {} activation buffers ({} KiB); {kernels} kernels, matrix kernels {:?}",
            steps.len(),
            buffer_sizes.len(),
            buffer_sizes.iter().sum::<usize>() / 1024,
            steps
                .iter()
                .filter_map(|s| match &s.kernel {
                    Kernel::Pointwise(conv) | Kernel::General { conv, .. } =>
                        Some(conv.kernel_name()),
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>()
        );
        Ok(Int8Backbone {
            steps,
            input_shape: [1, c, h, w],
            feature_len,
            buffer_sizes,
            kernels,
            input_table,
            scratch: Mutex::new(scratch),
        })
    }

    pub(crate) fn input_shape(&self) -> [usize; 4] {
        self.input_shape
    }

    pub(crate) fn feature_len(&self) -> usize {
        self.feature_len
    }

    pub(crate) fn kernels(&self) -> KernelSet {
        self.kernels
    }

    /// The pooled features of one float NCHW image, or of the RGB crop it is made from.
    pub(crate) fn features(&self, image: Input) -> TractResult<Vec<f32>> {
        let [_, c, h, w] = self.input_shape;
        match image {
            Input::Tensor(values) => ensure!(values.len() == c * h * w, "input tensor length"),
            Input::Rgb(bytes) => ensure!(c == 3 && bytes.len() == c * h * w, "RGB crop size"),
        }
        crate::model::threads::install(|| self.features_here(image))
    }

    fn features_here(&self, image: Input) -> TractResult<Vec<f32>> {
        let mut features = vec![0f32; self.feature_len];
        let mut guard = self
            .scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let scratch = &mut *guard;
        debug_assert_eq!(scratch.buffers.len(), self.buffer_sizes.len());
        for (ix, step) in self.steps.iter().enumerate() {
            let (out_buffer, out_len) = step.output;
            let mut output = match step.kernel {
                Kernel::Mean(_) => Vec::new(),
                _ => std::mem::take(&mut scratch.buffers[out_buffer]),
            };
            let out = if output.is_empty() {
                &mut [][..]
            } else {
                &mut output[..out_len]
            };
            let input = |i: usize| {
                let (buffer, (h, w, c)) = step.inputs[i];
                &scratch.buffers[buffer][..h * w * c]
            };
            match &step.kernel {
                Kernel::Quantize(q) => match image {
                    Input::Tensor(values) => kernels::quantize_nchw_to_nhwc(
                        values,
                        self.input_shape[1],
                        *q,
                        out,
                        self.kernels,
                    ),
                    // RGB HWC bytes are already NHWC.
                    Input::Rgb(bytes) => {
                        for (q8, &v) in out.iter_mut().zip(bytes) {
                            *q8 = self.input_table[usize::from(v)];
                        }
                    }
                },
                Kernel::Pointwise(conv) => {
                    let pointwise = scratch.pointwise[ix].as_mut().expect("pointwise scratch");
                    conv.run(input(0), out, pointwise)?
                }
                Kernel::Depthwise(conv) => {
                    let (h, w, _) = step.inputs[0].1;
                    let (buffer, _) = step.inputs[0];
                    conv.run(
                        &scratch.buffers[buffer][..h * w * conv.channels()],
                        (h, w),
                        out,
                        &mut scratch.depthwise,
                        self.kernels,
                    )
                }
                Kernel::General { window, pad, conv } => {
                    let (buffer, shape) = step.inputs[0];
                    let (oh, ow) = window.output(shape.0, shape.1);
                    let columns = &mut scratch.columns;
                    columns.resize(oh * ow * conv.inputs(), 0);
                    let (h, w, c) = shape;
                    kernels::im2col(
                        &scratch.buffers[buffer][..h * w * c],
                        shape,
                        window,
                        *pad,
                        &mut scratch.padded,
                        columns,
                    );
                    let pointwise = scratch.pointwise[ix].as_mut().expect("pointwise scratch");
                    conv.run(columns, out, pointwise)?
                }
                Kernel::Add(add) => add.run(input(0), input(1), out, self.kernels),
                Kernel::Mean(q) => {
                    let (_, (_, _, c)) = step.inputs[0];
                    kernels::mean_nhwc(input(0), c, *q, &mut features, self.kernels)
                }
            }
            if !output.is_empty() {
                scratch.buffers[out_buffer] = output;
            }
        }
        Ok(features)
    }
}

fn compile_conv(
    conv: &graph::Conv,
    x: &Activation,
    y: &Activation,
    kernels: KernelSet,
) -> TractResult<Kernel> {
    let (h, w, c) = x.shape;
    let (oh, ow, m) = y.shape;
    let requant = Requantizer::new(conv.multipliers.clone(), y.q.zero_point, conv.min, conv.max);
    let [kh, kw] = conv.window.kernel;
    if conv.group > 1 {
        return Ok(Kernel::Depthwise(DepthwiseConv::new(
            conv.window,
            &conv.weights,
            &conv.bias,
            x.q.zero_point,
            requant,
        )));
    }
    let pointwise = conv.window
        == Window {
            kernel: [1, 1],
            stride: [1, 1],
            pads: [0; 4],
        };
    if pointwise {
        return Ok(Kernel::Pointwise(PointwiseConv::new(
            &conv.weights,
            &conv.bias,
            c,
            x.q.zero_point,
            requant,
            h * w,
            kernels,
        )?));
    }
    // im2col rows are (ky, kx, c), padded to a multiple of 16 bytes that meet zero weights
    // (whole steps for the matrix kernels); ONNX weights are (c, ky, kx) within each output
    // channel.
    let k = (kh * kw * c).next_multiple_of(16);
    let mut weights = vec![0i8; m * k];
    for o in 0..m {
        for ch in 0..c {
            for t in 0..kh * kw {
                weights[o * k + t * c + ch] = conv.weights[(o * c + ch) * kh * kw + t];
            }
        }
    }
    Ok(Kernel::General {
        window: conv.window,
        pad: x.q.zero_point,
        conv: PointwiseConv::new(
            &weights,
            &conv.bias,
            k,
            x.q.zero_point,
            requant,
            oh * ow,
            kernels,
        )?,
    })
}

/// Maps each slot to a buffer, reusing a buffer once every reader of its slot has run. A
/// step's output never shares a buffer with its inputs.
fn assign_buffers(program: &Program) -> Vec<Option<usize>> {
    let mut last_read = vec![0usize; program.slots];
    for (ix, step) in program.steps.iter().enumerate() {
        for input in &step.inputs {
            last_read[input.slot] = ix;
        }
    }
    let mut assigned: Vec<Option<usize>> = vec![None; program.slots];
    let mut free: Vec<usize> = Vec::new();
    let mut count = 0;
    for (ix, step) in program.steps.iter().enumerate() {
        if !matches!(step.op, Op::Mean) {
            let buffer = free.pop().unwrap_or_else(|| {
                count += 1;
                count - 1
            });
            assigned[step.output.slot] = Some(buffer);
        }
        for input in &step.inputs {
            if last_read[input.slot] == ix
                && let Some(buffer) = assigned[input.slot]
                && !free.contains(&buffer)
            {
                free.push(buffer);
            }
        }
    }
    assigned
}
