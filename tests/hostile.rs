//! What a user may point pinsight at, or type, that must not crash it, hang it, exhaust a
//! board's memory, break its JSON or leak a file's content (issue 11, defects 3 to 9). Each test
//! is the user's action: the `pinsight` binary spawned as they would run it, with a time limit
//! and, natively, an address-space limit, and its outcome asserted.
//!
//! The hostile images are made here, not committed: a PNG's pixels are all zero, so its zlib
//! stream is written directly (one literal, then matches of 258 bytes at distance 1 whose codes
//! are two zero bits each): a 60000 × 60000 RGB PNG is 10.5 MB and takes a moment, where
//! compressing its 10.8 GB of pixels would take minutes.

mod common;

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Running the binary

/// How long a run may take before it counts as hung: a minute natively; qemu-user runs the
/// model some twenty times slower, and the cross suites run several tests at once.
fn time_limit() -> Duration {
    Duration::from_secs(if common::emulated() { 1200 } else { 60 })
}

/// The address space pinsight is given natively: 3 GiB, less than a 4 GB board has, and far
/// below the 10.8 GB the 60000 × 60000 PNG took to decode before issue 11. Under qemu-user the
/// limit would apply to the emulator, which reserves address ranges of its own (4 GiB for a
/// 32-bit guest) and would not start: there the limit is left off, and the peak RSS that
/// [`children_peak_rss_kib`] reports (the emulator's, the guest's memory included) is checked
/// instead.
const ADDRESS_SPACE: u64 = 3 << 30;

/// The most resident memory any pinsight process here may reach, in KiB: 1.5 GiB natively;
/// under qemu-user, 3 GiB, as the emulator's own memory (its translated code) counts too.
fn peak_rss_limit_kib() -> u64 {
    if common::emulated() {
        3 << 20
    } else {
        1536 << 10
    }
}

struct Outcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The outcome, for assertion messages.
    fn show(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status,
            self.stdout(),
            self.stderr
        )
    }

    /// No panic, no abort, no signal: an exit status pinsight chose.
    fn assert_no_crash(&self) {
        assert!(!self.stderr.contains("panicked"), "{}", self.show());
        let code = self.status.code();
        assert!(
            code.is_some() && code != Some(101) && code != Some(134),
            "{}",
            self.show()
        );
    }

    fn assert_code(&self, code: i32) {
        self.assert_no_crash();
        assert_eq!(self.status.code(), Some(code), "{}", self.show());
    }
}

/// `pinsight ARGS…` with the address-space limit (natively), within [`time_limit`]: a run
/// that takes longer is killed and the test fails.
fn pinsight<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = common::pinsight();
    command.args(args);
    spawn(command, Stdio::piped())
}

fn spawn(mut command: Command, stdout: Stdio) -> Outcome {
    if !common::emulated() {
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: setrlimit is one, and it touches only the
        // `limit` on this closure's stack.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: ADDRESS_SPACE as libc::rlim_t,
                    rlim_max: ADDRESS_SPACE as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pinsight");
    // Read both pipes while waiting, so that a full pipe never stalls the child.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(out) = out.as_mut() {
            out.read_to_end(&mut bytes).unwrap();
        }
        bytes
    });
    let err_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        err.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let deadline = Instant::now() + time_limit();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "pinsight did not finish within {:?}: it hangs\n{}",
                time_limit(),
                err_reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome = Outcome {
        status,
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    let peak = children_peak_rss_kib();
    println!(
        "peak RSS of the pinsight processes so far: {} MiB",
        peak >> 10
    );
    assert!(
        peak < peak_rss_limit_kib(),
        "a pinsight process reached {} MiB of resident memory\n{}",
        peak >> 10,
        outcome.show()
    );
    outcome
}

/// The largest peak resident set of the child processes waited for so far, in KiB (under
/// qemu-user: the emulator's, which holds the guest's memory).
fn children_peak_rss_kib() -> u64 {
    // SAFETY: getrusage only writes the struct it is given, which lives on this stack and is
    // valid when zeroed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    usage.ru_maxrss as u64
}

