//! The element-wise pieces of the int8 executor, in portable Rust that the compiler vectorises:
//! requantization, the input's quantization, the residual add, the final mean, and im2col for a
//! convolution that is neither pointwise nor depthwise.
//!
//! Numerics follow onnxruntime's CPU kernels for the fused QDQ pattern (MLAS): a convolution's
//! int32 accumulator is converted to f32, multiplied by `x_scale * w_scale[c] / y_scale`,
//! clamped, rounded half to even and offset by the output zero point.

use crate::model::cpu::KernelSet;
use crate::model::threads;

/// Adding then subtracting 1.5 × 2²³ rounds an f32 of magnitude below 2²² to the nearest
/// integer, ties to even (the default rounding mode), and leaves that integer in the low
/// mantissa bits: a rounding that vectorises on every target, with no libm call.
const ROUNDING: f32 = 12_582_912.0;
const ROUNDING_BITS: i32 = 0x4B40_0000;

/// `round_half_even(value)` as an integer, for `|value| < 2²²`.
#[inline(always)]
pub fn round_half_even(value: f32) -> i32 {
    (value + ROUNDING).to_bits() as i32 - ROUNDING_BITS
}

/// `value` within `low..=high`, written as selects so that it compiles to min/max
/// instructions (`f32::clamp` must also handle NaN, which never occurs here).
#[inline(always)]
fn bound(value: f32, low: f32, high: f32) -> f32 {
    let value = if value < low { low } else { value };
    if value > high { high } else { value }
}

/// Runs `$body` compiled for AVX2 when `$kernels` runs AVX2 ([`KernelSet::avx2`]) (same code, wider
/// vectors), else as built for the target's baseline.
macro_rules! with_avx2 {
    ($kernels:expr, $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU must have AVX2.
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            let kernels: KernelSet = $kernels;
            if kernels.avx2() {
                kernels.assert_runs_here();
                // SAFETY: the CPU has AVX2 (`assert_runs_here` just above asserts it); the body
                // is safe code, only compiled with AVX2 enabled.
                unsafe { avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _: KernelSet = $kernels;
            $body
        }
    }};
}

/// Turns int32 accumulators into u8 activations, one scale per output channel:
/// `clamp(round_half_even(acc × scale[c]) + zero_point, min, max)`.
#[derive(Clone, Debug)]
pub struct Requantizer {
    scale: Vec<f32>,
    zero_point: i32,
    /// The clamp bounds in the unshifted domain (`min - zero_point`, `max - zero_point`).
    low: f32,
    high: f32,
}

impl Requantizer {
    /// `scale` has one multiplier per output channel; `min`/`max` bound the output (0 and 255,
    /// or tighter for a fused Relu or Clip).
    pub fn new(scale: Vec<f32>, zero_point: u8, min: u8, max: u8) -> Requantizer {
        assert!(min <= max, "requantizer bounds {min} > {max}");
        let zero_point = i32::from(zero_point);
        Requantizer {
            scale,
            zero_point,
            low: (i32::from(min) - zero_point) as f32,
            high: (i32::from(max) - zero_point) as f32,
        }
    }

    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    pub fn scales(&self) -> &[f32] {
        &self.scale
    }

    pub fn zero_point(&self) -> i32 {
        self.zero_point
    }

    /// The clamp bounds, shifted by the zero point, as f32.
    pub fn bounds(&self) -> (f32, f32) {
        (self.low, self.high)
    }

    /// The clamp bounds of the output, `min` and `max`. Clamping the rounded u8 to them gives
    /// what clamping before the rounding does, as both bounds are integers: a kernel may
    /// narrow first and clamp 16 bytes at a time.
    pub fn output_bounds(&self) -> (u8, u8) {
        let zero = self.zero_point as f32;
        ((self.low + zero) as u8, (self.high + zero) as u8)
    }

    /// One value of channel `c`.
    #[inline(always)]
    pub fn one(&self, acc: i32, c: usize) -> u8 {
        let value = bound(acc as f32 * self.scale[c], self.low, self.high);
        (round_half_even(value) + self.zero_point) as u8
    }

    /// Requantizes channels `first..first + acc.len()` of one pixel into `out`.
    #[inline]
    pub fn run(&self, acc: &[i32], first: usize, out: &mut [u8]) {
        let scale = &self.scale[first..first + acc.len()];
        let (low, high, zero) = (self.low, self.high, self.zero_point);
        for ((out, &acc), &scale) in out[..acc.len()].iter_mut().zip(acc).zip(scale) {
            let value = bound(acc as f32 * scale, low, high);
            *out = (round_half_even(value) + zero) as u8;
        }
    }

