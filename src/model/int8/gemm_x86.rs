//! The pointwise convolution's matrix product on x86_64, in the layout of `gemm_neon.rs`:
//! activations stay NHWC (each pixel's k values contiguous) and the weights row-major, so
//! nothing is packed per inference, and each tile is requantized while it is in registers.
//!
//! Two ways:
//! - AVX2 ([`KernelSet::Avx2`]): each output is a dot product over k, 16 values at a time. The
//!   16 activations of a step are widened to i16 (VPMOVZXBW) and meet weights widened to i16 at
//!   load; VPMADDWD multiplies and adds pairs into eight int32 lanes, 16 multiply-accumulates
//!   per instruction plus an add. Exact for every u8 × i8 (a pair is at most 2 × 255 × 128 =
//!   65 280). VPMADDUBSW, which takes the bytes as they are, adds its pairs in saturating i16
//!   and would clip 255 × 127 + 255 × 127. A tile is 4 output channels × 2 pixels, one vector
//!   of partial sums each, summed across its lanes at the end.
//! - AVX-VNNI and AVX-512 VNNI ([`KernelSet::AvxVnni`], [`KernelSet::Avx512Vnni`]): VPDPBUSD
//!   multiplies four u8 activations by four i8 weights and adds them into an int32 lane, exact.
//!   The lanes of a vector are 8 output channels: the weights are packed at load as
//!   `[m / 8][k / 4][8 channels][4 values of k]`, and each pixel's four values of k are
//!   broadcast to every lane, so a tile of `NC` × 8 channels × `NP` pixels needs no sums across
//!   lanes and its vectors are requantized as they are. The VEX encoding (AVX-VNNI, 16
//!   registers) takes 16 channels × 4 pixels; the EVEX one (AVX-512 VNNI on 256-bit vectors, 32
//!   registers) 32 channels × 6 pixels.
//!
//! The activations enter as they are (u8), so the caller folds `−x_zero · Σ w` into the bias.
//! The requantization matches [`Requantizer::one`] bit for bit: int32 to f32, times the
//! channel's scale, clamped, rounded half to even (CVTPS2DQ in the default rounding mode,
//! which Rust never changes), plus the zero point.

use std::arch::x86_64::*;
use std::mem::size_of;

use super::kernels::Requantizer;
use super::pointwise::whole_pixels;
use crate::model::cpu::KernelSet;

/// AVX2: output channels a weight block holds: 4 × k values stay in L1 across the pixels they
/// meet.
const L1_WEIGHT_BYTES: usize = 16 * 1024;

/// AVX2: values of k a step takes (16 u8 widened to a 256-bit vector of i16).
const STEP: usize = 16;

/// AVX2: pixels a tile takes.
const PIXELS: usize = 2;

#[derive(Clone, Debug)]
pub(super) struct X86Gemm {
    m: usize,
    k: usize,
    /// AVX2: `k` rounded up to [`STEP`].
    kp: usize,
    kernels: KernelSet,
    /// AVX2: `[m rounded up to 4][kp]` widened to i16, zero padded.
    wide: Vec<i16>,
    /// VNNI: `[m / 8][k / 4][8][4]` (both rounded up), zero padded.
    bytes: Vec<i8>,
    /// Bias per output channel (with the activation offset folded in), padded to a multiple
    /// of 8.
    bias: Vec<i32>,
    scales: Vec<f32>,
}