/// Each stdout line as JSON; fails on a line that is not.
fn json_lines(outcome: &Outcome) -> Vec<serde_json::Value> {
    outcome
        .stdout()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", outcome.show()))
        })
        .collect()
}

fn sample(name: &str) -> PathBuf {
    common::repo().join("samples").join(name)
}

fn copy(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::copy(from, to).unwrap();
}

// ---------------------------------------------------------------------------------------------
// PNG files of zero pixels, of any size

/// An 8-bit RGB PNG of `width` × `height` black pixels.
fn black_png(width: u32, height: u32) -> Vec<u8> {
    let raw = u64::from(height) * (1 + 3 * u64::from(width));
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(deflate_zeros(raw));
    // Adler-32 of zeros: a stays 1, b counts the bytes.
    let adler = (((raw % 65521) as u32) << 16) | 1;
    zlib.extend(adler.to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    for part in zlib.chunks(1 << 20) {
        chunk(&mut png, b"IDAT", part);
    }
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend((data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend(kind);
    png.extend(data);
    let crc = crc32(&png[start..]);
    png.extend(crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|mut c| {
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            c
        })
        .collect();
    !bytes.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// Deflate bits, least significant first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: u64,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        for i in 0..count {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                *self.bytes.last_mut().unwrap() |= 1 << (self.len % 8);
            }
            self.len += 1;
        }
    }

    /// A Huffman code: its most significant bit first.
    fn code(&mut self, code: u32, length: u32) {
        for i in (0..length).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn zeros(&mut self, count: u64) {
        self.len += count;
        self.bytes.resize(self.len.div_ceil(8) as usize, 0);
    }
}

/// One dynamic-Huffman deflate block of `count` zero bytes (`count` ≥ 1). Literal/length codes:
/// 285 (a match of 258) is `0`, literal 0 is `10`, end of block `11`; distance code 0 (a
/// distance of 1) is `0`, 1 is `1`. A match is therefore two zero bits.
fn deflate_zeros(count: u64) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(1, 1); // the final block
    bits.put(2, 2); // dynamic Huffman codes
    bits.put(286 - 257, 5); // literal/length codes 0 to 285
    bits.put(2 - 1, 5); // distance codes 0 and 1
    bits.put(18 - 4, 4); // code-length code lengths given, in the standard's order:
    for symbol in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
        bits.put(
            match symbol {
                18 => 1,
                1 | 2 => 2,
                _ => 0,
            },
            3,
        );
    }
    // The code-length codes: 18 (a run of zeros) is `0`, length 1 is `10`, length 2 is `11`.
    let length_2 = |bits: &mut Bits| bits.code(0b11, 2);
    let length_1 = |bits: &mut Bits| bits.code(0b10, 2);
    let zeros = |bits: &mut Bits, run: u32| {
        bits.code(0, 1);
        bits.put(run - 11, 7);
    };
    length_2(&mut bits); // literal 0
    zeros(&mut bits, 138); // literals 1 to 138
    zeros(&mut bits, 117); // 139 to 255
    length_2(&mut bits); // 256, the end of block
    zeros(&mut bits, 28); // lengths 257 to 284
    length_1(&mut bits); // 285, a match of 258
    length_1(&mut bits); // distance 0
    length_1(&mut bits); // distance 1

    bits.code(0b10, 2); // the first zero, a literal
    let rest = count - 1;
    bits.zeros(2 * (rest / 258)); // matches of 258 zeros at distance 1
    for _ in 0..rest % 258 {
        bits.code(0b10, 2);
    }
    bits.code(0b11, 2); // the end of the block
    bits.bytes
}

#[test]
fn the_png_maker_makes_valid_pngs() {
    for (width, height) in [(1, 1), (300, 200), (1, 5000), (777, 3)] {
        let image = image::load_from_memory(&black_png(width, height))
            .unwrap_or_else(|e| panic!("{width} × {height}: {e}"))
            .into_rgb8();
        assert_eq!(image.dimensions(), (width, height));
        assert!(image.pixels().all(|p| p.0 == [0, 0, 0]));
    }
    // A size's bytes grow as its pixels do, 1 : 1032.
    assert!(black_png(60000, 60000).len() < 11 << 20);
}