    /// Requantizes whole pixels: `acc` and `out` hold `channels()` values per pixel.
    pub fn run_pixels(&self, acc: &[i32], out: &mut [u8], kernels: KernelSet) {
        let m = self.scale.len();
        assert_eq!(acc.len(), out.len(), "requantize: lengths");
        assert!(acc.len().is_multiple_of(m), "requantize: whole pixels");
        kernels.assert_runs_here();
        #[cfg(target_arch = "x86_64")]
        if kernels.avx2() {
            // SAFETY: the CPU has AVX2 (`assert_runs_here` above); `requantize_avx2` asserts
            // the lengths it relies on.
            return unsafe { simd::requantize_avx2(self, acc, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if kernels.neon() {
            // SAFETY: the CPU has NEON (`assert_runs_here` above); `requantize_neon` asserts
            // the lengths it relies on.
            return unsafe { simd::requantize_neon(self, acc, out) };
        }
        // The compiler does not vectorise f32 arithmetic for 32-bit NEON (which flushes
        // subnormals, unlike VFP): there each pixel's channels but the last few (of a count
        // that is not a multiple of 8) go through `arm_neon`.
        let whole = if cfg!(arm_neon) { m / 8 * 8 } else { 0 };
        for (acc, out) in acc.chunks_exact(m).zip(out.chunks_exact_mut(m)) {
            #[cfg(arm_neon)]
            arm_neon::requantize(self, &acc[..whole], &self.scale[..whole], &mut out[..whole]);
            self.run(&acc[whole..], whole, &mut out[whole..]);
        }
    }
}

/// Quantization parameters of one u8 activation tensor: `real = scale × (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantization {
    pub scale: f32,
    pub zero_point: u8,
}

/// QuantizeLinear of one value: `saturate(round_half_even(x / scale) + zero_point)`.
#[inline(always)]
pub fn quantize_one(x: f32, q: Quantization) -> u8 {
    let zero = f32::from(q.zero_point);
    // Clamped before rounding so that the magic-number rounding stays in range; the bounds are
    // integers, so this equals rounding then saturating.
    let value = bound(x / q.scale, -zero, 255.0 - zero);
    (round_half_even(value) + i32::from(q.zero_point)) as u8
}

/// QuantizeLinear of the float NCHW input (`channels` planes of `pixels` values) into u8 NHWC:
/// `saturate(round_half_even(x / scale) + zero_point)`, as onnxruntime computes it.
pub fn quantize_nchw_to_nhwc(
    input: &[f32],
    channels: usize,
    q: Quantization,
    out: &mut [u8],
    kernels: KernelSet,
) {
    let pixels = input.len() / channels;
    assert_eq!(out.len(), input.len(), "quantize: output length");
    with_avx2!(kernels, {
        const BLOCK: usize = 16;
        let mut block = [0u8; BLOCK];
        for c in 0..channels {
            let plane = &input[c * pixels..(c + 1) * pixels];
            for (b, xs) in plane.chunks(BLOCK).enumerate() {
                for (q8, &x) in block.iter_mut().zip(xs) {
                    *q8 = quantize_one(x, q);
                }
                for (i, &q8) in block[..xs.len()].iter().enumerate() {
                    out[(b * BLOCK + i) * channels + c] = q8;
                }
            }
        }
    })
}

/// The residual Add of two u8 tensors (onnxruntime's QLinearAdd):
/// `saturate(round_half_even((sa·(a − za) + sb·(b − zb)) / sy) + zy)`.
#[derive(Clone, Copy, Debug)]
pub struct QuantizedAdd {
    pub a: Quantization,
    pub b: Quantization,
    pub y: Quantization,
}

impl QuantizedAdd {
    pub fn run(&self, a: &[u8], b: &[u8], out: &mut [u8], kernels: KernelSet) {
        assert!(a.len() == b.len() && a.len() == out.len(), "add: lengths");
        let (sa, za) = (self.a.scale, f32::from(self.a.zero_point));
        let (sb, zb) = (self.b.scale, f32::from(self.b.zero_point));
        let (sy, zy) = (self.y.scale, self.y.zero_point);
        let (low, high) = (-f32::from(zy), 255.0 - f32::from(zy));
        with_avx2!(kernels, {
            for ((out, &a), &b) in out.iter_mut().zip(a).zip(b) {
                let value = (sa * (f32::from(a) - za) + sb * (f32::from(b) - zb)) / sy;
                *out = (round_half_even(bound(value, low, high)) + i32::from(zy)) as u8;
            }
        })
    }
}

/// The mean over all pixels of each channel of a u8 NHWC tensor, dequantized: the pooled
/// features (DequantizeLinear then ReduceMean over H and W).
pub fn mean_nhwc(
    input: &[u8],
    channels: usize,
    q: Quantization,
    out: &mut [f32],
    kernels: KernelSet,
) {
    let pixels = input.len() / channels;
    let mut sums = vec![0u32; channels];
    with_avx2!(kernels, {
        for pixel in input.chunks_exact(channels) {
            for (sum, &v) in sums.iter_mut().zip(pixel) {
                *sum += u32::from(v);
            }
        }
    });
    let zero = i64::from(q.zero_point) * pixels as i64;
    for (out, &sum) in out.iter_mut().zip(&sums) {
        *out = (i64::from(sum) - zero) as f32 * q.scale / pixels as f32;
    }
}

/// The geometry of a 2-D convolution window over an NHWC tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right (ONNX's `pads` order is top, left, bottom, right).
    pub pads: [usize; 4],
}

impl Window {
    /// Output height and width for an input of `h` × `w`.
    pub fn output(&self, h: usize, w: usize) -> (usize, usize) {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [top, left, bottom, right] = self.pads;
        (
            (h + top + bottom - kh) / sh + 1,
            (w + left + right - kw) / sw + 1,
        )
    }

