//! The pointwise convolution's matrix product on aarch64: activations stay NHWC (each pixel's
//! k values contiguous) and are read 16 values of k at a time, and the requantization runs on
//! each tile while it is still in registers. Each run first copies its pixels as signed bytes
//! `x − 128` (an EOR of the top bit), each row zero-padded to a multiple of 16: one pass over
//! `pixels × k` values, small beside the `pixels × k × m` products, after which every load is
//! a whole 16 bytes with nothing to flip or cut.
//!
//! Without the dot-product extension (Cortex-A72, Raspberry Pi 4) the weights stay row-major
//! and each output is a dot product of two 16-byte vectors per step of k: SMULL + SMLAL2
//! multiply two halves into eight i16 lanes, each the sum of two products, and SADALP adds them
//! into int32: 16 multiply-accumulates in 3 instructions. Two products of an i8 weight in
//! −127..=127 and an activation in −128..=127 cannot overflow i16 (2 × 127 × 128 = 32 512),
//! which is why the weights must not hold −128 ([`NeonGemm::new`] refuses them). A tile is 4
//! output channels × 4 pixels (16 int32x4 accumulators), summed across lanes at the end.
//!
//! With the dot-product extension (Cortex-A76 and later, Jetson Orin) the lanes are output
//! channels instead: the weights are packed at load as `[m / 16][k / 4][16 channels][4 values of
//! k]`, and SDOT by element multiplies four channels' four values of k by one pixel's four
//! values (a lane of its 16-byte load) into four int32, 16 multiply-accumulates an instruction
//! with nothing to sum across lanes. A tile is 16 channels × 4 pixels (16 accumulators), its
//! 64 bytes of weights a group one load.
//!
//! The caller folds the offset of `x − 128` into the bias.

use std::arch::aarch64::*;
use std::cell::RefCell;

use super::kernels::Requantizer;
use super::pointwise::whole_pixels;
use crate::model::cpu::KernelSet;

/// Output channels a weight block holds: 4 × k values stay in L1 across the pixels they meet.
const L1_WEIGHT_BYTES: usize = 16 * 1024;

thread_local! {
    /// The pixels of a run as `x − 128`, rows padded to a multiple of 16, reused by the runs on
    /// this thread.
    static FLIPPED: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Debug)]
pub(super) struct NeonGemm {
    m: usize,
    k: usize,
    /// `k` rounded up to 16.
    k16: usize,
    /// Without dot: `[m rounded up to 4][k16]`, zero padded. With dot: `[m / 16][k16 / 4][16][4]`
    /// (m rounded up to 16), zero padded.
    weights: Vec<i8>,
    /// Bias per output channel (with the activation offset folded in), padded as the weights'
    /// channels are.
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
        let m_padded = if dot {
            m.div_ceil(16) * 16
        } else {
            m.div_ceil(4) * 4
        };
        let mut padded = vec![0i8; m_padded * k16];
        if dot {
            let groups = k16 / 4;
            for (o, row) in weights.chunks_exact(k).enumerate() {
                let (block, lane) = (o / 16, o % 16);
                for (kk, &w) in row.iter().enumerate() {
                    padded[((block * groups + kk / 4) * 16 + lane) * 4 + kk % 4] = w;
                }
            }
        } else {
            for (row, weights) in padded.chunks_exact_mut(k16).zip(weights.chunks_exact(k)) {
                row[..k].copy_from_slice(weights);
            }
        }
        let mut bias = bias.to_vec();
        bias.resize(m_padded, 0);
        let mut scales = scales.to_vec();
        scales.resize(m_padded, 0.0);
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
            "pinsight_neon_sdot_16x4"
        } else {
            "pinsight_neon_smull_4x4"
        }
    }

    /// `input` is `pixels × k` u8, `output` `pixels × m` u8.
    pub(super) fn run(&self, input: &[u8], output: &mut [u8], requant: &Requantizer) {
        if whole_pixels(input, output, self.k, self.m) == 0 {
            return;
        }
        FLIPPED.with_borrow_mut(|flipped| {
            flip(input, self.k, self.k16, flipped);
            // SAFETY: `run_widening` and `run_lanes` assert every length their loads and
            // stores rely on before their loops; the CPU has NEON (every aarch64 CPU), and
            // `dot` is only set on a CPU with dotprod (the `assert!` in `new`), which `run_dot`
            // needs.
            unsafe {
                if self.dot {
                    run_dot(self, flipped, output, requant)
                } else {
                    run_widening(self, flipped, output, requant)
                }
            }
        })
    }
}