// ---------------------------------------------------------------------------------------------
// Defect 3: image dimensions

/// The 1 × 16777216 PNG (65 KB) that made the resize overflow, the 60000 × 60000 PNG (10.5 MB)
/// that made `classify` allocate 10.8 GB, and a 1 × 16384 PNG, the thinnest that is read: in
/// `classify`, `run`, `train` and `eval` the first two are named, counted and skipped and the
/// other images are classified, within the address-space limit.
#[test]
fn images_too_large_to_decode_are_counted_and_skipped_everywhere() {
    let work = tempfile::tempdir().unwrap();
    let thin = black_png(1, 16_777_216);
    let huge = black_png(60000, 60000);
    println!(
        "1 × 16777216 PNG: {} bytes; 60000 × 60000 PNG: {} bytes",
        thin.len(),
        huge.len()
    );

    // classify, and run over the folder.
    let files = work.path().join("files");
    std::fs::create_dir(&files).unwrap();
    copy(&sample("rocket.jpg"), &files.join("1-rocket.jpg"));
    std::fs::write(files.join("2-thin.png"), &thin).unwrap();
    std::fs::write(files.join("3-huge.png"), &huge).unwrap();
    std::fs::write(files.join("4-tall.png"), black_png(1, 16384)).unwrap();
    copy(&sample("coffee.png"), &files.join("5-coffee.png"));
    let mut names: Vec<PathBuf> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();

    let mut args = vec![PathBuf::from("classify"), PathBuf::from("--json")];
    args.extend(names.iter().cloned());
    let classified = pinsight(&args);
    // Unreadable images make `classify` fail at the end (exit 2), after the others.
    classified.assert_code(5);
    let lines = json_lines(&classified);
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 3, "{}", classified.show());
    assert!(paths[0].ends_with("1-rocket.jpg") && paths[2].ends_with("5-coffee.png"));
    assert!(paths[1].ends_with("4-tall.png"));
    assert_eq!(
        lines[0]["top"][0]["label"],
        "missile",
        "{}",
        classified.show()
    );
    assert!(
        classified
            .stderr
            .contains("2 of 5 images could not be read")
    );
    assert!(classified.stderr.contains("1 × 16777216 pixels"));
    // A 32-bit build's PNG decoder refuses 60000 × 60000 at its header, without the size.
    let too_large = if cfg!(target_pointer_width = "64") {
        "60000 × 60000 pixels"
    } else {
        "it is too large: pinsight decodes images of at most 16384 pixels a side"
    };
    assert!(
        classified.stderr.contains(too_large),
        "{}",
        classified.show()
    );
    assert!(classified.stderr.contains("at most 16384"));

    let run = pinsight(
        ["run", "--source"]
            .map(OsStr::new)
            .into_iter()
            .chain([files.as_os_str()]),
    );
    run.assert_code(0);
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 3, "{}", run.show());
    assert_eq!(lines[2]["skipped"], 2, "{}", run.show());
    assert!(
        lines[2]["source"]
            .as_str()
            .unwrap()
            .ends_with("5-coffee.png")
    );

    // train and eval: DATA/{train,validation}/<class>/, the two PNGs among the training photos.
    let data = work.path().join("data");
    for (class, photo) in [("missile", "rocket.jpg"), ("espresso", "coffee.png")] {
        for (split, copies) in [("train", 2), ("validation", 1)] {
            for i in 0..copies {
                copy(
                    &sample(photo),
                    &data.join(split).join(class).join(format!("{i}-{photo}")),
                );
            }
        }
    }
    std::fs::write(data.join("train/missile/thin.png"), &thin).unwrap();
    std::fs::write(data.join("train/espresso/huge.png"), &huge).unwrap();
    let head = work.path().join("head");
    let trained = pinsight(
        [
            OsStr::new("train"),
            data.as_os_str(),
            OsStr::new("--out"),
            head.as_os_str(),
            OsStr::new("--cache"),
            work.path().join("cache").as_os_str(),
        ]
        .iter(),
    );
    trained.assert_code(0);
    assert!(trained.stdout().contains("2 skipped"), "{}", trained.show());
    assert!(head.join("head.onnx").is_file());

    let evaluated = pinsight(
        [
            OsStr::new("eval"),
            data.as_os_str(),
            OsStr::new("--split"),
            OsStr::new("all"),
            OsStr::new("--json"),
            work.path().join("eval.json").as_os_str(),
            OsStr::new("--png"),
            work.path().join("confusion.png").as_os_str(),
        ]
        .iter(),
    );
    evaluated.assert_code(0);
    assert!(
        evaluated.stdout().contains("accuracy 100.00% on 6 photos"),
        "{}",
        evaluated.show()
    );
    assert!(evaluated.stdout().contains("2 photos could not be read"));
}

