//! Depthwise convolution on u8 NHWC activations with i8 weights, int32 accumulation and fused
//! requantization: one output pixel at a time, channels innermost, so every tap is a
//! contiguous run of channels that SIMD lanes walk in step.
//!
//! The input is first copied inside a border whose contribution to every sum is 0, so every
//! window lies inside the copy and the taps of each output pixel sit at fixed offsets from its
//! first: the inner loops have no border case. The copy is of the u8 values with a border of
//! the zero point (`(zero_point − zero_point) × w = 0`), or, for the NEON kernels (aarch64's,
//! and a 32-bit ARM build's, which sums each pixel over whole rows of channels), of the values
//! less the zero point as i16 with a border of 0: widened once per input value instead of once
//! per tap, each tap is then one load and the multiplies. The portable kernel is the reference
//! the SIMD ones are tested against; which one runs is the [`KernelSet`] the caller passes.

use super::kernels::{Requantizer, Window};
use crate::model::cpu::KernelSet;
use crate::model::threads;

/// One depthwise convolution layer (ONNX Conv with `group` = channels, one filter per channel).
#[derive(Clone, Debug)]
pub struct DepthwiseConv {
    channels: usize,
    window: Window,
    x_zero: u8,
    /// Weights widened to i16, tap-major: `weights[tap * channels + c]`.
    weights: Vec<i16>,
    bias: Vec<i32>,
    requant: Requantizer,
    /// The same weights, bias and scales in the order the AVX2 kernel consumes them.
    #[cfg(target_arch = "x86_64")]
    avx2: x86::Avx2Layout,
}

