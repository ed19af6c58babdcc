//! The pointwise convolution's matrix product on aarch64, written for this layout: activations
//! stay NHWC (each pixel's k values contiguous) and the weights row-major, both read 16 values
//! of k at a time, so nothing is packed per inference, and the requantization runs on each
//! tile while it is still in registers.
//!
//! Each output is a dot product of two 16-byte vectors per step of k:
//! - without the dot-product extension (Cortex-A72, Raspberry Pi 4): SMULL + SMLAL2 multiply
//!   two halves into eight i16 lanes, each the sum of two products, and SADALP adds them into
//!   int32: 16 multiply-accumulates in 3 instructions. Two products of an i8 weight in −127..=127
//!   and an activation in −128..=127 cannot overflow i16 (2 × 127 × 128 = 32 512), which is why
//!   the weights must not hold −128 ([`NeonGemm::new`] refuses them);
//! - with it (Cortex-A76 and later, Jetson Orin): SDOT, 16 in one instruction.
//!
//! A tile is 4 output channels × 4 pixels (16 int32x4 accumulators). Activations are u8 and
//! enter as `x − 128` (an EOR of the top bit) — the caller folds the offset into the bias.

use std::arch::aarch64::*;

use super::kernels::Requantizer;
use super::pointwise::whole_pixels;
use crate::model::cpu::KernelSet;

/// Output channels a weight block holds: 4 × k values stay in L1 across the pixels they meet.
const L1_WEIGHT_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub(super) struct NeonGemm {
    m: usize,
    k: usize,
    /// `k` rounded up to 16.
    k16: usize,
    /// `[m rounded up to 4][k16]`, zero padded.
    weights: Vec<i8>,
    /// Bias per output channel (with the activation offset folded in), padded to a multiple
    /// of 4.
    bias: Vec<i32>,
    scales: Vec<f32>,
    dot: bool,
}

impl NeonGemm {
    /// `None` when a weight is −128 (see the module docs). `dot`: run on SDOT, which the CPU
    /// must have (panics otherwise).
    pub(super) fn new(
        weights: &[i8],
        bias: &[i32],
        k: usize,
        scales: &[f32],
        dot: bool,
    ) -> Option<NeonGemm> {
        assert!(
            !dot || KernelSet::NeonDotprod.runs_here(),
            "SDOT on a CPU without dotprod"
        );
        if weights.contains(&i8::MIN) {
            return None;
        }
        let m = bias.len();
        assert!(
            k > 0 && weights.len() == m * k && scales.len() == m,
            "NEON gemm: weights are not {m}x{k} or scales not {m}"
        );
        let k16 = k.div_ceil(16) * 16;
        let m4 = m.div_ceil(4) * 4;
        let mut padded = vec![0i8; m4 * k16];
        for (row, weights) in padded.chunks_exact_mut(k16).zip(weights.chunks_exact(k)) {
            row[..k].copy_from_slice(weights);
        }
        let mut bias = bias.to_vec();
        bias.resize(m4, 0);
        let mut scales = scales.to_vec();
        scales.resize(m4, 0.0);
        Some(NeonGemm {
            m,
            k,
            k16,
            weights: padded,
            bias,
            scales,
            dot,
        })
    }

    pub(super) fn name(&self) -> &'static str {
        if self.dot {
            "pinsight_neon_sdot_4x4"
        } else {
            "pinsight_neon_smull_4x4"
        }
    }

    /// `input` is `pixels × k` u8, `output` `pixels × m` u8.
    pub(super) fn run(&self, input: &[u8], output: &mut [u8], requant: &Requantizer) {
        if whole_pixels(input, output, self.k, self.m) == 0 {
            return;
        }
        // SAFETY: `run::<M>` asserts every length its loads and stores rely on before its
        // loop; the CPU has NEON (every aarch64 CPU), and `dot` is only set on a CPU with
        // dotprod (the `assert!` in `new`), which `run_dot` needs.
        unsafe {
            if self.dot {
                run_dot(self, input, output, requant)
            } else {
                run_widening(self, input, output, requant)
            }
        }
    }
}