// ---------------------------------------------------------------------------------------------
// Defect 4: special files

/// A FIFO named like a photo, or given as a config: refused at once as what it is, and the
/// other images are still classified.
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let work = tempfile::tempdir().unwrap();
    let fifo = work.path().join("x.jpg");
    let name = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);

    let classified = pinsight([
        OsStr::new("classify"),
        fifo.as_os_str(),
        sample("rocket.jpg").as_os_str(),
    ]);
    classified.assert_code(5);
    assert!(
        classified
            .stderr
            .contains("is a FIFO (named pipe), not a regular file"),
        "{}",
        classified.show()
    );
    assert!(
        classified.stdout().contains("missile"),
        "{}",
        classified.show()
    );

    // In a folder: a FIFO is not listed as an image, the photo beside it is classified.
    copy(&sample("rocket.jpg"), &work.path().join("y.jpg"));
    let run = pinsight([
        OsStr::new("run"),
        OsStr::new("--source"),
        work.path().as_os_str(),
    ]);
    run.assert_code(0);
    assert_eq!(json_lines(&run).len(), 1, "{}", run.show());

    let config = pinsight([OsStr::new("config"), fifo.as_os_str()]);
    config.assert_code(3);
    assert!(config.stderr.contains("FIFO"), "{}", config.show());

    // A model file is read the same way: a FIFO as the backbone is refused, not waited on.
    let backbone = pinsight([
        OsStr::new("classify"),
        OsStr::new("--backbone"),
        fifo.as_os_str(),
        sample("rocket.jpg").as_os_str(),
    ]);
    backbone.assert_code(3);
    assert!(
        backbone
            .stderr
            .contains("is a FIFO (named pipe), not a regular file"),
        "{}",
        backbone.show()
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 5: JSON for any file name

/// A file name that is not UTF-8: `classify --json` and `run` print a JSON line for it (the
/// name with U+FFFD where its bytes are not UTF-8) and go on with the rest.
#[test]
fn json_stays_valid_for_a_file_name_that_is_not_utf8() {
    let work = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9 \xff.jpg");
    let odd = work.path().join(name);
    copy(&sample("rocket.jpg"), &odd);
    copy(&sample("coffee.png"), &work.path().join("z.png"));

    let classified = pinsight([
        OsStr::new("classify"),
        OsStr::new("--json"),
        odd.as_os_str(),
        sample("coffee.png").as_os_str(),
    ]);
    classified.assert_code(0);
    let lines = json_lines(&classified);
    assert_eq!(lines.len(), 2, "{}", classified.show());
    let path = lines[0]["path"].as_str().unwrap();
    assert!(path.ends_with("caf\u{FFFD} \u{FFFD}.jpg"), "{path}");
    assert_eq!(lines[0]["top"][0]["label"], "missile");
    assert!(lines[1]["path"].as_str().unwrap().ends_with("coffee.png"));

    let run = pinsight([
        OsStr::new("run"),
        OsStr::new("--source"),
        work.path().as_os_str(),
    ]);
    run.assert_code(0);
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 2, "{}", run.show());
    assert!(lines[0]["source"].as_str().unwrap().contains('\u{FFFD}'));
}