impl X86Gemm {
    /// `weights` row-major `[m][k]`; `bias` with `−x_zero · Σ w` folded in. Panics unless
    /// `kernels` is one of the AVX2 sets and this CPU executes it.
    pub(super) fn new(
        weights: &[i8],
        bias: &[i32],
        k: usize,
        scales: &[f32],
        kernels: KernelSet,
    ) -> X86Gemm {
        assert!(
            kernels.avx2() && kernels.runs_here(),
            "x86 gemm on the {kernels} kernels"
        );
        let m = bias.len();
        assert!(
            k > 0 && weights.len() == m * k && scales.len() == m,
            "x86 gemm: weights are not {m}x{k} or scales not {m}"
        );
        let kp = k.next_multiple_of(STEP);
        let m8 = m.next_multiple_of(8);
        let (wide, bytes) = if kernels == KernelSet::Avx2 {
            let mut wide = vec![0i16; m8 * kp];
            for (row, weights) in wide.chunks_exact_mut(kp).zip(weights.chunks_exact(k)) {
                for (w16, &w) in row.iter_mut().zip(weights) {
                    *w16 = i16::from(w);
                }
            }
            (wide, Vec::new())
        } else {
            let groups = k.div_ceil(4);
            let mut bytes = vec![0i8; m8 * groups * 4];
            for (o, row) in weights.chunks_exact(k).enumerate() {
                let (block, lane) = (o / 8, o % 8);
                for (kk, &w) in row.iter().enumerate() {
                    bytes[((block * groups + kk / 4) * 8 + lane) * 4 + kk % 4] = w;
                }
            }
            (Vec::new(), bytes)
        };
        let mut bias = bias.to_vec();
        bias.resize(m8, 0);
        let mut scales = scales.to_vec();
        scales.resize(m8, 0.0);
        X86Gemm {
            m,
            k,
            kp,
            kernels,
            wide,
            bytes,
            bias,
            scales,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self.kernels {
            KernelSet::AvxVnni => "pinsight_avxvnni_16x4",
            KernelSet::Avx512Vnni => "pinsight_avx512vnni_32x6",
            _ => "pinsight_avx2_madd_4x2",
        }
    }

    /// `input` is `pixels × k` u8, `output` `pixels × m` u8.
    pub(super) fn run(&self, input: &[u8], output: &mut [u8], requant: &Requantizer) {
        if whole_pixels(input, output, self.k, self.m) == 0 {
            return;
        }
        // SAFETY: `new` asserted that this CPU executes `self.kernels`, whose features each
        // function below enables; `run` asserts every length its loads and stores rely on.
        unsafe {
            match self.kernels {
                KernelSet::AvxVnni => run_avxvnni(self, input, output, requant),
                KernelSet::Avx512Vnni => run_avx512vnni(self, input, output, requant),
                _ => run_avx2(self, input, output, requant),
            }
        }
    }
}

/// `acc + Σ x·w` over groups of four u8 × i8, one int32 lane a group.
trait Dot {
    unsafe fn dot(acc: __m256i, x: __m256i, w: __m256i) -> __m256i;
}

struct VexDot;

impl Dot for VexDot {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: register-only; only reached from `run_avxvnni`, on a CPU with AVX-VNNI.
        unsafe { _mm256_dpbusd_avx_epi32(acc, x, w) }
    }
}

struct EvexDot;

impl Dot for EvexDot {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: register-only; only reached from `run_avx512vnni`, on a CPU with AVX-512
        // VNNI and VL.
        unsafe { _mm256_dpbusd_epi32(acc, x, w) }
    }
}

/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(g: &X86Gemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2 (this function's contract); `run_madd` asserts its lengths.
    unsafe { run_madd(g, input, output, requant) }
}

/// # Safety
/// The CPU must have AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn run_avxvnni(g: &X86Gemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2 and AVX-VNNI (this function's contract); `run_broadcast`
    // asserts its lengths.
    unsafe { run_broadcast::<VexDot, 2, 4>(g, input, output, requant) }
}