impl DepthwiseConv {
    /// `weights` as ONNX stores them, `[channels, 1, kh, kw]`; `bias` one int32 per channel in
    /// the accumulator's scale; `x_zero` the input's zero point.
    pub fn new(
        window: Window,
        weights: &[i8],
        bias: &[i32],
        x_zero: u8,
        requant: Requantizer,
    ) -> DepthwiseConv {
        let channels = bias.len();
        let taps = window.kernel[0] * window.kernel[1];
        assert_eq!(weights.len(), channels * taps, "depthwise weights");
        assert_eq!(requant.channels(), channels, "depthwise requantizer");
        let mut tap_major = vec![0i16; taps * channels];
        for c in 0..channels {
            for t in 0..taps {
                tap_major[t * channels + c] = i16::from(weights[c * taps + t]);
            }
        }
        DepthwiseConv {
            channels,
            window,
            x_zero,
            #[cfg(target_arch = "x86_64")]
            avx2: x86::Avx2Layout::new(&tap_major, bias, requant.scales(), x_zero, channels, taps),
            weights: tap_major,
            bias: bias.to_vec(),
            requant,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Convolves `input` (`h` × `w` × channels) into `output` (the window's output size ×
    /// channels) on `kernels`. `scratch` is reused space for the padded copy of the input.
    pub fn run(
        &self,
        input: &[u8],
        (h, w): (usize, usize),
        output: &mut [u8],
        scratch: &mut DepthwiseScratch,
        kernels: KernelSet,
    ) {
        kernels.assert_runs_here();
        let c = self.channels;
        let (oh, ow) = self.window.output(h, w);
        assert_eq!(input.len(), h * w * c, "depthwise input length");
        assert_eq!(output.len(), oh * ow * c, "depthwise output length");
        #[cfg(target_arch = "aarch64")]
        if simd::runs_on(kernels) {
            let padded = self.pad_centred(input, (h, w), &mut scratch.wide);
            self.convolve((h, w), output, |first, offsets, step, out| {
                // SAFETY: the CPU runs the SIMD set (checked above); `convolve` passes a
                // window inside `padded`.
                unsafe { self.simd_run(padded, first, offsets, step, out) }
            });
            return;
        }
        // A 32-bit ARM build with NEON has one kernel set, the portable one vectorised.
        #[cfg(arm_neon)]
        {
            let padded = self.pad_centred(input, (h, w), &mut scratch.wide);
            self.convolve((h, w), output, |first, offsets, step, out| {
                self.arm_neon_run(padded, first, offsets, step, out, kernels)
            });
        }
        #[cfg(not(arm_neon))]
        {
            let padded = self.pad(input, (h, w), self.x_zero, |x| x, &mut scratch.bytes);
            #[cfg(target_arch = "x86_64")]
            if simd::runs_on(kernels) {
                self.convolve((h, w), output, |first, offsets, step, out| {
                    // SAFETY: as above.
                    unsafe { self.simd_run(padded, first, offsets, step, out) }
                });
                return;
            }
            self.convolve((h, w), output, |first, offsets, step, out| {
                self.portable_run(padded, first, offsets, step, out)
            });
        }
    }

    /// `input` (`h` × `w` × channels) as `widen` makes each value, inside a border of
    /// `border` as wide as the window's pads, in `scratch`.
    fn pad<'a, T: Copy + Send + Sync>(
        &self,
        input: &[u8],
        (h, w): (usize, usize),
        border: T,
        widen: impl Fn(u8) -> T + Sync,
        scratch: &'a mut Vec<T>,
    ) -> &'a [T] {
        let c = self.channels;
        let [top, left, bottom, right] = self.window.pads;
        let padded_width = w + left + right;
        let padded_rows = h + top + bottom;
        // Every value is written below, each once: no need to clear what the last layer left.
        scratch.resize(padded_rows * padded_width * c, border);
        let padded = &mut scratch[..];
        // Filling and copying a value weighs about an eighth of a multiply-accumulate.
        let rows = threads::part_size(padded_rows, padded_rows * padded_width * c / 8, 1);
        threads::for_each_chunk(padded, rows * padded_width * c, |part, chunk| {
            for (row, out) in chunk.chunks_exact_mut(padded_width * c).enumerate() {
                match (part * rows + row).checked_sub(top).filter(|&y| y < h) {
                    Some(y) => {
                        let (border_left, rest) = out.split_at_mut(left * c);
                        let (line, border_right) = rest.split_at_mut(w * c);
                        border_left.fill(border);
                        for (to, &x) in line.iter_mut().zip(&input[y * w * c..][..w * c]) {
                            *to = widen(x);
                        }
                        border_right.fill(border);
                    }
                    None => out.fill(border),
                }
            }
        });
        padded
    }

    /// [`Self::pad`] into the NEON kernels' copy: the values less the zero point, as i16, in a
    /// border of 0.
    #[cfg(any(target_arch = "aarch64", arm_neon))]
    fn pad_centred<'a>(
        &self,
        input: &[u8],
        (h, w): (usize, usize),
        scratch: &'a mut Vec<i16>,
    ) -> &'a [i16] {
        let zero = i16::from(self.x_zero);
        self.pad(input, (h, w), 0, |x| i16::from(x) - zero, scratch)
    }

    /// The output rows of the padded copy of an `h` × `w` input, split over the threads, each
    /// row computed as on one by `row(first, offsets, step, out)`: a run of output pixels whose
    /// first one's taps start at `padded[first + offsets[t]]` in the copy, each next one `step`
    /// values further.
    fn convolve(
        &self,
        (h, w): (usize, usize),
        output: &mut [u8],
        row: impl Fn(usize, &[usize], usize, &mut [u8]) + Sync,
    ) {
        let c = self.channels;
        let (oh, ow) = self.window.output(h, w);
        let [kh, kw] = self.window.kernel;
        let [sh, sw] = self.window.stride;
        let [_, left, _, right] = self.window.pads;
        let padded_width = w + left + right;
        assert_eq!(output.len(), oh * ow * c, "depthwise output length");
        let offsets: Vec<usize> = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky * padded_width + kx) * c))
            .collect();
        let rows = threads::part_size(oh, oh * ow * c * kh * kw, 1);
        threads::for_each_chunk(output, rows * ow * c, |part, out| {
            for (i, out) in out.chunks_exact_mut(ow * c).enumerate() {
                let first = (part * rows + i) * sh * padded_width * c;
                row(first, &offsets, sw * c, out);
            }
        });
    }

    /// A run of output pixels on the portable kernel (see [`Self::convolve`]).
    // Unused in a 32-bit NEON build, which runs `arm_neon_run`.
    #[cfg_attr(arm_neon, allow(dead_code))]
    fn portable_run<T: Tap>(
        &self,
        input: &[T],
        first: usize,
        offsets: &[usize],
        step: usize,
        output: &mut [u8],
    ) {
        let c = self.channels;
        let mut rows = Vec::with_capacity(offsets.len());
        for (p, out) in output.chunks_exact_mut(c).enumerate() {
            self.taps(input, first + p * step, offsets, &mut rows);
            self.pixel_portable(&rows, out);
        }
    }

    /// A run of output pixels on 32-bit NEON (see [`Self::convolve`]), in two passes a pixel:
    /// the sums of all its channels, tap by tap over the whole row of channels (the loop the
    /// compiler vectorises there, on the i16 copy: a load of 8 values and two multiply-adds),
    /// then their requantization in one call of [`Requantizer::run_pixels`]'s NEON code.
    #[cfg(arm_neon)]
    fn arm_neon_run(
        &self,
        input: &[i16],
        first: usize,
        offsets: &[usize],
        step: usize,
        output: &mut [u8],
        kernels: KernelSet,
    ) {
        let c = self.channels;
        let mut sums = vec![0i32; c];
        for (p, out) in output.chunks_exact_mut(c).enumerate() {
            sums.copy_from_slice(&self.bias);
            for (&offset, weights) in offsets.iter().zip(self.weights.chunks_exact(c)) {
                let row = &input[first + p * step + offset..][..c];
                for ((sum, &x), &w) in sums.iter_mut().zip(row).zip(weights) {
                    *sum += i32::from(x) * i32::from(w);
                }
            }
            self.requant.run_pixels(&sums, out, kernels);
        }
    }

    /// The taps' input rows of the output pixel whose first tap starts at `input[at]`, into
    /// `rows` (reused from pixel to pixel).
    // Unused in a 32-bit NEON build, which runs `arm_neon_run`.
    #[cfg_attr(arm_neon, allow(dead_code))]
    fn taps<'a, T>(&self, input: &'a [T], at: usize, offsets: &[usize], rows: &mut Vec<&'a [T]>) {
        rows.clear();
        rows.extend(offsets.iter().map(|&o| &input[at + o..][..self.channels]));
    }

    /// A run of output pixels on the SIMD kernels (see [`Self::convolve`]): spans of
    /// 16-channel blocks whose weights stay in L1 while every pixel of the run meets them,
    /// four pixels at a time, then one; the channels past the last whole block one at a time.
    ///
    /// # Safety
    /// The CPU runs the SIMD kernel set ([`simd::runs_on`]); the window of the run's last pixel
    /// ends inside `input`.
    #[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
    unsafe fn simd_run(
        &self,
        input: &[simd::Value],
        first: usize,
        offsets: &[usize],
        step: usize,
        output: &mut [u8],
    ) {
        /// Weight bytes of a span: 16 i16 a tap and block, a quarter of a 32 KiB L1.
        const SPAN_BYTES: usize = 8 * 1024;
        let c = self.channels;
        let pixels = output.len() / c;
        assert!(
            pixels > 0 && output.len() == pixels * c,
            "depthwise output: whole pixels"
        );
        assert!(
            !offsets.is_empty() && offsets.is_sorted(),
            "depthwise taps in order"
        );
        let last = first + (pixels - 1) * step + offsets[offsets.len() - 1] + c;
        assert!(last <= input.len(), "depthwise window outside the input");
        let blocks = c / 16;
        let span = (SPAN_BYTES / (offsets.len() * 32)).max(1);
        let starts: Vec<*const simd::Value> = offsets
            .iter()
            .map(|&o| input[first + o..].as_ptr())
            .collect();
        let mut rows = starts.clone();
        for b0 in (0..blocks).step_by(span) {
            let span = b0..(b0 + span).min(blocks);
            rows.copy_from_slice(&starts);
            let mut p = 0;
            while p < pixels {
                let out = &mut output[p * c..];
                let count = if pixels - p >= 4 { 4 } else { 1 };
                // SAFETY: the CPU runs the SIMD set (this function's contract). Every read,
                // `rows[t] + i·step` for the pixels `p..p + count`, `c` values, ends at or
                // before the window's last value (the largest offset is the last one), which
                // is inside `input` (asserted above); `pixels` asserts that `out` holds the
                // pixels it writes and that the weights and bias hold the span's channels.
                unsafe {
                    if count == 4 {
                        simd::pixels::<4>(self, &rows, step, out, span.clone())
                    } else {
                        simd::pixels::<1>(self, &rows, step, out, span.clone())
                    }
                };
                p += count;
                for row in rows.iter_mut() {
                    // `wrapping_add` is safe; a row past the end is never read (the loop ends).
                    *row = row.wrapping_add(count * step);
                }
            }
        }
        if blocks * 16 < c {
            let mut rows = Vec::with_capacity(offsets.len());
            for (p, out) in output.chunks_exact_mut(c).enumerate() {
                self.taps(input, first + p * step, offsets, &mut rows);
                self.tail_portable(&rows, out, blocks * 16);
            }
        }
    }

    /// Channels `first..` of one output pixel, one at a time.
    // Unused in a 32-bit NEON build, which runs `arm_neon_run`.
    #[cfg_attr(arm_neon, allow(dead_code))]
    fn tail_portable<T: Tap>(&self, rows: &[&[T]], out: &mut [u8], first: usize) {
        let c = self.channels;
        for ch in first..c {
            let mut acc = self.bias[ch];
            for (t, row) in rows.iter().enumerate() {
                acc += row[ch].centred(self.x_zero) * i32::from(self.weights[t * c + ch]);
            }
            out[ch] = self.requant.one(acc, ch);
        }
    }

    /// One output pixel: all channels, 16 at a time, then the rest.
    // Unused in a 32-bit NEON build, which runs `arm_neon_run`.
    #[cfg_attr(arm_neon, allow(dead_code))]
    fn pixel_portable<T: Tap>(&self, rows: &[&[T]], out: &mut [u8]) {
        const BLOCK: usize = 16;
        let c = self.channels;
        let mut first = 0;
        while first + BLOCK <= c {
            let mut acc: [i32; BLOCK] = self.bias[first..first + BLOCK].try_into().unwrap();
            for (t, row) in rows.iter().enumerate() {
                let x: &[T; BLOCK] = row[first..first + BLOCK].try_into().unwrap();
                let wt: &[i16; BLOCK] = self.weights[t * c + first..][..BLOCK].try_into().unwrap();
                for j in 0..BLOCK {
                    acc[j] += x[j].centred(self.x_zero) * i32::from(wt[j]);
                }
            }
            self.requant
                .run(&acc, first, &mut out[first..first + BLOCK]);
            first += BLOCK;
        }
        self.tail_portable(rows, out, first);
    }
}