// ---------------------------------------------------------------------------------------------
// Defect 6: numbers without bounds

/// Every numeric option outside its range is a usage error (exit 2) naming the option and the
/// range, before anything is loaded; a value at the edge of a range works.
#[test]
fn numbers_out_of_range_are_refused_with_the_option_named() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--fps", "1e-20"], "0.001 to 1000"),
        (&["run", "--fps", "0"], "0.001 to 1000"),
        (&["run", "--fps", "NaN"], "0.001 to 1000"),
        (&["run", "--fps", "inf"], "0.001 to 1000"),
        (&["run", "--frames", "0"], "--frames"),
        (&["run", "--top", "0"], "--top"),
        (&["run", "--top", "1001"], "--top"),
        (&["run", "--smooth", "101"], "--smooth"),
        (&["run", "--threshold", "1.5"], "0 to 1"),
        (&["run", "--size", "0x480"], "1 to 16384"),
        (&["run", "--size", "99999x480"], "1 to 16384"),
        (&["run", "--hold-safe-ms", "99999999999"], "--hold-safe-ms"),
        (&["classify", "--top", "0", "x.jpg"], "--top"),
        (&["train", "d", "--out", "o", "--hidden", "0"], "--hidden"),
        (
            &["train", "d", "--out", "o", "--hidden", "100000"],
            "--hidden",
        ),
        (&["train", "d", "--out", "o", "--dropout", "1"], "0 to 0.95"),
        (
            &["train", "d", "--out", "o", "--learning-rate", "0"],
            "above 0",
        ),
        (
            &["train", "d", "--out", "o", "--learning-rate", "1e30"],
            "at most 10",
        ),
        (&["train", "d", "--out", "o", "--weight-decay=-1"], "0 to 1"),
        (&["train", "d", "--out", "o", "--epochs", "0"], "--epochs"),
        (
            &["train", "d", "--out", "o", "--patience", "0"],
            "--patience",
        ),
        (
            &["train", "d", "--out", "o", "--batch-size", "0"],
            "--batch-size",
        ),
        (&["bench", "--runs", "0"], "--runs"),
        (&["bench", "--runs", "20000"], "--runs"),
    ];
    for (args, expected) in cases {
        let outcome = pinsight(*args);
        outcome.assert_code(2);
        // The option is the last word that starts with "--" (or the one before a value).
        let option = args
            .iter()
            .rev()
            .find(|a| a.starts_with("--"))
            .map(|a| a.split('=').next().unwrap())
            .unwrap();
        assert!(
            outcome.stderr.contains(option) && outcome.stderr.contains(expected),
            "{args:?}: expected {option} and {expected:?}\n{}",
            outcome.show()
        );
    }

    // The slowest rate there is still classifies the first frame at once.
    let run = pinsight([
        "run",
        "--source",
        "samples/rocket.jpg",
        "--fps",
        "0.001",
        "--frames",
        "1",
    ]);
    run.assert_code(0);
    assert_eq!(json_lines(&run).len(), 1);
}

