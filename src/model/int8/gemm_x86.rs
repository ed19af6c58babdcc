//! The pointwise convolution's matrix product on x86_64. Activations stay NHWC (each pixel's k
//! values contiguous); the weights are packed once at load so that the lanes of a vector are 8
//! output channels, `[m / 8][groups of k][8 channels][the group's values]`, and each pixel's
//! group is broadcast to every lane. A tile of `NC` × 8 channels × `NP` pixels needs no sums
//! across lanes, and its vectors are requantized while they are in registers.
//!
//! The group is what one instruction multiplies and adds into an int32 lane:
//! - AVX2 ([`KernelSet::Avx2`]): VPMADDWD, two i16 products a lane, 16 multiply-accumulates
//!   an instruction plus the add. Each run first widens its pixels to i16 (a copy of
//!   `pixels × k` values, small beside the `pixels × k × m` products), so that the pair of a
//!   pixel is one 32-bit broadcast; the weights are i16 from load. Exact for every u8 × i8 (a
//!   pair is at most 2 × 255 × 128 = 65 280). VPMADDUBSW, which takes the bytes as they are,
//!   adds its pairs in saturating i16 and would clip 255 × 127 + 255 × 127. 2 blocks × 4
//!   pixels: 8 accumulators, 2 weight vectors, a broadcast and a product in 16 registers.
//! - AVX-VNNI and AVX-512 VNNI ([`KernelSet::AvxVnni`], [`KernelSet::Avx512Vnni`]): VPDPBUSD,
//!   four u8 activations times four i8 weights into an int32 lane, exact, on the activations as
//!   they are. The VEX encoding (AVX-VNNI, 16 registers) takes 16 channels × 4 pixels; the EVEX
//!   one (AVX-512 VNNI on 256-bit vectors, 32 registers) 32 channels × 6 pixels.
//!
//! Either way a group is 4 bytes of a pixel's row and 32 bytes of a block's weights.
//!
//! The activations enter as they are (u8), so the caller folds `−x_zero · Σ w` into the bias.
//! The requantization matches [`Requantizer::one`] bit for bit: int32 to f32, times the
//! channel's scale, clamped, rounded half to even (CVTPS2DQ in the default rounding mode,
//! which Rust never changes), plus the zero point.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::kernels::Requantizer;
use super::pointwise::whole_pixels;
use crate::model::cpu::KernelSet;

/// Weight bytes of a span of channel blocks: an eighth of a 512 KiB L2, the smallest of the
/// x86 cores pinsight has met.
const SPAN_BYTES: usize = 64 * 1024;

thread_local! {
    /// AVX2: the pixels of a run widened to i16, reused by the runs on this thread.
    static WIDENED: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Debug)]
pub(super) struct X86Gemm {
    m: usize,
    k: usize,
    kernels: KernelSet,
    /// `[m / 8][groups][8][4 bytes]` (both rounded up), zero padded: for AVX2 two i16 a lane,
    /// for VNNI four i8.
    packed: Vec<u8>,
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
        let m8 = m.next_multiple_of(8);
        // Values of k a group holds, and the bytes of each.
        let (per_group, width) = if kernels == KernelSet::Avx2 {
            (2, 2)
        } else {
            (4, 1)
        };
        let groups = k.div_ceil(per_group);
        let mut packed = vec![0u8; m8 * groups * 4];
        for (o, row) in weights.chunks_exact(k).enumerate() {
            let (block, lane) = (o / 8, o % 8);
            for (kk, &w) in row.iter().enumerate() {
                let at =
                    ((block * groups + kk / per_group) * 8 + lane) * 4 + kk % per_group * width;
                if width == 2 {
                    packed[at..at + 2].copy_from_slice(&i16::from(w).to_ne_bytes());
                } else {
                    packed[at] = w as u8;
                }
            }
        }
        let mut bias = bias.to_vec();
        bias.resize(m8, 0);
        let mut scales = scales.to_vec();
        scales.resize(m8, 0.0);
        X86Gemm {
            m,
            k,
            kernels,
            packed,
            bias,
            scales,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self.kernels {
            KernelSet::AvxVnni => "pinsight_avxvnni_16x4",
            KernelSet::Avx512Vnni => "pinsight_avx512vnni_32x6",
            _ => "pinsight_avx2_madd_16x4",
        }
    }