/// Each row of `k` values of `input` as `x − 128` into a row of `k16` of `flipped`, the rest
/// of the row 0 (which meets zero weights).
fn flip(input: &[u8], k: usize, k16: usize, flipped: &mut Vec<i8>) {
    let pixels = input.len() / k;
    // Every value is written below: no need to clear what the last run left.
    flipped.resize(pixels * k16, 0);
    if k == k16 {
        // One run over the whole buffer, as most layers have it.
        for (to, &x) in flipped.iter_mut().zip(input) {
            *to = (x ^ 0x80) as i8;
        }
        return;
    }
    for (to, row) in flipped.chunks_exact_mut(k16).zip(input.chunks_exact(k)) {
        let (values, padding) = to.split_at_mut(k);
        for (to, &x) in values.iter_mut().zip(row) {
            *to = (x ^ 0x80) as i8;
        }
        padding.fill(0);
    }
}

/// `acc += Σ a·b` over 16 lanes, in four int32 partial sums: SMULL, SMLAL2, SADALP.
///
/// # Safety
/// None: register-only NEON intrinsics, and aarch64 has NEON.
#[inline(always)]
unsafe fn widening_mac(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: register-only NEON intrinsics (no memory access); aarch64 has NEON.
    unsafe {
        let products = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        vpadalq_s16(acc, vmlal_high_s8(products, a, b))
    }
}

/// `Σ a·b` alone: the first step of a tile.
///
/// # Safety
/// None: register-only NEON intrinsics, and aarch64 has NEON.
#[inline(always)]
unsafe fn widening_first(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: register-only NEON intrinsics (no memory access); aarch64 has NEON.
    unsafe {
        let products = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        vpaddlq_s16(vmlal_high_s8(products, a, b))
    }
}

/// The requantization's constants in registers, shared by both kernels.
struct Rounding {
    zero: int16x8_t,
    min: uint8x16_t,
    max: uint8x16_t,
}

impl Rounding {
    fn new(requant: &Requantizer) -> Rounding {
        let (min, max) = requant.output_bounds();
        // SAFETY: register-only NEON intrinsics; aarch64 has NEON.
        unsafe {
            Rounding {
                zero: vdupq_n_s16(requant.zero_point() as i16),
                min: vdupq_n_u8(min),
                max: vdupq_n_u8(max),
            }
        }
    }

    /// Four int32 sums (bias included) times their channels' scales, rounded half to even;
    /// the zero point is added by [`Self::narrow`], the clamp done by [`Self::bytes`].
    #[inline(always)]
    fn round(&self, sums: int32x4_t, scale: float32x4_t) -> int32x4_t {
        // SAFETY: register-only NEON intrinsics; aarch64 has NEON.
        unsafe { vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(sums), scale)) }
    }

    /// Two of [`Self::round`]'s results as eight i16, plus the zero point (saturating).
    #[inline(always)]
    fn narrow(&self, a: int32x4_t, b: int32x4_t) -> int16x8_t {
        // SAFETY: register-only NEON intrinsics; aarch64 has NEON.
        unsafe { vqaddq_s16(vqmovn_high_s32(vqmovn_s32(a), b), self.zero) }
    }

    /// Two of [`Self::narrow`]'s results as 16 bytes, clamped to the output's bounds
    /// (`Requantizer::output_bounds`; a no-op for the full range, cheaper than a branch).
    #[inline(always)]
    fn bytes(&self, lo: int16x8_t, hi: int16x8_t) -> uint8x16_t {
        // SAFETY: register-only NEON intrinsics; aarch64 has NEON.
        unsafe {
            vminq_u8(
                vmaxq_u8(vqmovun_high_s16(vqmovun_s16(lo), hi), self.min),
                self.max,
            )
        }
    }
}

/// The rows of the `NP` pixels from `p0` of `flipped` (`k16` values each; the rows past the
/// last pixel repeat it, and their results are not stored).
///
/// # Safety
/// `flipped` holds whole rows of `k16` values, and `p0` is below their number.
#[inline(always)]
unsafe fn tile_rows<const NP: usize>(flipped: &[i8], k16: usize, p0: usize) -> [*const i8; NP] {
    let pixels = flipped.len() / k16;
    // SAFETY: each row starts at pixel `min(p0 + j, pixels − 1)`, so at `·k16` with `k16`
    // values after it in `flipped` (the contract).
    std::array::from_fn(|j| unsafe { flipped.as_ptr().add((p0 + j).min(pixels - 1) * k16) })
}

