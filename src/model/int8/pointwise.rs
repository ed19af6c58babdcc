//! Pointwise (1 × 1) convolution — and any convolution after im2col — as an int8 matrix product:
//! on aarch64's and x86_64's SIMD kernel sets pinsight's own kernels (`gemm_neon.rs`,
//! `gemm_x86.rs`: no packing, requantization fused), elsewhere (the portable set, armv7)
//! tract-linalg's kernels with the weights packed once at load.
//!
//! The rest of these notes are about the tract-linalg path.
//! With the output channels as the matrix rows and the pixels as its columns,
//! `acc[pixel][m] = Σ_k w[m][k] · (x[pixel][k] − x_zero)`. tract's int8 kernels take i8 on both
//! sides, so the u8 activations are packed as `x − 128` (a flip of the top bit) and the
//! difference, `(128 − x_zero) · Σ_k w[m][k]`, is folded into the per-row bias the kernel adds.
//! The kernel stores int32 for a block of pixels small enough to stay in cache, and one pass
//! requantizes the block to u8 with a scale per channel, which tract's fused epilogue cannot do
//! (its requantization takes one scale for the whole matrix).

use std::sync::Arc;

use anyhow::Context;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::ensure;
use tract_onnx::tract_core::tract_data::internal::Blob;
use tract_onnx::tract_core::tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputFormat, MMMInputValue, MatMatMul,
    PackedExoticFact, Query, ScratchSpace,
};
use tract_onnx::tract_core::tract_linalg::pack::{PackedFormat, PackedI8K4};
use tract_onnx::tract_core::tract_linalg::{BinOp, MmmDispatch};

use super::kernels::Requantizer;
use crate::model::cpu::KernelSet;
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
use crate::model::threads;

/// How the kernel wants the activations (its B operand) laid out in each panel of `r` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `panel[k * r + lane]`, each panel `panel_bytes` long (tract's `PackedFormat`).
    KOuter { r: usize, panel_bytes: usize },
    /// `panel[(k / 4) * r * 4 + lane * 4 + k % 4]`: four consecutive k of a pixel together,
    /// for dot-product instructions (tract's `PackedI8K4`).
    K4 { r: usize, panel_bytes: usize },
}

impl Layout {
    fn of(format: &dyn MMMInputFormat, k: usize) -> Option<Layout> {
        if let Some(f) = format.downcast_ref::<PackedFormat>() {
            (f.dt == DatumType::I8).then(|| Layout::KOuter {
                r: f.r,
                panel_bytes: f.single_panel_len(k),
            })
        } else {
            format.downcast_ref::<PackedI8K4>().map(|f| Layout::K4 {
                r: f.r,
                panel_bytes: f.single_panel_len(k),
            })
        }
    }

    fn r(&self) -> usize {
        match *self {
            Layout::KOuter { r, .. } | Layout::K4 { r, .. } => r,
        }
    }

    fn panel_bytes(&self) -> usize {
        match *self {
            Layout::KOuter { panel_bytes, .. } | Layout::K4 { panel_bytes, .. } => panel_bytes,
        }
    }
}

/// A pointwise convolution (or a matrix product) `m` outputs × `k` inputs per pixel.
pub struct PointwiseConv {
    m: usize,
    k: usize,
    requant: Requantizer,
    /// The kernel set the requantization runs on.
    kernels: KernelSet,
    backend: Backend,
}

enum Backend {
    Tract(TractGemm),
    #[cfg(target_arch = "aarch64")]
    Neon(super::gemm_neon::NeonGemm),
    #[cfg(target_arch = "x86_64")]
    X86(super::gemm_x86::X86Gemm),
}

/// The matrix product on a tract-linalg kernel.
struct TractGemm {
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    weights: Box<dyn MMMInputValue>,
    /// The bias with the activation offset folded in, int32 per output channel.
    bias: Tensor,
    layout: Layout,
    /// Pixels per kernel call: the int32 block stays in cache between the kernel and the
    /// requantization.
    block: usize,
}

impl std::fmt::Debug for PointwiseConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PointwiseConv {}x{} on {}",
            self.m,
            self.k,
            self.kernel_name()
        )
    }
}

/// Reusable buffers of one [`PointwiseConv`] (on tract-linalg: the packed activations of a
/// block, its int32 results, and the kernel's own scratch).
pub struct PointwiseScratch {
    tract: Option<TractScratch>,
}

struct TractScratch {
    packed: EagerPackedInput,
    acc: Tensor,
    mmm: Box<dyn ScratchSpace>,
}