    /// `input` is `pixels × k` u8, `output` `pixels × m` u8.
    pub(super) fn run(&self, input: &[u8], output: &mut [u8], requant: &Requantizer) {
        let pixels = whole_pixels(input, output, self.k, self.m);
        if pixels == 0 {
            return;
        }
        // SAFETY: `new` asserted that this CPU executes `self.kernels`, whose features each
        // function below enables; `run_broadcast` asserts every length its loads and stores
        // rely on.
        unsafe {
            match self.kernels {
                KernelSet::AvxVnni => {
                    run_avxvnni(self, Rows::bytes(input, self.k), output, requant)
                }
                KernelSet::Avx512Vnni => {
                    run_avx512vnni(self, Rows::bytes(input, self.k), output, requant)
                }
                _ => run_avx2(self, input, output, requant),
            }
        }
    }
}

/// The rows a kernel reads: `pixels` rows of `stride` bytes, each a whole number of 4-byte
/// groups but the last group, which may be cut short (the VNNI kernels' u8 rows).
#[derive(Clone, Copy)]
struct Rows<'a> {
    bytes: &'a [u8],
    stride: usize,
}

impl<'a> Rows<'a> {
    fn bytes(bytes: &'a [u8], stride: usize) -> Rows<'a> {
        assert!(
            stride > 0 && bytes.len().is_multiple_of(stride),
            "x86 gemm: rows of {stride} bytes"
        );
        Rows { bytes, stride }
    }

    fn count(&self) -> usize {
        self.bytes.len() / self.stride
    }
}

fn i16_bytes(values: &[i16]) -> &[u8] {
    // SAFETY: every byte of an i16 slice is initialised, and u8 has no alignment.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

/// `wide[i] = row[i]`, the rest of `wide` (one value when k is odd) zero.
#[inline]
fn widen(row: &[u8], wide: &mut [i16]) {
    let (head, rest) = wide.split_at_mut(row.len());
    for (w, &x) in head.iter_mut().zip(row) {
        *w = i16::from(x);
    }
    rest.fill(0);
}

/// `acc + Σ x·w` over one group a lane.
trait Dot {
    unsafe fn dot(acc: __m256i, x: __m256i, w: __m256i) -> __m256i;
}

struct Madd;

impl Dot for Madd {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: register-only; only reached from `run_avx2`, on a CPU with AVX2.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(x, w)) }
    }
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
unsafe fn run_avx2(g: &X86Gemm, input: &[u8], output: &mut [u8], requant: &Requantizer) {
    WIDENED.with_borrow_mut(|widened| {
        let k2 = g.k.next_multiple_of(2);
        // `widen_avx2` writes every value: no need to clear what the last run left.
        widened.resize(input.len() / g.k * k2, 0);
        // SAFETY: the CPU has AVX2 (this function's contract).
        unsafe { widen_avx2(input, g.k, widened, k2) };
        let rows = Rows::bytes(i16_bytes(widened), k2 * 2);
        // SAFETY: as above; `run_broadcast` asserts its lengths.
        unsafe { run_madd(g, rows, output, requant) }
    })
}

/// Each row of `k` values of `input` to a row of `k2` i16 of `widened`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn widen_avx2(input: &[u8], k: usize, widened: &mut [i16], k2: usize) {
    for (wide, row) in widened.chunks_exact_mut(k2).zip(input.chunks_exact(k)) {
        widen(row, wide);
    }
}

/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn run_madd(g: &X86Gemm, rows: Rows, output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2 (this function's contract); `run_broadcast` asserts its
    // lengths.
    unsafe { run_broadcast::<Madd, 2, 4>(g, rows, output, requant) }
}

/// # Safety
/// The CPU must have AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn run_avxvnni(g: &X86Gemm, rows: Rows, output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2 and AVX-VNNI (this function's contract); `run_broadcast`
    // asserts its lengths.
    unsafe { run_broadcast::<VexDot, 2, 4>(g, rows, output, requant) }
}

