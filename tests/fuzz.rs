//! Fuzzing on stable Rust (issue 11: nothing a user points pinsight at may crash it, hang it or
//! exhaust a board's memory). The targets are in `fuzz/targets.rs`: a camera frame, an image
//! file, an int8 ONNX backbone, a head folder, a deployment config.
//!
//! Each test runs one target over every file of its corpus, `tests/fuzz/corpus/<target>/`,
//! then over mutations of them (`fuzz/mutate.rs`). An input whose outcome (the error pinsight
//! gave, numbers aside) is new joins the inputs mutated further. Each execution runs under
//! `catch_unwind`, with this thread's allocations counted and a watchdog over its time:
//!
//! - a panic fails the test, naming the target and the file the input was written to;
//! - an execution that holds more than [`memory_limit`] at once, or runs longer than
//!   [`time_limit`], ends the process (there is no unwinding out of an allocator or a loop)
//!   with the target and the file that holds the input, written before every execution.
//!
//! Environment:
//! - `PINSIGHT_FUZZ_SECONDS=N`: mutate for N seconds a target instead of a fixed count, from a
//!   random seed; crashing inputs are saved in `tests/fuzz/crashes/<target>/` (`scripts/fuzz`);
//! - `PINSIGHT_FUZZ_SEED=N`: the seed (printed by every run, to repeat one);
//! - `PINSIGHT_FUZZ_EXECS=N`: mutations a target in the default pass (default 3000; 1000 under
//!   an emulator, where the model-loading targets run some fifty times slower);
//! - `PINSIGHT_FUZZ_OUTCOMES=1`: print each new outcome, to see what the inputs reach;
//! - `PINSIGHT_FUZZ_TIMEOUT=S`, `PINSIGHT_FUZZ_MEMORY_MIB=M`: the limits above.
//!
//! `cargo test --release --test fuzz -- --ignored write_seeds` writes the seed corpus files
//! that are made rather than found (see `fuzz/seeds.rs` and `tests/fuzz/README.md`).

mod common;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/seeds.rs"]
mod seeds;
#[path = "fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use mutate::{Rng, mutate, shape_of};

/// The repository, for `targets.rs` (which `fuzz/`'s libFuzzer targets include too).
const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn frame() {
    fuzz("frame");
}

#[test]
fn decode() {
    fuzz("decode");
}

#[test]
fn int8_graph() {
    fuzz("int8_graph");
}

#[test]
fn head() {
    fuzz("head");
}

#[test]
fn config() {
    fuzz("config");
}

/// The corpus reaches the deep end: the tiny backbone loads and runs on the int8 engine, and
/// the head seeds load on it and classify.
#[test]
fn seeds_load_and_run() {
    let corpus = targets::corpus_dir();
    let backbone = std::fs::read(corpus.join("int8_graph/tiny-backbone.onnx")).unwrap();
    assert_eq!(targets::int8_graph(&backbone), "ok");
    for file in [
        "seed-head.onnx",
        "seed-labels.txt",
        "seed-head.json",
        "seed-SHA256SUMS",
    ] {
        let input = std::fs::read(corpus.join("head").join(file)).unwrap();
        assert_eq!(targets::head(&input), "ok", "{file}");
    }
}

#[test]
#[ignore = "writes the seed corpus into tests/fuzz/corpus/"]
fn write_seeds() {
    seeds::write_all(&targets::corpus_dir());
}

// ---------------------------------------------------------------------------------------------
// Settings

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// How long one execution may take: 20 s natively, 10 minutes under an emulator.
fn time_limit() -> Duration {
    let default = if common::emulated() { 600 } else { 20 };
    Duration::from_secs(env_number("PINSIGHT_FUZZ_TIMEOUT").unwrap_or(default))
}

/// The most memory one execution may hold at once: 1 GiB. Decoding holds about three times
/// `MAX_DECODED_BYTES` (256 MiB) at most.
fn memory_limit() -> usize {
    env_number("PINSIGHT_FUZZ_MEMORY_MIB").map_or(1 << 30, |mib| (mib as usize) << 20)
}