impl PointwiseConv {
    /// `weights` row-major `[m][k]`; `bias` int32 per output channel in the accumulator's scale;
    /// `x_zero` the input's zero point; `pixels` how many pixels a run will see (used to pick
    /// the kernel); `kernels` the set it runs on (the NEON and AVX2 sets run pinsight's own
    /// matrix kernels, the portable set tract-linalg's).
    pub fn new(
        weights: &[i8],
        bias: &[i32],
        k: usize,
        x_zero: u8,
        requant: Requantizer,
        pixels: usize,
        kernels: KernelSet,
    ) -> TractResult<PointwiseConv> {
        kernels.assert_runs_here();
        #[cfg(target_arch = "aarch64")]
        if matches!(kernels, KernelSet::Neon | KernelSet::NeonDotprod) {
            let m = PointwiseConv::check(weights, bias, k, &requant)?;
            let offset = offset_bias(weights, bias, k, x_zero);
            let dot = kernels == KernelSet::NeonDotprod;
            if let Some(gemm) =
                super::gemm_neon::NeonGemm::new(weights, &offset, k, requant.scales(), dot)
            {
                return Ok(PointwiseConv {
                    m,
                    k,
                    requant,
                    kernels,
                    backend: Backend::Neon(gemm),
                });
            }
        }
        #[cfg(target_arch = "x86_64")]
        if kernels.avx2() {
            let m = PointwiseConv::check(weights, bias, k, &requant)?;
            // The kernels multiply the activations as they are.
            let bias = fold_offset(weights, bias, k, -i32::from(x_zero));
            let gemm = super::gemm_x86::X86Gemm::new(weights, &bias, k, requant.scales(), kernels);
            return Ok(PointwiseConv {
                m,
                k,
                requant,
                kernels,
                backend: Backend::X86(gemm),
            });
        }
        PointwiseConv::on_tract(weights, bias, k, x_zero, requant, pixels, kernels)
    }

    /// As [`Self::new`], the matrix product on a tract-linalg kernel whatever the target.
    pub fn on_tract(
        weights: &[i8],
        bias: &[i32],
        k: usize,
        x_zero: u8,
        requant: Requantizer,
        pixels: usize,
        kernels: KernelSet,
    ) -> TractResult<PointwiseConv> {
        kernels.assert_runs_here();
        let m = PointwiseConv::check(weights, bias, k, &requant)?;
        let (mmm, packing, layout) = pick_kernel(m, k, pixels)?;
        let a_format = &mmm.packings()[packing].0;
        let w = Tensor::from_shape(&[m, k], weights)?;
        let packed_weights = a_format.prepare_one(&w, 1, 0)?;
        // About 64 KiB of int32 results a block, whole panels of pixels.
        let r = layout.r();
        let block = ((16 * 1024 / m.max(1)).max(r) / r * r).min(pixels.div_ceil(r) * r);
        Ok(PointwiseConv {
            m,
            k,
            requant,
            kernels,
            backend: Backend::Tract(TractGemm {
                mmm,
                packing,
                weights: packed_weights,
                bias: tensor1(&offset_bias(weights, bias, k, x_zero)),
                layout,
                block: block.max(r),
            }),
        })
    }

    /// Checks the shapes; returns the number of outputs.
    fn check(weights: &[i8], bias: &[i32], k: usize, requant: &Requantizer) -> TractResult<usize> {
        let m = bias.len();
        ensure!(
            k > 0 && weights.len() == m * k,
            "pointwise weights are not {m}x{k}"
        );
        ensure!(
            requant.channels() == m,
            "pointwise requantizer has the wrong length"
        );
        Ok(m)
    }

    pub fn outputs(&self) -> usize {
        self.m
    }

    pub fn inputs(&self) -> usize {
        self.k
    }

    /// The matrix kernel this layer runs.
    pub fn kernel_name(&self) -> &str {
        match &self.backend {
            Backend::Tract(t) => t.mmm.name(),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon(g) => g.name(),
            #[cfg(target_arch = "x86_64")]
            Backend::X86(g) => g.name(),
        }
    }

    pub fn scratch(&self) -> PointwiseScratch {
        PointwiseScratch {
            tract: match &self.backend {
                Backend::Tract(t) => Some(t.scratch(self.k, self.m)),
                #[cfg(target_arch = "aarch64")]
                Backend::Neon(_) => None,
                #[cfg(target_arch = "x86_64")]
                Backend::X86(_) => None,
            },
        }
    }