    /// The input row and column of tap (`ky`, `kx`) for output (`oy`, `ox`), or `None` in the
    /// padding.
    #[inline]
    pub fn tap(
        &self,
        (h, w): (usize, usize),
        (oy, ox): (usize, usize),
        (ky, kx): (usize, usize),
    ) -> Option<(usize, usize)> {
        let iy = (oy * self.stride[0] + ky).checked_sub(self.pads[0])?;
        let ix = (ox * self.stride[1] + kx).checked_sub(self.pads[1])?;
        (iy < h && ix < w).then_some((iy, ix))
    }
}

/// im2col for a convolution on an NHWC u8 tensor: one row of `out.len() / pixels` bytes per
/// output pixel, starting with the window in (ky, kx, channel) order, with `pad` (the input's
/// zero point) where the window leaves the image. Bytes past the window (a row longer than
/// kh × kw × c) are left as they are. `padded` is scratch space for the padded image, from
/// which each window row is one contiguous copy.
pub fn im2col(
    input: &[u8],
    (h, w, c): (usize, usize, usize),
    window: &Window,
    pad: u8,
    padded: &mut Vec<u8>,
    out: &mut [u8],
) {
    let (oh, ow) = window.output(h, w);
    let [kh, kw] = window.kernel;
    let [sh, sw] = window.stride;
    let [top, left, bottom, right] = window.pads;
    let row = out.len() / (oh * ow).max(1);
    assert!(
        row >= kh * kw * c && out.len() == oh * ow * row,
        "im2col: output length"
    );
    assert_eq!(input.len(), h * w * c, "im2col: input length");
    let padded_width = w + left + right;
    padded.clear();
    padded.resize((h + top + bottom) * padded_width * c, pad);
    for (y, line) in input.chunks_exact(w * c).enumerate() {
        padded[((y + top) * padded_width + left) * c..][..w * c].copy_from_slice(line);
    }
    let segment = kw * c;
    let padded = &*padded;
    // Rows of output split over the threads. The copies are a few bytes each (9 for a 3 × 3
    // window on RGB), so a byte weighs about a multiply-accumulate here.
    let rows = threads::part_size(oh, out.len(), 1);
    threads::for_each_chunk(out, rows * ow * row, |part, out| {
        for (i, out) in out.chunks_exact_mut(ow * row).enumerate() {
            let oy = part * rows + i;
            for (ox, dst) in out.chunks_exact_mut(row).enumerate() {
                for (ky, dst) in dst[..kh * segment].chunks_exact_mut(segment).enumerate() {
                    let src = ((oy * sh + ky) * padded_width + ox * sw) * c;
                    dst.copy_from_slice(&padded[src..][..segment]);
                }
            }
        }
    });
}

mod simd {
    //! Requantization of whole pixels with explicit SIMD: int32 → f32, × scale, clamp, round
    //! half to even, + zero point, saturating narrow to u8 — onnxruntime's MLAS sequence.