/// # Safety
/// The CPU must have dotprod.
#[target_feature(enable = "dotprod")]
unsafe fn run_dot(g: &NeonGemm, flipped: &[i8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has dotprod (this function's contract); `run_lanes` asserts the lengths
    // it relies on.
    unsafe { run_lanes(g, flipped, output, requant) }
}

/// The matrix product on SMULL/SADALP, tiles of 4 channels × 4 pixels, on the pixels as
/// [`flip`] leaves them.
///
/// # Safety
/// None beyond aarch64's NEON. The lengths are asserted here.
unsafe fn run_widening(g: &NeonGemm, flipped: &[i8], output: &mut [u8], requant: &Requantizer) {
    let (m, k16) = (g.m, g.k16);
    let m4 = m.div_ceil(4) * 4;
    // What every load and store below stays inside of.
    assert!(k16 > 0 && k16.is_multiple_of(16), "NEON gemm: k");
    assert!(
        g.weights.len() >= m4 * k16 && g.bias.len() >= m4 && g.scales.len() >= m4,
        "NEON gemm: weights, bias and scales padded to whole tiles"
    );
    let pixels = flipped.len() / k16;
    assert!(
        pixels > 0 && flipped.len() == pixels * k16 && output.len() == pixels * m,
        "NEON gemm: whole pixels in and out"
    );
    let steps = k16 / 16;
    let block = (L1_WEIGHT_BYTES / k16).max(4) / 4 * 4;
    let rounding = Rounding::new(requant);
    // SAFETY: aarch64 has NEON. With the lengths asserted above: `tile_rows` gets whole rows
    // and `p0 < pixels`; the steps `s < steps` read `s·16..s·16 + 16 <= k16` of each row and of
    // the weights rows `c0 + i < m4` (at `·k16`), bias and scales at `c0..c0 + 4 <= m4`; output
    // is written for pixels `p0 + j < pixels` at `(p0 + j)·m + c0`, `min(m − c0, 4)` bytes, so
    // at most to `pixels·m`.
    unsafe {
        for block_start in (0..m).step_by(block) {
            let block_end = (block_start + block).min(m);
            for p0 in (0..pixels).step_by(4) {
                let rows: [*const i8; 4] = tile_rows(flipped, k16, p0);
                for c0 in (block_start..block_end).step_by(4) {
                    let w: [*const i8; 4] =
                        std::array::from_fn(|i| g.weights.as_ptr().add((c0 + i) * k16));
                    // The first step of k sets the accumulators, the others add to them.
                    let a = w.map(|w| vld1q_s8(w));
                    let b = rows.map(|row| vld1q_s8(row));
                    let mut acc = [[vdupq_n_s32(0); 4]; 4];
                    for i in 0..4 {
                        for j in 0..4 {
                            acc[i][j] = widening_first(a[i], b[j]);
                        }
                    }
                    for s in 1..steps {
                        let a = w.map(|w| vld1q_s8(w.add(s * 16)));
                        let b = rows.map(|row| vld1q_s8(row.add(s * 16)));
                        for i in 0..4 {
                            for j in 0..4 {
                                acc[i][j] = widening_mac(acc[i][j], a[i], b[j]);
                            }
                        }
                    }
                    // Per pixel j: the four channels' sums, then bias, scale, clamp, round.
                    let bias = vld1q_s32(g.bias.as_ptr().add(c0));
                    let scale = vld1q_f32(g.scales.as_ptr().add(c0));
                    let pixel = |j: usize| {
                        let sums = vpaddq_s32(
                            vpaddq_s32(acc[0][j], acc[1][j]),
                            vpaddq_s32(acc[2][j], acc[3][j]),
                        );
                        rounding.round(vaddq_s32(sums, bias), scale)
                    };
                    let lo = rounding.narrow(pixel(0), pixel(1));
                    let hi = rounding.narrow(pixel(2), pixel(3));
                    let bytes = vreinterpretq_u32_u8(rounding.bytes(lo, hi));
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

/// `acc += w · x.4b[LANE]`: SDOT by element, four channels' four values of k times the pixel's
/// four values in lane `LANE` of `x`.
///
/// # Safety
/// The CPU must have dotprod.
#[inline(always)]
unsafe fn sdot_lane<const LANE: i32>(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: SDOT reads and writes registers only (`nomem`); the CPU has dotprod (the
    // contract).
    unsafe {
        std::arch::asm!(
            // The directive lets this assemble wherever the compiler inlines it; only
            // `run_dot`, dispatched on a CPU with dotprod, reaches it.
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{lane}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            lane = const LANE,
            options(pure, nomem, nostack)
        );
    }
    acc
}

/// The matrix product on SDOT by element, weights packed in blocks of 16 channels (see the
/// module docs), on the pixels as [`flip`] leaves them: tiles of 16 channels × 4 pixels.
///
/// # Safety
/// The CPU must have dotprod. The lengths are asserted here.
#[inline(always)]
unsafe fn run_lanes(g: &NeonGemm, flipped: &[i8], output: &mut [u8], requant: &Requantizer) {
    const NP: usize = 4;
    let (m, k16) = (g.m, g.k16);
    let blocks = m.div_ceil(16);
    let groups = k16 / 4;
    // What every load and store below stays inside of.
    assert!(k16 > 0 && k16.is_multiple_of(16), "NEON gemm: k");
    assert!(
        g.weights.len() >= blocks * groups * 64
            && g.bias.len() >= blocks * 16
            && g.scales.len() >= blocks * 16,
        "NEON gemm: weights, bias and scales padded to whole blocks"
    );
    let pixels = flipped.len() / k16;
    assert!(
        pixels > 0 && flipped.len() == pixels * k16 && output.len() == pixels * m,
        "NEON gemm: whole pixels in and out"
    );
    let rounding = Rounding::new(requant);
    // SAFETY: the CPU has dotprod (this function's contract). With the lengths asserted above:
    // `tile_rows` gets whole rows and `p0 < pixels`; the steps `s < k16 / 16` read
    // `s·16..s·16 + 16 <= k16` of each row; block `b < blocks` reads weights at
    // `(b·groups + gi)·64..+64` for `gi < groups`, bias and scales at `b·16..b·16 + 16`;
    // output is written for pixels `p0 + j < pixels` at `(p0 + j)·m + b·16`,
    // `min(m − b·16, 16)` bytes, so at most to `pixels·m`.
    unsafe {
        for p0 in (0..pixels).step_by(NP) {
            let rows: [*const i8; NP] = tile_rows(flipped, k16, p0);
            for b in 0..blocks {
                let mut w = g.weights.as_ptr().add(b * groups * 64);
                let ch0 = b * 16;
                // The accumulators start at the bias; the scales are the tile's too.
                let bias: [int32x4_t; 4] =
                    std::array::from_fn(|c| vld1q_s32(g.bias.as_ptr().add(ch0 + 4 * c)));
                let scale: [float32x4_t; 4] =
                    std::array::from_fn(|c| vld1q_f32(g.scales.as_ptr().add(ch0 + 4 * c)));
                let mut acc = bias.map(|bias| [bias; NP]);
                for s in 0..k16 / 16 {
                    let x = rows.map(|row| vld1q_s8(row.add(s * 16)));
                    lanes_step(&mut acc, &mut w, x);
                }
                let channels = (m - ch0).min(16);
                // Pixel j's 16 channels.
                let bytes = |j: usize| {
                    let round = |c: usize| rounding.round(acc[c][j], scale[c]);
                    let lo = rounding.narrow(round(0), round(1));
                    let hi = rounding.narrow(round(2), round(3));
                    rounding.bytes(lo, hi)
                };
                let base = output.as_mut_ptr();
                let out = |j: usize| base.add((p0 + j) * m + ch0);
                let valid = (pixels - p0).min(NP);
                if valid == NP && channels == 16 {
                    // The whole tile, as nearly every tile is: unrolled, in registers.
                    for j in 0..NP {
                        vst1q_u8(out(j), bytes(j));
                    }
                } else {
                    for j in 0..valid {
                        if channels == 16 {
                            vst1q_u8(out(j), bytes(j));
                        } else if channels == 8 {
                            // The last block of m = 24 or 40, say.
                            vst1_u8(out(j), vget_low_u8(bytes(j)));
                        } else {
                            let mut lanes = [0u8; 16];
                            vst1q_u8(lanes.as_mut_ptr(), bytes(j));
                            std::ptr::copy_nonoverlapping(lanes.as_ptr(), out(j), channels);
                        }
                    }
                }
            }
        }
    }
}

/// One step of 16 values of k of a tile: four groups of 64 bytes of weights from `w` (which it
/// moves past them), each times lane `g` of the pixels' `x`.
///
/// # Safety
/// The CPU must have dotprod; 256 bytes are readable at `w`.
#[inline(always)]
unsafe fn lanes_step<const NP: usize>(
    acc: &mut [[int32x4_t; NP]; 4],
    w: &mut *const i8,
    x: [int8x16_t; NP],
) {
    macro_rules! group {
        ($lane:literal) => {
            // SAFETY: the contract: 64 of the 256 bytes at `w`, then the next.
            let ws = unsafe { vld1q_s8_x4(*w) };
            *w = w.wrapping_add(64);
            let ws = [ws.0, ws.1, ws.2, ws.3];
            for c in 0..4 {
                for j in 0..NP {
                    // SAFETY: the CPU has dotprod (the contract).
                    acc[c][j] = unsafe { sdot_lane::<$lane>(acc[c][j], ws[c], x[j]) };
                }
            }
        };
    }
    group!(0);
    group!(1);
    group!(2);
    group!(3);
}