    /// `input` is `pixels × k` (u8 NHWC), `output` `pixels × m`.
    pub fn run(
        &self,
        input: &[u8],
        output: &mut [u8],
        scratch: &mut PointwiseScratch,
    ) -> TractResult<()> {
        let pixels = input.len() / self.k;
        ensure!(
            input.len() == pixels * self.k,
            "pointwise input is not a whole number of pixels"
        );
        ensure!(output.len() == pixels * self.m, "pointwise output length");
        match &self.backend {
            Backend::Tract(t) => {
                let scratch = scratch
                    .tract
                    .as_mut()
                    .context("pointwise scratch for another kernel")?;
                t.run(self, input, output, scratch)
            }
            #[cfg(target_arch = "aarch64")]
            Backend::Neon(g) => {
                self.split(input, output, |input, output| {
                    g.run(input, output, &self.requant)
                });
                Ok(())
            }
            #[cfg(target_arch = "x86_64")]
            Backend::X86(g) => {
                self.split(input, output, |input, output| {
                    g.run(input, output, &self.requant)
                });
                Ok(())
            }
        }
    }
}

impl PointwiseConv {
    /// Runs `gemm` on parts of the pixels, over the threads (each pixel computed as on one).
    #[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
    fn split(&self, input: &[u8], output: &mut [u8], gemm: impl Fn(&[u8], &mut [u8]) + Sync) {
        let (m, k) = (self.m, self.k);
        let pixels = input.len() / k;
        let part = threads::part_size(pixels, pixels * k * m, 4);
        threads::for_each_chunk(output, part * m, |i, output| {
            let first = i * part;
            let n = output.len() / m;
            gemm(&input[first * k..(first + n) * k], output)
        });
    }
}

/// The number of pixels in a matrix kernel's `input` (`pixels × k` u8) and `output`
/// (`pixels × m`). Panics unless both hold whole pixels, and the same number.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
pub(super) fn whole_pixels(input: &[u8], output: &[u8], k: usize, m: usize) -> usize {
    let pixels = input.len() / k;
    assert!(
        input.len() == pixels * k && output.len() == pixels * m,
        "matrix kernel: {} input and {} output bytes are not whole pixels of {k} and {m}",
        input.len(),
        output.len()
    );
    pixels
}

/// The bias plus `(128 − x_zero) · Σ_k w[m][k]`: for kernels that multiply `x − 128`.
fn offset_bias(weights: &[i8], bias: &[i32], k: usize, x_zero: u8) -> Vec<i32> {
    fold_offset(weights, bias, k, 128 - i32::from(x_zero))
}

/// The bias plus `offset · Σ_k w[m][k]`.
fn fold_offset(weights: &[i8], bias: &[i32], k: usize, offset: i32) -> Vec<i32> {
    bias.iter()
        .zip(weights.chunks_exact(k))
        .map(|(&b, row)| b + offset * row.iter().map(|&w| i32::from(w)).sum::<i32>())
        .collect()
}

impl TractGemm {
    fn scratch(&self, k: usize, m: usize) -> TractScratch {
        let format = self.mmm.packings()[self.packing].1.clone();
        let panels = self.block / self.layout.r();
        // SAFETY: the blob's bytes are uninitialised until `fill(0)` writes every one of them,
        // before anything reads them; 64 is a power of two, the alignment the call requires.
        let blob = unsafe {
            let mut blob = Blob::new_for_size_and_align(panels * self.layout.panel_bytes(), 64);
            blob.as_bytes_mut().fill(0);
            blob
        };
        TractScratch {
            packed: EagerPackedInput {
                fact: PackedExoticFact {
                    format,
                    mn: self.block.to_dim(),
                    k,
                },
                packed: Arc::new(blob),
                panel_bytes: self.layout.panel_bytes(),
                mn: self.block,
            },
            acc: Tensor::zero::<i32>(&[self.block * m]).expect("a small int32 tensor"),
            // SAFETY: this scratch space is used only with `self.mmm`, the kernel that made it
            // (`TractGemm::run` passes it to `self.mmm.run_with_scratch_space`).
            mmm: unsafe { self.mmm.allocate_scratch_space() },
        }
    }

