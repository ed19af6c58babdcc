//! How many threads the int8 engine's layers are split over, and the crew that runs them.
//!
//! One count for the process, fixed before the first inference: `--threads` (or
//! `PINSIGHT_THREADS`, or `threads` in the config file's `[model]`) through [`set`], else the
//! cores this process may use ([`std::thread::available_parallelism`], which honours CPU
//! affinity and cgroup quotas). Work is split by output (pixels of a pointwise convolution,
//! rows of a depthwise one), each output computed exactly as on one thread, so the features are
//! bit-identical whatever the count.
//!
//! The calling thread and `count − 1` helpers share each layer. A layer of the late, small
//! feature maps takes tens of microseconds, about what waking a sleeping thread costs, so while
//! an inference runs (`install`) the helpers wait for the next layer by spinning; between
//! inferences they sleep. A layer's parts are claimed from one atomic word that holds the
//! layer's number and the parts not yet claimed, so a helper late from one layer can never take
//! a part of the next.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};

/// The most threads pinsight asks for.
pub const MAX: usize = 256;

/// Multiply-accumulates below which a layer stays on one thread: handing work to another
/// thread costs microseconds, a layer this small takes about as long.
const MIN_PARALLEL_MACS: usize = 250_000;

static THREADS: OnceLock<usize> = OnceLock::new();
static CREW: OnceLock<Option<Crew>> = OnceLock::new();

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

fn crew() -> Option<&'static Crew> {
    CREW.get_or_init(|| {
        let threads = count();
        if threads == 1 {
            return None;
        }
        Crew::start(threads - 1)
            .map_err(|e| log::warn!("no helper threads ({e}); the int8 engine runs on one thread"))
            .ok()
    })
    .as_ref()
}

/// Splits `units` (pixels or rows) of a layer of `macs` multiply-accumulates into parts for the
/// crew: the units each part takes, a multiple of `align`, or `units` when the layer stays on
/// one thread.
pub(crate) fn part_size(units: usize, macs: usize, align: usize) -> usize {
    let threads = if crew().is_some() { count() } else { 1 };
    let parts = threads.min(macs / MIN_PARALLEL_MACS).max(1);
    units.div_ceil(parts).next_multiple_of(align.max(1)).max(1)
}

/// Runs `work` (an inference) with the helpers awake: they spin between its layers instead of
/// sleeping, and go back to sleep when it returns.
pub(crate) fn install<R>(work: impl FnOnce() -> R) -> R {
    match crew() {
        Some(crew) => crew.install(work),
        None => work(),
    }
}

/// Runs `work(part, chunk)` on each `chunk` of `output` (`chunk` elements each, the last one
/// shorter), shared with the helpers when there is more than one chunk, and returns once all
/// are done.
pub(crate) fn for_each_chunk<T, F>(output: &mut [T], chunk: usize, work: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    match crew() {
        Some(crew) => crew.for_each_chunk(output, chunk, work),
        None => serial(output, chunk.max(1), work),
    }
}

/// [`for_each_chunk`] on the calling thread alone.
fn serial<T>(output: &mut [T], chunk: usize, work: impl Fn(usize, &mut [T])) {
    output
        .chunks_mut(chunk)
        .enumerate()
        .for_each(|(part, out)| work(part, out))
}

/// A pointer to the output that the helpers' parts are cut from.
struct SharedMut<T>(*mut T);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper, not the
    /// field).
    fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: the parts made from it are disjoint (see `for_each_chunk`), and `T: Send` there lets
// each move to the thread that fills it.
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<T> {}

/// The helper threads, started once and kept for the process.
struct Crew {
    shared: Arc<Shared>,
    /// Held while a layer is shared out.
    turn: Mutex<()>,
}

impl Crew {
    fn start(helpers: usize) -> std::io::Result<Crew> {
        // Made first, so that if a spawn fails, its drop stops the helpers already started.
        let crew = Crew {
            shared: Arc::new(Shared::default()),
            turn: Mutex::new(()),
        };
        for i in 0..helpers {
            let shared = Arc::clone(&crew.shared);
            std::thread::Builder::new()
                .name(format!("pinsight-int8-{}", i + 1))
                .spawn(move || shared.help())?;
        }
        Ok(crew)
    }