enum Budget {
    /// Mutations in the default pass.
    Executions(u64),
    /// The long mode: mutate until then.
    Until(Instant),
}

// ---------------------------------------------------------------------------------------------
// Memory: every allocation of a thread that runs a target is counted.

struct Counting;

thread_local! {
    /// Bytes this thread holds now, and the most it held since the execution began; `None`
    /// outside executions.
    static HELD: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// For the message of a process ended by [`Counting`]: the target and its input's file.
    static RUNNING: Cell<&'static str> = const { Cell::new("") };
}

/// Ends the process with `message` on stderr, without allocating.
fn die(parts: &[&str]) -> ! {
    for part in parts {
        // SAFETY: writes `part.len()` bytes of a live `&str` to file descriptor 2.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    std::process::abort()
}

fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap()
}

fn count(grow: usize, shrink: usize) {
    let _ = HELD.try_with(|held| {
        if let Some((now, peak)) = held.get() {
            let now = (now + grow).saturating_sub(shrink);
            held.set(Some((now, peak.max(now))));
            if now > LIMIT.get() {
                held.set(None);
                let mut buf = [0; 20];
                let running = RUNNING.with(Cell::get);
                die(&[
                    "\nfuzz: the execution holds ",
                    decimal(now, &mut buf),
                    " bytes, beyond the limit (PINSIGHT_FUZZ_MEMORY_MIB): ",
                    running,
                    "\n",
                ]);
            }
        }
    });
}

/// The memory limit, read once before the first execution.
struct Limit(std::sync::atomic::AtomicUsize);

impl Limit {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

static LIMIT: Limit = Limit(std::sync::atomic::AtomicUsize::new(usize::MAX));

// SAFETY: every call is passed on to the system allocator unchanged; `count` only does
// arithmetic on thread-local cells (and may end the process).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        // SAFETY: the caller's pointer, layout and size, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Time: a watchdog over every thread's current execution.

/// The running executions: (target, input file, start), by thread.
static EXECUTIONS: Mutex<BTreeMap<u64, (&'static str, Instant)>> = Mutex::new(BTreeMap::new());

fn start_watchdog() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let limit = time_limit();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let executions = EXECUTIONS.lock().unwrap_or_else(|e| e.into_inner());
                for (running, started) in executions.values() {
                    if started.elapsed() > limit {
                        die(&[
                            "\nfuzz: an execution ran longer than the limit \
                             (PINSIGHT_FUZZ_TIMEOUT): ",
                            running,
                            "\n",
                        ]);
                    }
                }
            }
        });
    });
}