/// A config value outside its range is refused with the config's path and the key.
#[test]
fn config_values_out_of_range_are_refused_with_the_key_named() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pinsight.toml");
    let board = "board = \"raspberry-pi-4\"\n";
    let cases = [
        (
            "[trigger]\npin = 17\nburst = 1000000\n",
            "trigger.burst = 1000000",
            "1 to 100",
        ),
        (
            "[trigger]\npin = 17\nburst = 0\n",
            "trigger.burst = 0",
            "1 to 100",
        ),
        (
            "[trigger]\npin = 17\ndebounce_ms = 9223372036854775807\n",
            "trigger.debounce_ms",
            "0 to 10000 ms",
        ),
        (
            "[trigger]\npin = 17\ncooldown_ms = -1\n",
            "trigger.cooldown_ms = -1",
            "0 to 3600000",
        ),
        (
            "[outputs]\nmode = \"pulse\"\npulse_ms = 9223372036854775807\n[outputs.ready]\npin = 5\n",
            "outputs.pulse_ms",
            "1 to 600000 ms",
        ),
        (
            "[outputs.ready]\npin = 5\nmode = \"pulse\"\npulse_ms = 0\n",
            "outputs.ready.pulse_ms = 0",
            "1 to 600000",
        ),
        (
            "[outputs.ready]\npin = -1\n",
            "outputs.ready.pin = -1",
            "0 to 4095",
        ),
        (
            "[outputs.match]\npin = 5\nlabels = [\"dog\"]\nthreshold = 1.5\n",
            "threshold 1.5",
            "between 0 and 1",
        ),
        ("[gpio]\nlines = 0\n", "gpio.lines = 0", "1 to 4096"),
        ("[pins]\nled = 99999\n", "pins.led = 99999", "0 to 4095"),
        ("[run]\nfps = 1e-20\n", "[run] fps", "0.001 to 1000"),
        ("[run]\nsmooth = 1000000\n", "[run] smooth", "1 to 100"),
        ("[run]\ntop = 0\n", "[run] top", "1 to 1000"),
        ("[run]\nthreshold = -0.5\n", "[run] threshold", "0 to 1"),
        ("[run]\nsize = \"99999x1\"\n", "[run] size", "1 to 16384"),
    ];
    for (text, key, range) in cases {
        std::fs::write(&config, format!("{board}{text}")).unwrap();
        let outcome = pinsight([OsStr::new("config"), config.as_os_str()]);
        outcome.assert_code(3);
        assert!(
            outcome.stderr.contains("pinsight.toml")
                && outcome.stderr.contains(key)
                && outcome.stderr.contains(range),
            "{text}: expected {key:?} and {range:?}\n{}",
            outcome.show()
        );
    }
    // The edges of the ranges are accepted.
    std::fs::write(
        &config,
        format!(
            "{board}[trigger]\npin = 17\nburst = 100\ndebounce_ms = 10000\ncooldown_ms = 0\n\
             [outputs.ready]\npin = 5\nmode = \"pulse\"\npulse_ms = 600000\n"
        ),
    )
    .unwrap();
    let outcome = pinsight([OsStr::new("config"), config.as_os_str()]);
    outcome.assert_code(0);
    let resolved: serde_json::Value = serde_json::from_slice(&outcome.stdout).unwrap();
    assert_eq!(resolved["deployment"]["trigger"]["burst"], 100);
}

// ---------------------------------------------------------------------------------------------
// Defect 7: a config can read any file