    /// See [`install`].
    fn install<R>(&self, work: impl FnOnce() -> R) -> R {
        /// Lets the helpers sleep again however `work` ends.
        struct Awake<'a>(&'a Shared);
        impl Drop for Awake<'_> {
            fn drop(&mut self) {
                self.0.inferences.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.shared.inferences.fetch_add(1, Ordering::SeqCst);
        let _awake = Awake(&self.shared);
        if self.shared.sleepers.load(Ordering::SeqCst) > 0 {
            self.shared.wake();
        }
        work()
    }

    /// See [`for_each_chunk`].
    fn for_each_chunk<T, F>(&self, output: &mut [T], chunk: usize, work: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let chunk = chunk.max(1);
        let parts = output.len().div_ceil(chunk);
        if parts < 2 {
            return serial(output, chunk, work);
        }
        // One layer at a time: a second caller (another inference at the same moment) runs
        // its layer alone rather than wait.
        let _turn = match self.turn.try_lock() {
            Ok(turn) => turn,
            // A part panicked while the lock was held, and the panic was raised after every
            // part was done: nothing is left half shared.
            Err(TryLockError::Poisoned(turn)) => turn.into_inner(),
            Err(TryLockError::WouldBlock) => return serial(output, chunk, work),
        };
        let len = output.len();
        let base = SharedMut(output.as_mut_ptr());
        let work = &work;
        let part = move |i: usize| {
            let start = i * chunk;
            let end = (start + chunk).min(len);
            // SAFETY: `base` points at the `len` elements of `output`, borrowed mutably for
            // this whole call; each part index `i < parts` runs exactly once (`Shared::run`),
            // and the parts are disjoint ranges `start..end` inside `0..len`.
            let out = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
            work(i, out)
        };
        self.shared.run(parts, &part);
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// A layer's part to run: `work(index)`.
type Part<'a> = dyn Fn(usize) + Sync + 'a;

#[derive(Default)]
struct Shared {
    /// The layer's number (high 32 bits) and how many of its parts are not yet claimed (low 32
    /// bits). A part is claimed by a compare-and-swap that takes one off: the claim holds only
    /// while the word still names its layer, and the index claimed is the count left after it.
    claims: AtomicU64,
    /// The running layer's `&Part`, valid while one of its parts is claimed and not done.
    work: AtomicPtr<&'static Part<'static>>,
    /// Parts of the running layer finished (or panicked).
    done: AtomicUsize,
    panicked: AtomicBool,
    /// Inferences running ([`install`]): while there is one, idle helpers spin.
    inferences: AtomicUsize,
    /// Set when the crew is dropped: the helpers return.
    stop: AtomicBool,
    /// Helpers asleep, and what they sleep on.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    alarm: Condvar,
}

impl Shared {
    /// Runs `parts` parts of `work` on the calling thread and the helpers, and returns when all
    /// are done; a panic in any part is raised here, after all are done.
    fn run(&self, parts: usize, work: &Part) {
        let parts_word = u32::try_from(parts).expect("parts of a layer fit in 32 bits");
        self.done.store(0, Ordering::Relaxed);
        self.panicked.store(false, Ordering::Relaxed);
        // SAFETY: only the lifetime changes. The helpers read `work` only after claiming a part,
        // and this call returns only once every part is done, so no use outlives `work`.
        let work: &'static Part<'static> = unsafe { std::mem::transmute(work) };
        let slot: &&Part = &work;
        self.work
            .store((slot as *const &Part).cast_mut(), Ordering::Relaxed);
        // The last part is the caller's own, kept out of the claims: the same thread takes the
        // same part of every layer, whose input the same part of the layer before left in its
        // cache.
        let layer = (self.claims.load(Ordering::Relaxed) >> 32).wrapping_add(1);
        self.claims
            .store(layer << 32 | u64::from(parts_word - 1), Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
        self.run_part(work, parts - 1);
        while self.claim_one() {}
        let mut waited = 0;
        while self.done.load(Ordering::Acquire) < parts {
            pause(&mut waited);
        }
        self.work.store(std::ptr::null_mut(), Ordering::Relaxed);
        if self.panicked.load(Ordering::Relaxed) {
            panic!("a part of an int8 layer panicked");
        }
    }

    /// Claims and runs one part of the running layer; false when none is left.
    fn claim_one(&self) -> bool {
        let mut claims = self.claims.load(Ordering::Acquire);
        loop {
            let left = claims & u64::from(u32::MAX);
            if left == 0 {
                return false;
            }
            match self.claims.compare_exchange_weak(
                claims,
                claims - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => claims = now,
            }
        }
        // SAFETY: the part just claimed is not done, so the layer's `run` is still waiting
        // and the `&Part` it stored (before publishing the claims this thread acquired) lives.
        let work = unsafe { *self.work.load(Ordering::Relaxed) };
        self.run_part(work, (claims & u64::from(u32::MAX)) as usize - 1);
        true
    }

    /// Runs part `index` of `work` and counts it done, panicked or not.
    fn run_part(&self, work: &Part, index: usize) {
        if panic::catch_unwind(AssertUnwindSafe(|| work(index))).is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Release);
    }

    /// A helper's life: run parts while there are any, spin while an inference runs, sleep
    /// otherwise.
    fn help(&self) {
        let mut waited = 0;
        while !self.stop.load(Ordering::Relaxed) {
            if self.claim_one() {
                waited = 0;
                continue;
            }
            if self.inferences.load(Ordering::Relaxed) > 0 {
                pause(&mut waited);
                continue;
            }
            let guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let idle = self.inferences.load(Ordering::SeqCst) == 0
                && self.claims.load(Ordering::SeqCst) & u64::from(u32::MAX) == 0
                && !self.stop.load(Ordering::SeqCst);
            let guard = if idle {
                self.alarm.wait(guard).unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            waited = 0;
        }
    }

    /// Wakes the sleeping helpers.
    fn wake(&self) {
        let _guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.alarm.notify_all();
    }
}

/// One turn of a wait: a spin, or once the wait is long (more threads than cores, or a thread
/// descheduled) a yield of the core, so that a waiting thread never holds up a working one.
fn pause(waited: &mut u32) {
    const SPINS: u32 = 1 << 12;
    if *waited < SPINS {
        *waited += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of every layer runs once, and each chunk is the one its index names, through
    /// many layers of every size, with helpers awake and asleep.
    #[test]
    fn every_part_runs_once() {
        let crew = Crew::start(3).unwrap();
        for layer in 0..2000usize {
            let len = 1 + layer % 97;
            let chunk = 1 + layer % 7;
            let mut output = vec![0u32; len];
            let work = |part: usize, out: &mut [u32]| {
                for (i, value) in out.iter_mut().enumerate() {
                    *value += (part * chunk + i) as u32 + 1;
                }
            };
            if layer % 2 == 0 {
                crew.install(|| crew.for_each_chunk(&mut output, chunk, work));
            } else {
                crew.for_each_chunk(&mut output, chunk, work);
            }
            let expected: Vec<u32> = (1..=len as u32).collect();
            assert_eq!(
                output, expected,
                "layer {layer}: {len} values in chunks of {chunk}"
            );
        }
    }

    /// A part that panics panics the caller once every part is done, and the crew goes on.
    #[test]
    fn a_panicking_part_panics_the_caller() {
        let crew = Crew::start(2).unwrap();
        let ran = AtomicUsize::new(0);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            crew.for_each_chunk(&mut [0u8; 8], 1, |part, _| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert_ne!(part, 5, "part 5 fails");
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        let mut output = [0u8; 8];
        crew.for_each_chunk(&mut output, 3, |_, out| out.fill(1));
        assert_eq!(output, [1; 8]);
    }
}