/// # Safety
/// The CPU must have AVX2, AVX-512 VNNI and AVX-512 VL.
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn run_avx512vnni(g: &X86Gemm, rows: Rows, output: &mut [u8], requant: &Requantizer) {
    // SAFETY: the CPU has AVX2, AVX-512 VNNI and VL (this function's contract);
    // `run_broadcast` asserts its lengths.
    unsafe { run_broadcast::<EvexDot, 4, 6>(g, rows, output, requant) }
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
    rows: Rows,
    output: &mut [u8],
    requant: &Requantizer,
) {
    let m = g.m;
    let (blocks, groups) = (m.div_ceil(8), rows.stride.div_ceil(4));
    // What every load and store in `broadcast_tile` stays inside of.
    let pixels = rows.count();
    assert!(
        pixels > 0 && output.len() == pixels * m,
        "x86 gemm: {pixels} pixels in, {} bytes out",
        output.len()
    );
    assert!(
        g.packed.len() == blocks * groups * 32
            && g.bias.len() >= blocks * 8
            && g.scales.len() >= blocks * 8,
        "x86 gemm: weights of {groups} groups a row, bias and scales padded to whole blocks"
    );
    let whole = blocks / NC * NC;
    // Spans of blocks whose weights stay in L2 while every pixel meets them (the late layers'
    // weights are larger than L2; two threads would otherwise both stream them from L3 once
    // per tile of pixels).
    let span = (SPAN_BYTES / (groups * 32)).max(NC) / NC * NC;
    for first in (0..blocks).step_by(span) {
        let end = (first + span).min(blocks);
        let end_whole = end.min(whole);
        for p0 in (0..pixels).step_by(NP) {
            for b0 in (first..end_whole).step_by(NC) {
                // SAFETY: the CPU runs `D` and AVX2 (this function's contract);
                // `b0 + NC <= whole <= blocks` and `p0 < pixels`, with the lengths asserted
                // above.
                unsafe { broadcast_tile::<D, NC, NP>(g, b0, p0, rows, output, requant) }
            }
            for b0 in end_whole.max(first)..end {
                // SAFETY: as above, with `b0 + 1 <= blocks`.
                unsafe { broadcast_tile::<D, 1, NP>(g, b0, p0, rows, output, requant) }
            }
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
    rows: Rows,
    output: &mut [u8],
    requant: &Requantizer,
) {
    let m = g.m;
    let stride = rows.stride;
    let groups = stride.div_ceil(4);
    let full = stride / 4;
    let pixels = rows.count();
    // SAFETY: the CPU runs `D` and AVX2 (the contract). Each row starts at pixel
    // `min(p0 + j, pixels − 1)`, so at `·stride` with `stride` bytes after it in `rows`; the
    // full groups read 4 bytes at `gi·4`, `gi·4 + 4 <= full·4 <= stride`; the last, partial
    // group copies `stride − full·4` bytes from `full·4`; block `b0 + c < blocks` has `groups`
    // vectors of 32 bytes from `(b0 + c)·groups·32`, and 8 bias and scale values from
    // `(b0 + c)·8`, inside what `run_broadcast` asserted; output is written for pixels
    // `p0 + j < pixels`, at `(p0 + j)·m + ch0` for `ch0 = (b0 + c)·8 < m`, `min(m − ch0, 8)`
    // bytes, so at most to `pixels·m`.
    unsafe {
        let row: [*const u8; NP] =
            std::array::from_fn(|j| rows.bytes.as_ptr().add((p0 + j).min(pixels - 1) * stride));
        let w: [*const u8; NC] =
            std::array::from_fn(|c| g.packed.as_ptr().add((b0 + c) * groups * 32));
        let mut acc = [[_mm256_setzero_si256(); NP]; NC];
        for gi in 0..full {
            let x: [i32; NP] =
                std::array::from_fn(|j| row[j].add(gi * 4).cast::<i32>().read_unaligned());
            group::<D, NC, NP>(&mut acc, &w, gi, x);
        }
        if groups > full {
            let x = row.map(|row| {
                let mut bytes = [0u8; 4];
                std::ptr::copy_nonoverlapping(
                    row.add(full * 4),
                    bytes.as_mut_ptr(),
                    stride - full * 4,
                );
                i32::from_ne_bytes(bytes)
            });
            group::<D, NC, NP>(&mut acc, &w, full, x);
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

/// Adds group `gi` of blocks `w` times the pixels' groups `x` to `acc`.
///
/// # Safety
/// `D`'s instructions and AVX2 run on this CPU; each `w[c]` has 32 readable bytes at `gi·32`.
#[inline(always)]
unsafe fn group<D: Dot, const NC: usize, const NP: usize>(
    acc: &mut [[__m256i; NP]; NC],
    w: &[*const u8; NC],
    gi: usize,
    x: [i32; NP],
) {
    // SAFETY: the contract.
    unsafe {
        let mut wv = [_mm256_setzero_si256(); NC];
        for c in 0..NC {
            wv[c] = _mm256_loadu_si256(w[c].add(gi * 32).cast());
        }
        for j in 0..NP {
            let x = _mm256_set1_epi32(x[j]);
            for c in 0..NC {
                acc[c][j] = D::dot(acc[c][j], x, wv[c]);
            }
        }
    }
}