    fn run(
        &self,
        conv: &PointwiseConv,
        input: &[u8],
        output: &mut [u8],
        scratch: &mut TractScratch,
    ) -> TractResult<()> {
        let (m, k) = (conv.m, conv.k);
        let pixels = input.len() / k;
        let mut first = 0;
        while first < pixels {
            let n = self.block.min(pixels - first);
            self.pack(&input[first * k..(first + n) * k], k, n, scratch)?;
            scratch.packed.mn = n;
            scratch.packed.fact.mn = n.to_dim();
            // What the kernel reads and writes through raw pointers stays inside of.
            assert!(n <= self.block, "pointwise block");
            assert!(
                scratch.acc.len() >= self.block * m
                    && scratch.acc.datum_type() == DatumType::I32
                    && scratch.packed.packed.len()
                        >= n.div_ceil(self.layout.r()) * self.layout.panel_bytes(),
                "pointwise scratch too small for a block"
            );
            // SAFETY: the store writes `m × n` int32 at row stride 4 and column stride `m·4`
            // bytes into `scratch.acc`, which holds `block·m >= n·m` int32 (asserted above);
            // the kernel reads the weights packed for `m × k` by its own packing (`new`) and
            // `n` pixels of `k` packed in `scratch.packed` (`pack` wrote `n` lanes into panels
            // the blob holds, asserted above); `scratch.mmm` was made by `self.mmm`.
            unsafe {
                let store = self
                    .mmm
                    .c_from_data_and_strides(4, 1, m as isize)
                    .wrap(&scratch.acc.view());
                self.mmm.run_with_scratch_space(
                    m,
                    n,
                    &mut *scratch.mmm,
                    &[
                        FusedSpec::AddMatMul {
                            a: AsInputValue::Borrowed(&*self.weights),
                            b: AsInputValue::Borrowed(&scratch.packed),
                            packing: self.packing,
                        },
                        FusedSpec::BinPerRow(self.bias.view(), BinOp::Add),
                        FusedSpec::Store(store),
                    ],
                )?;
            }
            let acc = scratch.acc.try_as_plain_ram()?.as_slice::<i32>()?;
            conv.requant.run_pixels(
                &acc[..n * m],
                &mut output[first * m..(first + n) * m],
                conv.kernels,
            );
            first += n;
        }
        Ok(())
    }

    /// Packs `n` pixels of `k` u8 values into the kernel's panels as i8 (`x − 128`).
    fn pack(
        &self,
        input: &[u8],
        k: usize,
        n: usize,
        scratch: &mut TractScratch,
    ) -> TractResult<()> {
        let packed = Arc::get_mut(&mut scratch.packed.packed)
            .context("the packed activations are shared")?
            .as_bytes_mut();
        match self.layout {
            Layout::K4 { r, panel_bytes } => {
                let blocks = k / 4;
                for (p, panel) in packed
                    .chunks_exact_mut(panel_bytes)
                    .take(n.div_ceil(r))
                    .enumerate()
                {
                    let lanes = r.min(n - p * r);
                    for lane in 0..lanes {
                        let pixel = &input[(p * r + lane) * k..][..k];
                        for b in 0..blocks {
                            let x = u32::from_ne_bytes(pixel[b * 4..b * 4 + 4].try_into().unwrap());
                            let at = b * r * 4 + lane * 4;
                            panel[at..at + 4].copy_from_slice(&(x ^ 0x8080_8080).to_ne_bytes());
                        }
                        for kk in blocks * 4..k {
                            panel[blocks * r * 4 + lane * 4 + kk % 4] = pixel[kk] ^ 0x80;
                        }
                    }
                }
            }
            Layout::KOuter { r, panel_bytes } => {
                for (p, panel) in packed
                    .chunks_exact_mut(panel_bytes)
                    .take(n.div_ceil(r))
                    .enumerate()
                {
                    let lanes = r.min(n - p * r);
                    for lane in 0..lanes {
                        let pixel = &input[(p * r + lane) * k..][..k];
                        for (kk, &x) in pixel.iter().enumerate() {
                            panel[kk * r + lane] = x ^ 0x80;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The kernel tract-linalg would pick for an i8 × i8 → i32 product of this shape, among those
/// whose activation packing [`PointwiseConv::pack`] can write.
fn pick_kernel(m: usize, k: usize, n: usize) -> TractResult<(Box<dyn MatMatMul>, usize, Layout)> {
    let dispatch = MmmDispatch::native();
    let query = Query {
        weight: DatumType::I8.into(),
        activation: DatumType::I8,
        accumulators: tvec!(DatumType::I32),
        store: Some(DatumType::I32),
        allow_extractor: false,
        m: Some(m),
        k: Some(k),
        n: Some(n),
    };
    let usable = |(mmm, packing, _): &(Box<dyn MatMatMul>, usize, _)| {
        Layout::of(&*mmm.packings()[*packing].1, k)
    };
    // tract-linalg 0.23's AMX int8 kernels (`avx512amx_mmm_i32_*`) crashed with SIGSEGV in
    // this project's kernel tests when two threads ran them at once, on an AMX-capable x86
    // host: pinsight never picks them.
    let trusted = |mmm: &dyn MatMatMul| !mmm.name().contains("amx");
    if let Some(choice) = dispatch.pick(&query)
        && trusted(&*choice.0)
        && let Some(layout) = usable(&choice)
    {
        return Ok((choice.0, choice.1, layout));
    }
    dispatch
        .suitable(&query)
        .into_iter()
        .filter(|choice| trusted(&*choice.0))
        .filter_map(|choice| usable(&choice).map(|layout| (choice.0, choice.1, layout)))
        .max_by_key(|(mmm, _, _)| (mmm.arch().is_some(), mmm.mr() * mmm.nr()))
        .context("tract-linalg offers no int8 matrix kernel for this CPU")
}