    /// # Safety
    /// The CPU has AVX2; `acc.len() == out.len()`, a multiple of the channel count.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requantize_avx2(r: &super::Requantizer, acc: &[i32], out: &mut [u8]) {
        use std::arch::x86_64::*;
        let m = r.scale.len();
        let (low, high) = (_mm256_set1_ps(r.low), _mm256_set1_ps(r.high));
        let zero = _mm256_set1_epi32(r.zero_point);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let whole = m / 8 * 8;
        assert!(
            m > 0 && acc.len() == out.len() && acc.len().is_multiple_of(m),
            "requantize: whole pixels of {m} channels"
        );
        // SAFETY: the CPU has AVX2 (this function's contract). `chunks_exact(m)` hands out
        // pixels of exactly `m` values of `acc` and of `out` (equal lengths, asserted above),
        // and `scale` holds `m` values (`m` is its length); every load and store is at
        // `c..c + 8` with `c + 8 <= whole <= m`.
        unsafe {
            let eight = |acc: *const i32, scale: *const f32| {
                let v = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_loadu_si256(acc as *const __m256i)),
                    _mm256_loadu_ps(scale),
                );
                let v = _mm256_min_ps(_mm256_max_ps(v, low), high);
                _mm256_add_epi32(_mm256_cvtps_epi32(v), zero)
            };
            for (acc, out) in acc.chunks_exact(m).zip(out.chunks_exact_mut(m)) {
                let (a, o, s) = (acc.as_ptr(), out.as_mut_ptr(), r.scale.as_ptr());
                let mut c = 0;
                while c + 32 <= m {
                    let ab = _mm256_packs_epi32(
                        eight(a.add(c), s.add(c)),
                        eight(a.add(c + 8), s.add(c + 8)),
                    );
                    let cd = _mm256_packs_epi32(
                        eight(a.add(c + 16), s.add(c + 16)),
                        eight(a.add(c + 24), s.add(c + 24)),
                    );
                    let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
                    _mm256_storeu_si256(o.add(c) as *mut __m256i, bytes);
                    c += 32;
                }
                while c < whole {
                    let v = eight(a.add(c), s.add(c));
                    let bytes = _mm256_permutevar8x32_epi32(
                        _mm256_packus_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256()),
                        order,
                    );
                    _mm_storel_epi64(o.add(c) as *mut __m128i, _mm256_castsi256_si128(bytes));
                    c += 8;
                }
                r.run(&acc[whole..], whole, &mut out[whole..]);
            }
        }
    }

    /// # Safety
    /// The CPU has NEON; `acc.len() == out.len()`, a multiple of the channel count.
    #[cfg(target_arch = "aarch64")]
    pub(super) unsafe fn requantize_neon(r: &super::Requantizer, acc: &[i32], out: &mut [u8]) {
        use std::arch::aarch64::*;
        let m = r.scale.len();
        let whole = m / 16 * 16;
        assert!(
            m > 0 && acc.len() == out.len() && acc.len().is_multiple_of(m),
            "requantize: whole pixels of {m} channels"
        );
        // SAFETY: the CPU has NEON (this function's contract). `chunks_exact(m)` hands out
        // pixels of exactly `m` values of `acc` and of `out` (equal lengths, asserted above),
        // and `scale` holds `m` values (`m` is its length); every load and store is at
        // `c..c + 16` with `c + 16 <= whole <= m`.
        unsafe {
            let (low, high) = (vdupq_n_f32(r.low), vdupq_n_f32(r.high));
            let zero = vdupq_n_s16(r.zero_point as i16);
            let four = |acc: *const i32, scale: *const f32| {
                let v = vmulq_f32(vcvtq_f32_s32(vld1q_s32(acc)), vld1q_f32(scale));
                vcvtnq_s32_f32(vminq_f32(vmaxq_f32(v, low), high))
            };
            for (acc, out) in acc.chunks_exact(m).zip(out.chunks_exact_mut(m)) {
                let (a, o, s) = (acc.as_ptr(), out.as_mut_ptr(), r.scale.as_ptr());
                let mut c = 0;
                while c < whole {
                    let lo = vqmovn_high_s32(
                        vqmovn_s32(four(a.add(c), s.add(c))),
                        four(a.add(c + 4), s.add(c + 4)),
                    );
                    let hi = vqmovn_high_s32(
                        vqmovn_s32(four(a.add(c + 8), s.add(c + 8))),
                        four(a.add(c + 12), s.add(c + 12)),
                    );
                    let (lo, hi) = (vqaddq_s16(lo, zero), vqaddq_s16(hi, zero));
                    vst1q_u8(o.add(c), vqmovun_high_s16(vqmovun_s16(lo), hi));
                    c += 16;
                }
                r.run(&acc[whole..], whole, &mut out[whole..]);
            }
        }
    }
}