/// # Safety
/// The CPU must have AVX2, AVX-512 VNNI and AVX-512 VL.
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn run_avx512vnni(g: &X86Gemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2, AVX-512 VNNI and VL (this function's contract);
    // `run_broadcast` asserts its lengths.
    unsafe { run_broadcast::<EvexDot, 4, 6>(g, input, output, requant) }
}

/// The matrix product on VPMADDWD, tiles of 4 channels × [`PIXELS`] pixels.
///
/// # Safety
/// AVX2 runs on this CPU. The lengths are asserted here.
#[inline(always)]
unsafe fn run_madd(g: &X86Gemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    const P: usize = PIXELS;
    let (m, k, kp, weights) = (g.m, g.k, g.kp, &g.wide);
    let m4 = m.next_multiple_of(4);
    // What every load and store below stays inside of.
    assert!(k > 0 && kp >= k && kp.is_multiple_of(STEP), "x86 gemm: k");
    assert!(
        weights.len() >= m4 * kp && g.bias.len() >= m4 && g.scales.len() >= m4,
        "x86 gemm: weights, bias and scales padded to whole tiles"
    );
    let pixels = whole_pixels(input, output, k, m);
    assert!(pixels > 0, "x86 gemm: no pixel");
    let full = k / STEP;
    let tail = k > full * STEP;
    let block = (L1_WEIGHT_BYTES / (kp * size_of::<i16>())).max(4) / 4 * 4;
    // The last, partial step of k of each pixel of a tile, copied so that a whole-step load
    // stays inside the buffer (what the copy holds past k meets zero weights).
    let mut tails = [[0u8; STEP]; P];
    // The 16 activations of a step, widened to i16; the 16 weights are i16 already.
    let activations = |p: *const u8| {
        // SAFETY: the caller's: 16 readable bytes at `p`, a CPU with AVX2.
        unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast())) }
    };
    // SAFETY: the CPU runs AVX2 (this function's contract). With the lengths asserted above:
    // each of the P rows starts at pixel `min(p0 + j, pixels − 1)`, so at `·k` with `k` bytes
    // after it in `input`; the full steps `s < full` read `s·16..s·16 + 16 <= k` bytes, the tail
    // copies `k − full·16` bytes from `full·16` (to `k`) into an array of 16 bytes; weight rows
    // `c0 + i < m4` are read at `·kp + s·16..+16 <= kp` i16 (32 bytes), bias and scales at
    // `c0..c0 + 4 <= m4`;
    // output is written for pixels `p0 + j < pixels` at `(p0 + j)·m + c0`, `min(m − c0, 4)`
    // bytes, so at most to `pixels·m`.
    unsafe {
        let (low, high) = requant.bounds();
        let (low, high) = (_mm_set1_ps(low), _mm_set1_ps(high));
        let zero = _mm_set1_epi32(requant.zero_point());
        for block_start in (0..m).step_by(block) {
            let block_end = (block_start + block).min(m);
            for p0 in (0..pixels).step_by(P) {
                // Rows past the last pixel repeat it; their results are not stored.
                let rows: [*const u8; P] =
                    std::array::from_fn(|j| input.as_ptr().add((p0 + j).min(pixels - 1) * k));
                if tail {
                    for (tail, &row) in tails.iter_mut().zip(&rows) {
                        std::ptr::copy_nonoverlapping(
                            row.add(full * STEP),
                            tail.as_mut_ptr(),
                            k - full * STEP,
                        );
                    }
                }
                for c0 in (block_start..block_end).step_by(4) {
                    let w: [*const i16; 4] =
                        std::array::from_fn(|i| weights.as_ptr().add((c0 + i) * kp));
                    let mut acc = [[_mm256_setzero_si256(); P]; 4];
                    let mut step = |s: usize, x: [__m256i; P]| {
                        for i in 0..4 {
                            let w = _mm256_loadu_si256(w[i].add(s * STEP).cast());
                            for j in 0..P {
                                acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(w, x[j]));
                            }
                        }
                    };
                    for s in 0..full {
                        step(s, rows.map(|row| activations(row.add(s * STEP))));
                    }
                    if tail {
                        let x = std::array::from_fn(|j| activations(tails[j].as_ptr()));
                        step(full, x);
                    }
                    // Per pixel j: the four channels' sums, then bias, scale, clamp, round.
                    let bias = _mm_loadu_si128(g.bias.as_ptr().add(c0).cast());
                    let scale = _mm_loadu_ps(g.scales.as_ptr().add(c0));
                    let pixel = |j: usize| {
                        if j >= P {
                            return _mm_setzero_si128();
                        }
                        let halves = _mm256_hadd_epi32(
                            _mm256_hadd_epi32(acc[0][j], acc[1][j]),
                            _mm256_hadd_epi32(acc[2][j], acc[3][j]),
                        );
                        let sums = _mm_add_epi32(
                            _mm256_castsi256_si128(halves),
                            _mm256_extracti128_si256::<1>(halves),
                        );
                        let v = _mm_mul_ps(_mm_cvtepi32_ps(_mm_add_epi32(sums, bias)), scale);
                        let v = _mm_min_ps(_mm_max_ps(v, low), high);
                        _mm_add_epi32(_mm_cvtps_epi32(v), zero)
                    };
                    let bytes = _mm_packus_epi16(
                        _mm_packs_epi32(pixel(0), pixel(1)),
                        _mm_packs_epi32(pixel(2), pixel(3)),
                    );
                    let mut words = [0u32; 4];
                    _mm_storeu_si128(words.as_mut_ptr().cast(), bytes);
                    let channels = (m - c0).min(4);
                    for (j, word) in words.iter().enumerate().take((pixels - p0).min(P)) {
                        let out = output.as_mut_ptr().add((p0 + j) * m + c0);
                        if channels == 4 {
                            out.cast::<u32>().write_unaligned(*word);
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

/// The matrix product on `D`'s dot products, weights packed for broadcasting (see the module
/// docs): tiles of `NC` blocks of 8 channels × `NP` pixels, then single blocks for the channels
/// left over.
///
/// # Safety
/// `D`'s instructions and AVX2 run on this CPU. The lengths are asserted here.
#[inline(always)]
unsafe fn run_broadcast<D: Dot, const NC: usize, const NP: usize>(
    g: &X86Gemm,
    input: &[u8],
    output: &mut [u8],
    requant: &Requantizer,
) {
    let (m, k) = (g.m, g.k);
    let (blocks, groups) = (m.div_ceil(8), k.div_ceil(4));
    // What every load and store in `broadcast_tile` stays inside of.
    assert!(k > 0, "x86 gemm: k");
    assert!(
        g.bytes.len() >= blocks * groups * 32
            && g.bias.len() >= blocks * 8
            && g.scales.len() >= blocks * 8,
        "x86 gemm: weights, bias and scales padded to whole blocks"
    );
    let pixels = whole_pixels(input, output, k, m);
    let whole = blocks / NC * NC;
    for p0 in (0..pixels).step_by(NP) {
        for b0 in (0..whole).step_by(NC) {
            // SAFETY: the CPU runs `D` and AVX2 (this function's contract); `b0 + NC <= blocks`
            // and `p0 < pixels`, with the lengths asserted above.
            unsafe { broadcast_tile::<D, NC, NP>(g, b0, p0, input, output, requant) }
        }
        for b0 in whole..blocks {
            // SAFETY: as above, with `b0 + 1 <= blocks`.
            unsafe { broadcast_tile::<D, 1, NP>(g, b0, p0, input, output, requant) }
        }
    }
}

/// Channel blocks `b0..b0 + NC`, pixels `p0..p0 + NP` (those past the last pixel repeat it
/// and are not stored).
///
/// # Safety
/// `D`'s instructions and AVX2 run on this CPU; `run_broadcast`'s asserts hold, `b0 + NC` is
/// at most the number of channel blocks and `p0` below the number of pixels.
#[inline(always)]
unsafe fn broadcast_tile<D: Dot, const NC: usize, const NP: usize>(
    g: &X86Gemm,
    b0: usize,
    p0: usize,
    input: &[u8],
    output: &mut [u8],
    requant: &Requantizer,
) {
    let (m, k) = (g.m, g.k);
    let groups = k.div_ceil(4);
    let full = k / 4;
    let pixels = input.len() / k;
    // SAFETY: the CPU runs `D` and AVX2 (the contract). Each row starts at pixel
    // `min(p0 + j, pixels − 1)`, so at `·k` with `k` bytes after it in `input`; the full groups
    // read 4 bytes at `gi·4`, `gi·4 + 4 <= full·4 <= k`; the last, partial group copies
    // `k − full·4` bytes from `full·4`; block `b0 + c < blocks` has `groups` vectors of 32 bytes
    // from `(b0 + c)·groups·32`, and 8 bias and scale values from `(b0 + c)·8`, inside what
    // `run_broadcast` asserted; output is written for pixels `p0 + j < pixels`, at
    // `(p0 + j)·m + ch0` for `ch0 = (b0 + c)·8 < m`, `min(m − ch0, 8)` bytes, so at most to
    // `pixels·m`.
    unsafe {
        let rows: [*const u8; NP] =
            std::array::from_fn(|j| input.as_ptr().add((p0 + j).min(pixels - 1) * k));
        let w: [*const i8; NC] =
            std::array::from_fn(|c| g.bytes.as_ptr().add((b0 + c) * groups * 32));
        let mut acc = [[_mm256_setzero_si256(); NP]; NC];
        let mut group = |gi: usize, x: [i32; NP]| {
            let w: [__m256i; NC] =
                std::array::from_fn(|c| _mm256_loadu_si256(w[c].add(gi * 32).cast()));
            for j in 0..NP {
                let x = _mm256_set1_epi32(x[j]);
                for c in 0..NC {
                    acc[c][j] = D::dot(acc[c][j], x, w[c]);
                }
            }
        };
        for gi in 0..full {
            group(
                gi,
                rows.map(|row| row.add(gi * 4).cast::<i32>().read_unaligned()),
            );
        }
        if groups > full {
            let x = rows.map(|row| {
                let mut bytes = [0u8; 4];
                std::ptr::copy_nonoverlapping(row.add(full * 4), bytes.as_mut_ptr(), k - full * 4);
                i32::from_ne_bytes(bytes)
            });
            group(full, x);
        }
        let (low, high) = requant.bounds();
        let (low, high) = (_mm256_set1_ps(low), _mm256_set1_ps(high));
        let zero = _mm256_set1_epi32(requant.zero_point());
        for (c, acc) in acc.iter().enumerate() {
            let ch0 = (b0 + c) * 8;
            if ch0 >= m {
                continue;
            }
            let channels = (m - ch0).min(8);
            let bias = _mm256_loadu_si256(g.bias.as_ptr().add(ch0).cast());
            let scale = _mm256_loadu_ps(g.scales.as_ptr().add(ch0));
            for (j, &sums) in acc.iter().enumerate().take((pixels - p0).min(NP)) {
                let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sums, bias)), scale);
                let v = _mm256_min_ps(_mm256_max_ps(v, low), high);
                let v = _mm256_add_epi32(_mm256_cvtps_epi32(v), zero);
                let words =
                    _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let bytes = _mm_packus_epi16(words, words);
                let out = output.as_mut_ptr().add((p0 + j) * m + ch0);
                if channels == 8 {
                    _mm_storel_epi64(out.cast(), bytes);
                } else {
                    let mut lanes = [0u8; 16];
                    _mm_storeu_si128(lanes.as_mut_ptr().cast(), bytes);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), out, channels);
                }
            }
        }
    }
}