/// The padded copies of a depthwise layer's input, reused from layer to layer.
#[derive(Debug, Default)]
pub struct DepthwiseScratch {
    /// The u8 values, in a border of the zero point.
    #[cfg_attr(arm_neon, allow(dead_code))]
    bytes: Vec<u8>,
    /// The values less the zero point, in a border of 0 (the NEON kernels').
    #[cfg(any(target_arch = "aarch64", arm_neon))]
    wide: Vec<i16>,
}

/// An input value of a padded copy, as the kernels multiply it.
#[cfg_attr(arm_neon, allow(dead_code))]
trait Tap: Copy {
    /// The value less the input's zero point.
    fn centred(self, zero: u8) -> i32;
}

impl Tap for u8 {
    #[inline(always)]
    fn centred(self, zero: u8) -> i32 {
        i32::from(self) - i32::from(zero)
    }
}

impl Tap for i16 {
    /// Already less the zero point.
    #[inline(always)]
    fn centred(self, _zero: u8) -> i32 {
        i32::from(self)
    }
}

#[cfg(target_arch = "aarch64")]
use neon as simd;
#[cfg(target_arch = "x86_64")]
use x86 as simd;

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! 16 channels of `P` adjacent output pixels at a time, in two 256-bit registers of eight
    //! int32 a pixel. Taps go in pairs: `unpack{lo,hi}_epi16` interleaves two taps' inputs
    //! channel by channel and `madd_epi16` multiplies and sums each pair into one int32 per
    //! channel (an odd last tap is paired with zeros). The inputs enter as they are, the zero
    //! point's share `x_zero · Σ w` taken off the bias at load. Unpacking works within each
    //! 128-bit half, so the accumulators hold channels in the order (0–3, 8–11) and (4–7,
    //! 12–15); the weights, bias and scales are stored in that order at load, and
    //! `packs_epi32` puts the channels back in order on the way out.

    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::DepthwiseConv;
    use crate::model::cpu::KernelSet;

    /// The order of a 16-channel block in the two accumulators.
    const ORDER: [usize; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];

    #[derive(Clone, Debug, Default)]
    pub(super) struct Avx2Layout {
        /// Per 16-channel block, per pair of taps: 32 i16, tap a and tap b of each channel
        /// side by side, channels in `ORDER`.
        weights: Vec<i16>,
        /// Per block, 16 int32 in `ORDER`, less `x_zero · Σ w` of each channel.
        bias: Vec<i32>,
        scales: Vec<f32>,
        pairs: usize,
    }

    impl Avx2Layout {
        pub(super) fn new(
            tap_major: &[i16],
            bias: &[i32],
            scales: &[f32],
            x_zero: u8,
            channels: usize,
            taps: usize,
        ) -> Avx2Layout {
            let pairs = taps.div_ceil(2);
            let blocks = channels / 16;
            let mut layout = Avx2Layout {
                weights: Vec::with_capacity(blocks * pairs * 32),
                pairs,
                ..Avx2Layout::default()
            };
            let weight = |t: usize, c: usize| {
                if t < taps {
                    tap_major[t * channels + c]
                } else {
                    0
                }
            };
            for b in 0..blocks {
                for p in 0..pairs {
                    for &j in &ORDER {
                        let c = b * 16 + j;
                        layout.weights.push(weight(2 * p, c));
                        layout.weights.push(weight(2 * p + 1, c));
                    }
                }
                for &j in &ORDER {
                    let c = b * 16 + j;
                    let sum: i32 = (0..taps).map(|t| i32::from(weight(t, c))).sum();
                    layout.bias.push(bias[c] - i32::from(x_zero) * sum);
                    layout.scales.push(scales[c]);
                }
            }
            layout
        }
    }

    /// What the padded copy holds for this kernel: the u8 values as they are.
    pub(super) type Value = u8;

    pub(super) fn runs_on(kernels: KernelSet) -> bool {
        kernels.avx2()
    }

    /// Computes the 16-channel blocks `blocks` of `P` output pixels. Pixel `p`'s tap `t`
    /// reads `rows[t] + p·step`; its output goes to `out[p·channels..]`.
    ///
    /// # Safety
    /// The CPU must have AVX2. Every row read (`rows[t] + p·step`, `channels` bytes) is inside
    /// one allocation.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pixels<const P: usize>(
        conv: &DepthwiseConv,
        rows: &[*const u8],
        step: usize,
        out: &mut [u8],
        blocks: Range<usize>,
    ) {
        let layout = &conv.avx2;
        let c = conv.channels;
        assert!(blocks.end <= c / 16, "depthwise AVX2: whole blocks");
        let blocks_end = blocks.end;
        let pairs = rows.len() / 2;
        // What the loads of weights, bias and scales and the stores stay inside of; the rows
        // are the caller's.
        assert!(out.len() >= P * c, "depthwise output");
        assert_eq!(rows.len().div_ceil(2), layout.pairs, "depthwise AVX2: taps");
        assert!(
            layout.weights.len() >= blocks_end * layout.pairs * 32
                && layout.bias.len() >= blocks_end * 16
                && layout.scales.len() >= blocks_end * 16,
            "depthwise AVX2: the layout holds every block"
        );
        let (low, high) = conv.requant.bounds();
        let (low, high) = (_mm256_set1_ps(low), _mm256_set1_ps(high));
        let out_zero = _mm256_set1_epi32(conv.requant.zero_point());
        // SAFETY: the CPU has AVX2 (this function's contract). For block `b < c / 16`: bias
        // and scales are read at `b·16..b·16 + 16`, weights at `b·pairs·32..(b + 1)·pairs·32`,
        // `out` written at `p·c + b·16..+16` for `p < P`, all within the lengths asserted
        // above; the rows (`row + p·step + b·16`, 16 bytes) by this function's contract.
        unsafe {
            for b in blocks {
                let first = b * 16;
                let bias = layout.bias.as_ptr().add(first);
                let bias = [
                    _mm256_loadu_si256(bias.cast()),
                    _mm256_loadu_si256(bias.add(8).cast()),
                ];
                let mut acc = [bias; P];
                let mut w = layout.weights.as_ptr().add(b * layout.pairs * 32);
                let load = |row: *const u8, p: usize| {
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(row.add(p * step + first).cast()))
                };
                for pair in 0..layout.pairs {
                    let w_a = _mm256_loadu_si256(w.cast());
                    let w_b = _mm256_loadu_si256(w.add(16).cast());
                    w = w.add(32);
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let x0 = load(rows[2 * pair], p);
                        let x1 = if pair < pairs {
                            load(rows[2 * pair + 1], p)
                        } else {
                            _mm256_setzero_si256()
                        };
                        acc[0] = _mm256_add_epi32(
                            acc[0],
                            _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w_a),
                        );
                        acc[1] = _mm256_add_epi32(
                            acc[1],
                            _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w_b),
                        );
                    }
                }
                let scales = layout.scales.as_ptr().add(first);
                let requant = |acc: __m256i, scale: *const f32| {
                    let v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(scale));
                    let v = _mm256_min_ps(_mm256_max_ps(v, low), high);
                    // cvtps rounds to nearest, ties to even (the default MXCSR mode).
                    _mm256_add_epi32(_mm256_cvtps_epi32(v), out_zero)
                };
                for (p, acc) in acc.iter().enumerate() {
                    let a = requant(acc[0], scales);
                    let b16 = requant(acc[1], scales.add(8));
                    // Per 128-bit half: (0–3, 4–7) and (8–11, 12–15), in order again.
                    let words = _mm256_packs_epi32(a, b16);
                    let bytes = _mm256_packus_epi16(words, words);
                    let bytes = _mm256_permute4x64_epi64::<0b1000>(bytes);
                    _mm_storeu_si128(
                        out.as_mut_ptr().add(p * c + first).cast(),
                        _mm256_castsi256_si128(bytes),
                    );
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! 16 channels of `P` adjacent output pixels at a time, four registers of four int32 per
    //! pixel: each tap's weights are loaded once for the `P` pixels, and each pixel's 16 values
    //! of the tap, already i16 and less the zero point in the padded copy, are one load
    //! multiplied into the accumulators by four SMLAL.

    use std::arch::aarch64::*;
    use std::ops::Range;

    use super::DepthwiseConv;
    use crate::model::cpu::KernelSet;

    /// What the padded copy holds for this kernel: the values less the zero point, as i16.
    pub(super) type Value = i16;

    pub(super) fn runs_on(kernels: KernelSet) -> bool {
        kernels.neon()
    }

    /// Computes the 16-channel blocks `blocks` of `P` output pixels. Pixel `p`'s tap `t` reads
    /// `rows[t] + p·step`; its output goes to `out[p·channels..]`.
    ///
    /// # Safety
    /// Every row read (`rows[t] + p·step`, `channels` values) is inside one allocation.
    pub(super) unsafe fn pixels<const P: usize>(
        conv: &DepthwiseConv,
        rows: &[*const i16],
        step: usize,
        out: &mut [u8],
        blocks: Range<usize>,
    ) {
        let c = conv.channels;
        assert!(blocks.end <= c / 16, "depthwise NEON: whole blocks");
        // What the loads of weights, bias and scales and the stores stay inside of; the rows
        // are the caller's.
        assert!(out.len() >= P * c, "depthwise output");
        assert!(
            conv.weights.len() >= rows.len() * c
                && conv.bias.len() >= c
                && conv.requant.scales().len() >= c,
            "depthwise NEON: weights, bias and scales hold every channel"
        );
        // SAFETY: the CPU has NEON (every aarch64 CPU pinsight runs on; `DepthwiseConv::run`
        // asserted it). For block `b < c / 16`, `first + 16 <= c`: bias and scales are read at
        // `first..first + 16`, the weights of tap `t` at `t·c + first..+16`, `out` written at
        // `p·c + first..+16` for `p < P`, all within the lengths asserted above; the rows
        // (`row + p·step + first`, 16 values) are inside the input by this function's contract.
        unsafe {
            let (min, max) = conv.requant.output_bounds();
            let (min, max) = (vdupq_n_u8(min), vdupq_n_u8(max));
            let out_zero = vdupq_n_s16(conv.requant.zero_point() as i16);
            let scales = conv.requant.scales().as_ptr();
            for b in blocks {
                let first = b * 16;
                let bias = conv.bias.as_ptr().add(first);
                let bias = [
                    vld1q_s32(bias),
                    vld1q_s32(bias.add(4)),
                    vld1q_s32(bias.add(8)),
                    vld1q_s32(bias.add(12)),
                ];
                let mut acc = [bias; P];
                let mut w = conv.weights.as_ptr().add(first);
                for &row in rows {
                    let w_lo = vld1q_s16(w);
                    let w_hi = vld1q_s16(w.add(8));
                    w = w.add(c);
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let x = vld1q_s16_x2(row.add(p * step + first));
                        acc[0] = vmlal_s16(acc[0], vget_low_s16(x.0), vget_low_s16(w_lo));
                        acc[1] = vmlal_high_s16(acc[1], x.0, w_lo);
                        acc[2] = vmlal_s16(acc[2], vget_low_s16(x.1), vget_low_s16(w_hi));
                        acc[3] = vmlal_high_s16(acc[3], x.1, w_hi);
                    }
                }
                let scale: [float32x4_t; 4] =
                    std::array::from_fn(|i| vld1q_f32(scales.add(first + 4 * i)));
                // Rounds to nearest, ties to even; the clamp comes after the narrowing, on 16
                // bytes at once (`Requantizer::output_bounds`).
                let requant = |acc: int32x4_t, i: usize| {
                    vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(acc), scale[i]))
                };
                for (p, acc) in acc.iter().enumerate() {
                    let lo = vqmovn_high_s32(vqmovn_s32(requant(acc[0], 0)), requant(acc[1], 1));
                    let hi = vqmovn_high_s32(vqmovn_s32(requant(acc[2], 2)), requant(acc[3], 3));
                    let lo = vqaddq_s16(lo, out_zero);
                    let hi = vqaddq_s16(hi, out_zero);
                    let bytes = vqmovun_high_s16(vqmovun_s16(lo), hi);
                    vst1q_u8(
                        out.as_mut_ptr().add(p * c + first),
                        vminq_u8(vmaxq_u8(bytes, min), max),
                    );
                }
            }
        }
    }
}