/// A board "file" that is another file, a device or too large: refused, without quoting a line
/// of it and without reading more than the cap.
#[test]
fn a_config_never_quotes_or_swallows_a_foreign_file() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pinsight.toml");
    let secret = "root:x:0:0:the-secret-line:/root:/bin/sh";
    std::fs::write(work.path().join("notes.txt"), format!("{secret}\n")).unwrap();
    let check = |board: &str, expected: &str| {
        std::fs::write(&config, format!("board = \"{board}\"\n")).unwrap();
        let outcome = pinsight([OsStr::new("config"), config.as_os_str()]);
        outcome.assert_code(3);
        assert!(
            outcome.stderr.contains(expected),
            "{board}: {}",
            outcome.show()
        );
        assert!(
            !outcome.stderr.contains("the-secret-line"),
            "{}",
            outcome.show()
        );
        assert!(!outcome.stderr.contains("root:"), "{}", outcome.show());
        outcome
    };
    check(
        "./notes.txt",
        "notes.txt: not a valid TOML file at line 1, column",
    );
    if Path::new("/etc/passwd").is_file() {
        check(
            "/etc/passwd",
            "/etc/passwd: not a valid TOML file at line 1",
        );
    }
    check("/dev/zero", "it is a character device, not a regular file");
    check(
        work.path().to_str().unwrap(),
        "it is a folder, not a regular file",
    );
    let large = work.path().join("large.toml");
    std::fs::write(&large, format!("# {}\n", "x".repeat(70 << 10))).unwrap();
    check("large.toml", "larger than 64 KiB");

    // The config itself: the same rules.
    let outcome = pinsight(["config", "/dev/zero"]);
    outcome.assert_code(3);
    assert!(
        outcome.stderr.contains("character device"),
        "{}",
        outcome.show()
    );
    std::fs::write(&config, format!("{secret}\n")).unwrap();
    let outcome = pinsight([OsStr::new("config"), config.as_os_str()]);
    outcome.assert_code(3);
    assert!(
        !outcome.stderr.contains("the-secret-line"),
        "{}",
        outcome.show()
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 8: output that grows with classes squared

/// `eval` with the 1000-class ImageNet head on a few photos: the picture shows the classes
/// present, not 1000 × 1000 cells, and the report says so; memory stays bounded.
#[test]
fn eval_with_a_thousand_classes_draws_a_bounded_picture() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    for (class, photo) in [("missile", "rocket.jpg"), ("espresso", "coffee.png")] {
        for (split, copies) in [("train", 2), ("validation", 1)] {
            for i in 0..copies {
                copy(
                    &sample(photo),
                    &data.join(split).join(class).join(format!("{i}-{photo}")),
                );
            }
        }
    }
    let (json, png) = (
        work.path().join("eval.json"),
        work.path().join("confusion.png"),
    );
    let outcome = pinsight([
        OsStr::new("eval"),
        data.as_os_str(),
        OsStr::new("--split"),
        OsStr::new("all"),
        OsStr::new("--json"),
        json.as_os_str(),
        OsStr::new("--png"),
        png.as_os_str(),
    ]);
    outcome.assert_code(0);
    assert!(
        outcome.stdout().contains("the head has 1000 classes"),
        "{}",
        outcome.show()
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let shown = report["shown_classes"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{}", report["shown_note"]);
    assert!(
        report["shown_note"]
            .as_str()
            .unwrap()
            .contains("1000 classes")
    );
    let picture = image::open(&png).unwrap();
    println!(
        "confusion picture: {} × {}",
        picture.width(),
        picture.height()
    );
    assert!(picture.width() < 400 && picture.height() < 400);
}

// ---------------------------------------------------------------------------------------------
// Defect 9 (in part): a cause said twice, a closed pipe reported as an error

/// An error says its cause once.
#[test]
fn an_error_says_its_cause_once() {
    for args in [
        &["config", "no-such.toml"][..],
        &["bench", "--photo", "no-such.jpg"],
    ] {
        let outcome = pinsight(args);
        outcome.assert_code(3);
        assert_eq!(
            outcome.stderr.matches("No such file or directory").count(),
            1,
            "{}",
            outcome.show()
        );
    }
}

/// A reader that closes standard output early (`pinsight config … | head -1`) ends pinsight
/// quietly: exit 0, nothing of pinsight's on stderr.
#[test]
fn a_closed_stdout_ends_quietly() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pinsight.toml");
    std::fs::write(&config, "board = \"raspberry-pi-4\"\n").unwrap();
    for args in [
        vec![OsStr::new("config"), config.as_os_str()],
        vec![OsStr::new("classify"), OsStr::new("samples/rocket.jpg")],
        vec![
            OsStr::new("run"),
            OsStr::new("--source"),
            OsStr::new("samples/rocket.jpg"),
        ],
    ] {
        // The reading end is closed before pinsight starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = common::pinsight();
        command.args(&args);
        let outcome = spawn(command, Stdio::from(writer));
        outcome.assert_code(0);
        // Nothing on stderr but, under qemu-user, tract-linalg's warning that the
        // /proc/cpuinfo it reads is the host's.
        let said: Vec<&str> = outcome
            .stderr
            .lines()
            .filter(|line| !line.contains(" tract_linalg"))
            .collect();
        assert!(said.is_empty(), "{args:?}: {said:?}");
    }
}
