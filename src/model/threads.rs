//! How many threads the int8 engine's layers are split over, and the pool that runs them.
//!
//! One count for the process, fixed before the first inference: `--threads` (or
//! `PINSIGHT_THREADS`, or `threads` in the config file's `[model]`) through [`set`], else the
//! cores this process may use ([`std::thread::available_parallelism`], which honours CPU
//! affinity and cgroup quotas). Work is split by output (pixels of a pointwise convolution,
//! rows of a depthwise one), each output computed exactly as on one thread, so the features are
//! bit-identical whatever the count.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use rayon::prelude::*;

/// The most threads pinsight asks for.
pub const MAX: usize = 256;

/// Multiply-accumulates below which a layer stays on one thread: handing work to another
/// thread costs microseconds, a layer this small takes about as long.
const MIN_PARALLEL_MACS: usize = 250_000;

static THREADS: OnceLock<usize> = OnceLock::new();
static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Fixes the thread count, once, before the first inference (1 to [`MAX`]). Refused when the
/// count is already fixed to another (by an earlier call or an inference).
pub fn set(threads: usize) -> Result<(), String> {
    if !(1..=MAX).contains(&threads) {
        return Err(format!("{threads} threads: expected 1 to {MAX}"));
    }
    let fixed = *THREADS.get_or_init(|| threads);
    if fixed == threads {
        Ok(())
    } else {
        Err(format!("the thread count is already {fixed}"))
    }
}

/// The thread count: [`set`]'s, else [`available`].
pub fn count() -> usize {
    *THREADS.get_or_init(available)
}

/// The cores this process may use (at most [`MAX`]): the default thread count.
pub fn available() -> usize {
    std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
        .min(MAX)
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    POOL.get_or_init(|| {
        let threads = count();
        if threads == 1 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("pinsight-int8-{i}"))
            .build()
            .map_err(|e| log::warn!("no thread pool ({e}); the int8 engine runs on one thread"))
            .ok()
    })
    .as_ref()
}

/// Splits `units` (pixels or rows) of a layer of `macs` multiply-accumulates into parts for the
/// pool: the units each part takes, a multiple of `align`, or `units` when the layer stays on
/// one thread.
pub(crate) fn part_size(units: usize, macs: usize, align: usize) -> usize {
    let threads = if pool().is_some() { count() } else { 1 };
    let parts = threads.min(macs / MIN_PARALLEL_MACS).max(1);
    units.div_ceil(parts).next_multiple_of(align.max(1)).max(1)
}

/// Runs `work` with the calling thread inside the pool, so that the layers' parts (each
/// [`for_each_chunk`]) go to threads that are awake between layers instead of waking a sleeping
/// pool for each layer.
pub(crate) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// Runs `work(part, chunk)` on each `chunk` of `output` (`chunk` elements each, the last one
/// shorter), on the pool's threads when there is more than one chunk, and returns once all
/// are done.
pub(crate) fn for_each_chunk<T, F>(output: &mut [T], chunk: usize, work: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunk = chunk.max(1);
    match pool() {
        // Inside the pool already when called from `install`, where `install` is a plain call.
        Some(pool) if output.len() > chunk => pool.install(|| {
            output
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(part, out)| work(part, out))
        }),
        _ => output
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|(part, out)| work(part, out)),
    }
}