fn thread_key() -> u64 {
    thread_local! {
        static KEY: u64 = {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
    }
    KEY.with(|k| *k)
}

// ---------------------------------------------------------------------------------------------
// Panics: the message is kept for the report rather than printed for each input.

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let place = info
                    .location()
                    .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC.with_borrow_mut(|p| *p = Some(format!("{message}{place}")));
            } else {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// The driver

struct Crash {
    message: String,
    file: PathBuf,
}

fn fuzz(name: &'static str) {
    let (_, target) = *targets::TARGETS.iter().find(|(n, _)| *n == name).unwrap();
    let long = env_number("PINSIGHT_FUZZ_SECONDS");
    let seed = env_number("PINSIGHT_FUZZ_SEED").unwrap_or_else(|| {
        if long.is_some() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64 ^ u64::from(std::process::id())
        } else {
            0x5EED
        }
    });
    let budget = match long {
        Some(seconds) => Budget::Until(Instant::now() + Duration::from_secs(seconds)),
        None => Budget::Executions(
            env_number("PINSIGHT_FUZZ_EXECS").unwrap_or(if common::emulated() {
                1000
            } else {
                3000
            }),
        ),
    };
    LIMIT
        .0
        .store(memory_limit(), std::sync::atomic::Ordering::Relaxed);
    install_panic_hook();
    start_watchdog();

    let corpus = read_corpus(name);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz")
        .join(name);
    std::fs::create_dir_all(&work).unwrap();
    let current = work.join(format!("current-{}", std::process::id()));
    let running: &'static str = format!("target {name}, input in {}", current.display()).leak();
    let crash_dir = if long.is_some() {
        targets::corpus_dir()
            .parent()
            .unwrap()
            .join("crashes")
            .join(name)
    } else {
        work.clone()
    };
    // Mutated inputs stay near the corpus's sizes.
    let max_len = corpus.iter().map(Vec::len).max().unwrap_or(0).max(256) * 2;

    let execute = |input: &[u8]| -> Result<String, String> {
        targets::replace(&current, input);
        RUNNING.with(|r| r.set(running));
        EXECUTIONS
            .lock()
            .unwrap()
            .insert(thread_key(), (running, Instant::now()));
        QUIET.with(|q| q.set(true));
        HELD.with(|h| h.set(Some((0, 0))));
        let result = catch_unwind(AssertUnwindSafe(|| target(input)));
        HELD.with(|h| h.set(None));
        QUIET.with(|q| q.set(false));
        EXECUTIONS.lock().unwrap().remove(&thread_key());
        result.map_err(|_| PANIC.with_borrow_mut(Option::take).unwrap_or_default())
    };

    let show_outcomes = std::env::var_os("PINSIGHT_FUZZ_OUTCOMES").is_some();
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut pool = corpus.clone();
    let mut outcomes = HashSet::new();
    let mut crashes: Vec<Crash> = Vec::new();
    let mut crash_kinds = HashSet::new();
    let (mut executions, mut kept) = (0u64, 0usize);
    // Inputs with a new outcome join the pool; once it is full, each replaces one of the kept
    // ones (the corpus stays).
    let mut record =
        |input: &[u8], result: Result<String, String>, pool: &mut Vec<Vec<u8>>, rng: &mut Rng| {
            match result {
                Ok(outcome) => {
                    let shape = shape_of(&outcome);
                    if !outcomes.contains(&shape) {
                        if show_outcomes {
                            println!("fuzz {name}: new outcome: {shape}");
                        }
                        outcomes.insert(shape);
                        if pool.len() < 1000 {
                            pool.push(input.to_vec());
                        } else {
                            let kept = pool.len() - corpus.len();
                            pool[corpus.len() + rng.below(kept)] = input.to_vec();
                        }
                        return true;
                    }
                }
                Err(message) => {
                    if crash_kinds.insert(shape_of(&message)) {
                        std::fs::create_dir_all(&crash_dir).unwrap();
                        let file = crash_dir.join(format!("crash-{}", &sha256(input)[..16]));
                        std::fs::write(&file, input).unwrap();
                        crashes.push(Crash { message, file });
                    }
                }
            }
            false
        };
    for input in &corpus {
        let result = execute(input);
        executions += 1;
        record(input, result, &mut pool, &mut rng);
    }
    loop {
        match budget {
            Budget::Executions(n) if executions >= corpus.len() as u64 + n => break,
            Budget::Until(end) if Instant::now() >= end => break,
            _ => {}
        }
        let parent = &pool[rng.below(pool.len())];
        let other = &pool[rng.below(pool.len())];
        let input = mutate(parent, other, &mut rng, max_len);
        let result = execute(&input);
        executions += 1;
        if record(&input, result, &mut pool, &mut rng) {
            kept += 1;
        }
    }
    let _ = std::fs::remove_file(&current);

    let seconds = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: seed {seed:#x}, {} corpus files, {executions} executions in {seconds:.1} s \
         ({:.0}/s), {} distinct outcomes, {kept} new inputs kept, {} crashes",
        corpus.len(),
        executions as f64 / seconds,
        outcomes.len(),
        crashes.len()
    );
    for crash in &crashes {
        println!(
            "fuzz {name}: CRASH {}\n    input: {}",
            crash.message,
            crash.file.display()
        );
    }
    assert!(
        crashes.is_empty(),
        "fuzz target {name} panicked on {} inputs: {}",
        crashes.len(),
        crashes
            .iter()
            .map(|c| format!("{} ({})", c.message, c.file.display()))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

fn read_corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = targets::corpus_dir().join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no corpus", dir.display());
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    pinsight::checksum::sha256_hex(bytes)
}