/// `acc += Σ a·b` over 16 lanes, in four int32 partial sums.
trait Mac {
    unsafe fn mac(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;

    /// `Σ a·b` alone: the first step of a tile.
    unsafe fn first(a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

struct Widening;

impl Mac for Widening {
    #[inline(always)]
    unsafe fn mac(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: register-only NEON intrinsics (no memory access); aarch64 has NEON.
        unsafe {
            let products = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            vpadalq_s16(acc, vmlal_high_s8(products, a, b))
        }
    }

    #[inline(always)]
    unsafe fn first(a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: register-only NEON intrinsics (no memory access); aarch64 has NEON.
        unsafe {
            let products = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            vpaddlq_s16(vmlal_high_s8(products, a, b))
        }
    }
}

struct Dot;

impl Mac for Dot {
    #[inline(always)]
    unsafe fn mac(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: SDOT reads and writes registers only (`nomem`); it is only reached from
        // `run_dot`, which `NeonGemm::run` calls only when `dot` is set, and `NeonGemm::new`
        // asserts the CPU has dotprod before setting it.
        unsafe {
            std::arch::asm!(
                // The directive lets this assemble wherever the compiler inlines it; only
                // `run_dot`, dispatched on a CPU with dotprod, reaches it.
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack)
            );
        }
        acc
    }

    #[inline(always)]
    unsafe fn first(a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: `Dot::mac`'s contract (a CPU with dotprod) is this function's.
        unsafe { Dot::mac(vdupq_n_s32(0), a, b) }
    }
}

/// # Safety
/// None beyond `run`'s (which asserts its lengths): aarch64 always has NEON.
unsafe fn run_widening(g: &NeonGemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: `run` asserts the lengths it relies on; aarch64 always has NEON.
    unsafe { run::<Widening>(g, input, output, requant) }
}

/// # Safety
/// The CPU must have dotprod.
#[target_feature(enable = "dotprod")]
unsafe fn run_dot(g: &NeonGemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has dotprod (this function's contract), which `Dot` needs; `run` asserts
    // the lengths it relies on.
    unsafe { run::<Dot>(g, input, output, requant) }
}

/// # Safety
/// `M`'s instructions run on this CPU (for `Dot`, dotprod). The lengths are asserted here.
#[inline(always)]
unsafe fn run<M: Mac>(g: &NeonGemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    let (m, k, k16) = (g.m, g.k, g.k16);
    let m4 = m.div_ceil(4) * 4;
    // What every load and store below stays inside of.
    assert!(k > 0 && k16 >= k && k16.is_multiple_of(16), "NEON gemm: k");
    assert!(
        g.weights.len() >= m4 * k16 && g.bias.len() >= m4 && g.scales.len() >= m4,
        "NEON gemm: weights, bias and scales padded to whole tiles"
    );
    let pixels = whole_pixels(input, output, k, m);
    assert!(pixels > 0, "NEON gemm: no pixel");
    let full = k / 16;
    let block = (L1_WEIGHT_BYTES / k16).max(4) / 4 * 4;
    // The last, partial 16 values of k of each pixel of a tile, copied so that a 16-byte load
    // stays inside the buffer (what the copy holds past k meets zero weights).
    let mut tails = [[0u8; 16]; 4];
    // SAFETY: the CPU runs `M` (this function's contract). With the lengths asserted above:
    // each of the 4 rows starts at pixel `min(p0 + j, pixels − 1)`, so at `·k` with `k` bytes
    // after it in `input`; the full 16-byte steps `s < full` read `s·16..s·16 + 16 <= k`, the
    // tail copies `k − full·16` bytes from `full·16` (to `k`) into a 16-byte array; weights
    // rows `c0 + i < m4` are read at `·k16 + s·16..+16 <= k16`, bias and scales at
    // `c0..c0 + 4 <= m4`; output is written for pixels `p0 + j < pixels` at `(p0 + j)·m + c0`,
    // `min(m − c0, 4)` bytes, so at most to `pixels·m`.
    unsafe {
        let (low, high) = requant.bounds();
        let full_range = requant.full_range();

        let (low, high) = (vdupq_n_f32(low), vdupq_n_f32(high));
        let zero = vdupq_n_s16(requant.zero_point() as i16);
        let flip = vdupq_n_u8(0x80);
        let load_x = |p: *const u8| vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), flip));
        for block_start in (0..m).step_by(block) {
            let block_end = (block_start + block).min(m);
            for p0 in (0..pixels).step_by(4) {
                // Rows past the last pixel repeat it; their results are not stored.
                let rows: [*const u8; 4] =
                    std::array::from_fn(|j| input.as_ptr().add((p0 + j).min(pixels - 1) * k));
                if k > full * 16 {
                    for (tail, &row) in tails.iter_mut().zip(&rows) {
                        std::ptr::copy_nonoverlapping(
                            row.add(full * 16),
                            tail.as_mut_ptr(),
                            k - full * 16,
                        );
                    }
                }
                for c0 in (block_start..block_end).step_by(4) {
                    let w: [*const i8; 4] =
                        std::array::from_fn(|i| g.weights.as_ptr().add((c0 + i) * k16));
                    // The first step of k sets the accumulators, the others add to them.
                    let tail = k > full * 16;
                    let a = w.map(|w| vld1q_s8(w));
                    let b = if full > 0 {
                        rows.map(&load_x)
                    } else {
                        [0, 1, 2, 3].map(|j| load_x(tails[j].as_ptr()))
                    };
                    let mut acc = [[vdupq_n_s32(0); 4]; 4];
                    for i in 0..4 {
                        for j in 0..4 {
                            acc[i][j] = M::first(a[i], b[j]);
                        }
                    }
                    let mut step = |a: [int8x16_t; 4], b: [int8x16_t; 4]| {
                        for i in 0..4 {
                            for j in 0..4 {
                                acc[i][j] = M::mac(acc[i][j], a[i], b[j]);
                            }
                        }
                    };
                    for s in 1..full {
                        let a = w.map(|w| vld1q_s8(w.add(s * 16)));
                        let b = rows.map(|row| load_x(row.add(s * 16)));
                        step(a, b);
                    }
                    if tail && full > 0 {
                        let a = w.map(|w| vld1q_s8(w.add(full * 16)));
                        let b = [0, 1, 2, 3].map(|j| load_x(tails[j].as_ptr()));
                        step(a, b);
                    }
                    // Per pixel j: the four channels' sums, then bias, scale, clamp, round.
                    let bias = vld1q_s32(g.bias.as_ptr().add(c0));
                    let scale = vld1q_f32(g.scales.as_ptr().add(c0));
                    let pixel = |j: usize| {
                        let sums = vpaddq_s32(
                            vpaddq_s32(acc[0][j], acc[1][j]),
                            vpaddq_s32(acc[2][j], acc[3][j]),
                        );
                        let v = vmulq_f32(vcvtq_f32_s32(vaddq_s32(sums, bias)), scale);
                        // Saturating narrowing clamps to 0..=255 by itself.
                        let v = if full_range {
                            v
                        } else {
                            vminq_f32(vmaxq_f32(v, low), high)
                        };
                        vcvtnq_s32_f32(v)
                    };
                    let lo = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(pixel(0)), pixel(1)), zero);
                    let hi = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(pixel(2)), pixel(3)), zero);
                    let bytes = vreinterpretq_u32_u8(vqmovun_high_s16(vqmovun_s16(lo), hi));
                    let channels = (m - c0).min(4);
                    let mut words = [0u32; 4];
                    vst1q_u32(words.as_mut_ptr(), bytes);
                    for (j, word) in words.iter().enumerate().take((pixels - p0).min(4)) {
                        let out = output.as_mut_ptr().add((p0 + j) * m + c0);
                        if channels == 4 {
                            (out as *mut u32).write_unaligned(*word);
                        } else {
                            std::ptr::copy_nonoverlapping(
                                word.to_ne_bytes().as_ptr(),
                                out,
                                channels,
                            );
                        }
                    }
                }
            }
        }
    }
}