#[cfg(arm_neon)]
mod arm_neon {
    //! Requantization on 32-bit NEON, in `asm!` (Rust's arm NEON intrinsics are not stable):
    //! the portable sequence, eight values a step. Bit for bit the same: NEON's f32 arithmetic
    //! rounds to nearest, ties to even, as VFP's does by default; it flushes subnormals to zero,
    //! and a subnormal product rounds to 0 either way.

    use super::{ROUNDING, ROUNDING_BITS, Requantizer};

    /// `out[i] = requantize(acc[i] × scale[i])` with `r`'s bounds and zero point; the lengths
    /// are equal multiples of 8.
    pub(super) fn requantize(r: &Requantizer, acc: &[i32], scale: &[f32], out: &mut [u8]) {
        assert!(
            acc.len() == scale.len() && acc.len() == out.len() && acc.len().is_multiple_of(8),
            "requantize: eight values a step"
        );
        let steps = acc.len() / 8;
        if steps == 0 {
            return;
        }
        // SAFETY: the build has NEON (the cfg above). Each step reads 8 i32 of `acc` and 8 f32
        // of `scale` and writes 8 bytes of `out`, `steps` times from their starts: within
        // their lengths, asserted above. The registers it writes are declared clobbered, and
        // it touches no other memory and no stack.
        unsafe {
            std::arch::asm!(
                "vdup.32 q8, {low}",
                "vdup.32 q9, {high}",
                "vdup.32 q10, {rounding}",
                "vdup.32 q11, {rounding_bits}",
                "vdup.16 q12, {zero}",
                "2:",
                "vld1.32 {{d0-d3}}, [{acc}]!",
                "vld1.32 {{d4-d7}}, [{scale}]!",
                "vcvt.f32.s32 q0, q0",
                "vcvt.f32.s32 q1, q1",
                "vmul.f32 q0, q0, q2",
                "vmul.f32 q1, q1, q3",
                "vmax.f32 q0, q0, q8",
                "vmax.f32 q1, q1, q8",
                "vmin.f32 q0, q0, q9",
                "vmin.f32 q1, q1, q9",
                // round_half_even: the magic number's addition rounds, its bits subtracted
                // leave the integer.
                "vadd.f32 q0, q0, q10",
                "vadd.f32 q1, q1, q10",
                "vsub.i32 q0, q0, q11",
                "vsub.i32 q1, q1, q11",
                "vqmovn.s32 d0, q0",
                "vqmovn.s32 d1, q1",
                "vqadd.s16 q0, q0, q12",
                "vqmovun.s16 d0, q0",
                "vst1.8 {{d0}}, [{out}]!",
                "subs {steps}, {steps}, #1",
                "bne 2b",
                acc = inout(reg) acc.as_ptr() => _,
                scale = inout(reg) scale.as_ptr() => _,
                out = inout(reg) out.as_mut_ptr() => _,
                steps = inout(reg) steps => _,
                low = in(reg) r.low.to_bits(),
                high = in(reg) r.high.to_bits(),
                rounding = in(reg) ROUNDING.to_bits(),
                rounding_bits = in(reg) ROUNDING_BITS,
                zero = in(reg) r.zero_point,
                out("q0") _,
                out("q1") _,
                out("q2") _,
                out("q3") _,
                out("q8") _,
                out("q9") _,
                out("q10") _,
                out("q11") _,
                out("q12") _,
                options(nostack),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even() {
        for (value, expected) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (2.4999, 2),
            (-254.7, -255),
            (255.0, 255),
        ] {
            assert_eq!(round_half_even(value), expected, "{value}");
            assert_eq!(
                round_half_even(value),
                value.round_ties_even() as i32,
                "{value}"
            );
        }
    }

    #[test]
    fn requantization_saturates_and_rounds() {
        let r = Requantizer::new(vec![0.5, 1.0], 10, 0, 255);
        assert_eq!(r.one(5, 0), 12, "2.5 rounds to 2");
        assert_eq!(r.one(7, 0), 14, "3.5 rounds to 4");
        assert_eq!(r.one(-100, 1), 0);
        assert_eq!(r.one(1000, 1), 255);
        let relu6 = Requantizer::new(vec![1.0], 0, 0, 6);
        assert_eq!(relu6.one(9, 0), 6);
    }

    #[test]
    fn window_output_sizes() {
        let same_s2 = Window {
            kernel: [3, 3],
            stride: [2, 2],
            pads: [0, 0, 1, 1],
        };
        assert_eq!(same_s2.output(224, 224), (112, 112));
        let five = Window {
            kernel: [5, 5],
            stride: [2, 2],
            pads: [1, 1, 2, 2],
        };
        assert_eq!(five.output(56, 56), (28, 28));
    }
}
