//! The run loop over a folder source, in the library and through `pinsight run`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin};
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};
use pinsight::board::{Line, OutputMode, OutputSpec, Role};
use pinsight::gpio::{EdgeWait, NoOutputs, Outputs, Presses, Trigger};
use pinsight::model::Classifier;
use pinsight::run::{Decided, Mode, RunOptions, RunSummary};
use pinsight::source::{Files, FrameSource};
use serde_json::Value;

/// The run loop in continuous mode without outputs.
fn run(
    source: &mut dyn FrameSource,
    classifier: &Classifier,
    options: &RunOptions,
    stop: &AtomicBool,
    report: impl FnMut(&Decided) -> std::io::Result<()>,
) -> pinsight::Result<RunSummary> {
    let signals = Mutex::new(NoOutputs);
    pinsight::run::run_loop(
        source,
        classifier,
        options,
        Mode::Continuous,
        &signals,
        stop,
        report,
    )
}

fn options(frames: Option<u64>) -> RunOptions {
    RunOptions {
        frames,
        max_fps: None,
        top: 3,
        threshold: 0.5,
        smooth: 1,
        notifier: None,
        hub: None,
        keeper: None,
        reload: None,
        enroll: None,
    }
}

/// A folder with two good photos and a corrupt one between them (by name order).
fn folder_with_a_corrupt_photo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo().join("samples/coffee.png"),
        dir.path().join("a-coffee.png"),
    )
    .unwrap();
    let jpeg = std::fs::read(common::repo().join("samples/rocket.jpg")).unwrap();
    std::fs::write(dir.path().join("b-broken.jpg"), &jpeg[..jpeg.len() / 4]).unwrap();
    std::fs::copy(
        common::repo().join("samples/rocket.jpg"),
        dir.path().join("c-rocket.jpg"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    dir
}

#[test]
fn corrupt_frames_are_skipped_and_counted() {
    let dir = folder_with_a_corrupt_photo();
    let mut source = Files::open(dir.path().to_str().unwrap()).unwrap();
    let mut results = Vec::new();
    let summary = run(
        &mut source,
        common::imagenet_classifier(),
        &options(None),
        &AtomicBool::new(false),
        |r| {
            results.push((r.source.to_string(), r.label.clone(), r.skipped));
            // Every file up to this one is a result so far, skipped or dropped.
            assert_eq!(results.len() as u64 + r.skipped + r.dropped, r.frame + 1);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(
        (summary.decided, summary.skipped, summary.dropped),
        (2, 1, 0)
    );
    assert!(results[0].0.ends_with("a-coffee.png") && results[0].1.as_deref() == Some("espresso"));
    assert!(results[1].0.ends_with("c-rocket.jpg"));
    assert_eq!(results[1].2, 1, "the skip is reported with the next result");
}

#[test]
fn frames_limit_and_stop_flag_end_the_loop() {
    let dir = folder_with_a_corrupt_photo();
    let classifier = common::imagenet_classifier();
    let mut source = Files::open(dir.path().to_str().unwrap()).unwrap();
    let summary = run(
        &mut source,
        classifier,
        &options(Some(1)),
        &AtomicBool::new(false),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(summary.decided, 1);

    let mut source = Files::open(dir.path().to_str().unwrap()).unwrap();
    let summary = run(
        &mut source,
        classifier,
        &options(None),
        &AtomicBool::new(true),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(
        summary.decided, 0,
        "a stop requested before the first frame"
    );
}

#[test]
fn a_glob_selects_files_and_an_empty_source_is_an_error() {
    let pattern = common::repo().join("samples/*.png");
    let mut source = Files::open(pattern.to_str().unwrap()).unwrap();
    let mut seen = Vec::new();
    run(
        &mut source,
        common::imagenet_classifier(),
        &options(None),
        &AtomicBool::new(false),
        |r| {
            seen.push(r.source.rsplit('/').next().unwrap().to_string());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, ["chelsea.png", "coffee.png"]);

    let empty = tempfile::tempdir().unwrap();
    let error = Files::open(empty.path().to_str().unwrap()).err().unwrap();
    assert!(error.to_string().contains("no image files"), "{error}");
}

#[test]
fn cli_run_prints_one_json_line_a_result_with_stage_times() {
    let output = common::pinsight()
        .args(["run", "--source", "samples", "--top", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one result for each of the 3 sample photos");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["frame"], i as u64);
        assert_eq!(line["top"].as_array().unwrap().len(), 2);
        for stage in ["capture", "convert", "inference", "decide"] {
            assert!(
                line["ms"][stage].as_f64().unwrap() >= 0.0,
                "{stage} in {line}"
            );
        }
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(lines[1]["label"], "espresso");
    assert_eq!(lines[1]["source"], "samples/coffee.png");
}

/// Files under `dir`, relative, sorted; hidden names (the index) left out.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for class in std::fs::read_dir(dir).unwrap().flatten() {
        let name = class.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if class.path().is_dir() {
            for file in std::fs::read_dir(class.path()).unwrap().flatten() {
                found.push(format!("{name}/{}", file.file_name().to_string_lossy()));
            }
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

#[test]
fn cli_run_keeps_the_frames_below_the_threshold_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let unsure = dir.path().join("unsure");
    std::fs::create_dir(&unsure).unwrap();
    std::fs::write(unsure.join("README"), "the user's notes").unwrap();
    let config = dir.path().join("pinsight.toml");
    let write_config = |max_files: u32| {
        let text =
            format!("[keep]\nfolder = \"unsure\"\nmax_files = {max_files}\nmin_interval = 0\n");
        std::fs::write(&config, text).unwrap();
    };
    let run = || {
        let output = common::pinsight()
            .env("RUST_LOG", "info")
            .args(["run", "--source", "samples", "--threshold", "1", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let results: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(results.len(), 3);
        // Each best guess, by its file name's ending.
        let mut guesses = std::collections::BTreeMap::new();
        for result in results {
            assert_eq!(result["label"], Value::Null, "all below 1: {result}");
            let ending = format!("-f{}.jpg", result["frame"]);
            guesses.insert(
                ending,
                result["top"][0]["label"].as_str().unwrap().to_owned(),
            );
        }
        (stderr, guesses)
    };
    // "kept N frames ..., M dropped while the writer was busy": N + M = 3 results.
    let counted = |stderr: &str, what: &str| -> u64 {
        let line = stderr
            .lines()
            .find(|l| l.contains("below the threshold in"))
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| w.starts_with(what)).unwrap();
        words[at - 1].parse().unwrap()
    };

    write_config(10);
    let (stderr, guesses) = run();
    let kept = counted(&stderr, "frames");
    assert_eq!(kept + counted(&stderr, "dropped"), 3, "{stderr}");
    assert!(
        kept >= 1,
        "the first unsure frame finds the writer idle: {stderr}"
    );
    let files = files_under(&unsure);
    assert_eq!(files.len() as u64, kept + 1, "{files:?}");
    for file in files.iter().filter(|f| f.ends_with(".jpg")) {
        // <best guess>/<time>-f<frame>.jpg, a JPEG of the frame.
        let (class, name) = file.split_once('/').unwrap();
        let guess = guesses
            .iter()
            .find(|(ending, _)| name.ends_with(ending.as_str()));
        assert_eq!(
            guess.map(|(_, label)| label.as_str()),
            Some(class),
            "{file}"
        );
        let image = image::open(unsure.join(file)).unwrap();
        assert!(image.width() > 100, "{file}");
    }

    // Again with room for one: the older frames go, the user's file stays.
    write_config(1);
    run();
    let files = files_under(&unsure);
    assert_eq!(
        files.len(),
        2,
        "the newest kept frame and the user's: {files:?}"
    );
    assert!(files.contains(&"README".to_string()));
    assert_eq!(
        std::fs::read(unsure.join("README")).unwrap(),
        b"the user's notes"
    );

    // A folder that cannot be made is named before anything runs.
    std::fs::write(&config, "[keep]\nfolder = \"pinsight.toml/unsure\"\n").unwrap();
    let output = common::pinsight()
        .args(["run", "--source", "samples", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && output.stdout.is_empty(),
        "{stderr}"
    );
    assert!(
        stderr.contains("pinsight.toml/unsure") && stderr.contains("[keep]"),
        "{stderr}"
    );
}

#[test]
fn cli_run_names_a_missing_camera() {
    let output = common::pinsight()
        .args(["run", "--source", "/dev/video-does-not-exist"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "a device error: {stderr}");
    assert!(
        stderr.contains("no camera at /dev/video-does-not-exist"),
        "{stderr}"
    );
}

#[test]
fn cli_run_says_when_a_device_is_not_a_camera() {
    let output = common::pinsight()
        .args(["run", "--source", "/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "a device error: {stderr}");
    assert!(
        stderr.contains("camera /dev/null: is not a V4L2 video device"),
        "{stderr}"
    );
}

/// A button pressed once for each `allowed` (the test allows the next press once a result is
/// out), each edge followed by a quiet debounce time: per press, an edge up and an edge down.
/// After `presses` presses it sets `done`.
struct Button {
    presses: u32,
    allowed: Arc<AtomicU32>,
    high: bool,
    quiet_next: bool,
    done: Arc<AtomicBool>,
}

impl ErrorType for Button {
    type Error = MockError;
}

impl InputPin for Button {
    fn is_high(&mut self) -> Result<bool, MockError> {
        Ok(self.high)
    }
    fn is_low(&mut self) -> Result<bool, MockError> {
        Ok(!self.high)
    }
}

impl EdgeWait for Button {
    fn wait_for_edge(&mut self, _: Duration) -> Result<bool, MockError> {
        if std::mem::take(&mut self.quiet_next) {
            return Ok(false); // the debounce time passes without an edge
        }
        if !self.high && self.presses == 0 {
            self.done.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        if !self.high {
            if self.allowed.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(5));
                return Ok(false);
            }
            self.allowed.fetch_sub(1, Ordering::Relaxed);
            self.presses -= 1;
        }
        self.high = !self.high;
        self.quiet_next = true;
        Ok(true)
    }
}

/// A folder of `n` copies of the coffee sample: `n` frames that classify alike.
fn coffees(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        std::fs::copy(
            common::repo().join("samples/coffee.png"),
            dir.path().join(format!("coffee-{i}.png")),
        )
        .unwrap();
    }
    dir
}

fn output(role: Role, offset: u32) -> OutputSpec {
    OutputSpec {
        role,
        line: Line {
            offset,
            name: format!("line {offset}"),
        },
        active_low: false,
        safe_high: false,
        mode: OutputMode::Level,
    }
}

#[test]
fn triggered_mode_answers_each_press_with_a_burst_and_sets_the_outputs() {
    // Seven frames: the first shows that the source streams (it raises the ready output and
    // is older than any press), then a burst of three for each of two presses.
    let dir = coffees(7);
    let mut source = Files::open(dir.path().to_str().unwrap()).unwrap();
    use State::{High, Low};
    let set = Transaction::set;
    // Ready: safe, up with the first frame, safe at the end. Busy: up and down per press.
    // Espresso: up with the first result, held (level), safe at the end.
    let ready = Mock::new(&[set(Low), set(High), set(Low)]);
    let busy = Mock::new(&[set(Low), set(High), set(Low), set(High), set(Low), set(Low)]);
    let espresso = Mock::new(&[set(Low), set(High), set(Low)]);
    let outputs = Outputs::new([
        (output(Role::Ready, 1), ready.clone()),
        (output(Role::Busy, 2), busy.clone()),
        (output(Role::Class("espresso".into()), 3), espresso.clone()),
    ])
    .unwrap();
    let signals = Mutex::new(outputs);
    let done = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(AtomicU32::new(1));
    let button = Button {
        presses: 2,
        allowed: allowed.clone(),
        high: false,
        quiet_next: false,
        done: done.clone(),
    };
    let trigger = Trigger::new(button, pinsight::board::Edge::Rising, Duration::ZERO).unwrap();
    let mut presses = Presses::spawn(trigger, done);
    let mut results = Vec::new();
    let summary = pinsight::run::run_loop(
        &mut source,
        common::imagenet_classifier(),
        &options(None),
        Mode::Triggered {
            presses: &mut presses,
            burst: 3,
            cooldown: Duration::from_millis(10),
        },
        &signals,
        &AtomicBool::new(false),
        |r| {
            let trigger = r.trigger.as_ref().unwrap();
            results.push((r.label.clone(), trigger.burst, trigger.latency_ms));
            allowed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(summary.decided, 2, "one result a press");
    for (label, burst, latency_ms) in &results {
        assert_eq!(label.as_deref(), Some("espresso"));
        assert_eq!(*burst, 3);
        assert!(
            latency_ms.is_finite() && *latency_ms >= 0.0,
            "the press-to-result latency is a duration: {latency_ms}"
        );
    }
    drop(signals);
    for mut pin in [ready, busy, espresso] {
        pin.done();
    }
}

/// `pinsight run` as a `Type=notify` service runs it: READY=1 once frames come, WATCHDOG=1
/// from the loop as results come, a STATUS= with the last label, STOPPING=1 at the end.
#[test]
fn systemd_hears_ready_watchdog_status_and_stopping() {
    use std::os::unix::net::UnixDatagram;

    let work = tempfile::tempdir().unwrap();
    let photos = work.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..6 {
        std::fs::copy(
            common::repo().join("samples/coffee.png"),
            photos.join(format!("{i}.png")),
        )
        .unwrap();
    }
    let path = work.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Read as systemd does, while pinsight runs.
    let listen = |mut child: std::process::Child| {
        let mut messages = Vec::new();
        let mut buffer = [0u8; 512];
        loop {
            match socket.recv(&mut buffer) {
                Ok(n) => messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned()),
                Err(_) if child.try_wait().unwrap().is_some() => break,
                Err(_) => {}
            }
        }
        assert!(child.wait().unwrap().success());
        messages
    };
    let run = |args: &[&str], watchdog: Option<&str>| {
        let mut command = common::pinsight();
        command
            .arg("run")
            .args(args)
            .arg("--source")
            .arg(&photos)
            .env("NOTIFY_SOCKET", &path)
            .stdout(std::process::Stdio::null());
        if let Some(usec) = watchdog {
            command.env("WATCHDOG_USEC", usec);
        }
        command.spawn().unwrap()
    };

    let messages = listen(run(&["--fps", "5"], Some("400000")));
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1"),
        "{messages:?}"
    );
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
    // Six results a fifth of a second apart, pings at most every 100 ms.
    assert!(pings >= 3, "{pings} pings: {messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("STATUS=last: espresso · ")),
        "{messages:?}"
    );

    // Without WATCHDOG_USEC systemd does not watch: no pings.
    let messages = listen(run(&["--frames", "2"], None));
    assert!(!messages.iter().any(|m| m == "WATCHDOG=1"), "{messages:?}");
    assert_eq!(messages.first().map(String::as_str), Some("READY=1"));
}

/// A head taken in while running (here on SIGHUP, as `systemctl reload` asks) pulses the
/// taught output; the ImageNet head, which has no unknown threshold, never raises the unknown
/// output.
#[test]
fn a_head_taken_while_running_pulses_the_taught_output() {
    let dir = coffees(6);
    let mut source = Files::open(dir.path().to_str().unwrap()).unwrap();
    use State::Low;
    let set = Transaction::set;
    // Taught: safe, up when the head is taken, down when the pulse ends, safe at the end.
    let taught = Mock::new(&[set(Low), set(State::High), set(Low), set(Low)]);
    let unknown = Mock::new(&[set(Low), set(Low)]);
    let mut pulse = output(Role::Taught, 1);
    pulse.mode = OutputMode::Pulse(Duration::from_millis(1));
    let outputs = Outputs::new([
        (pulse, taught.clone()),
        (output(Role::Unknown, 2), unknown.clone()),
    ])
    .unwrap();
    let signals = Mutex::new(outputs);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watch = pinsight::run::reload::HeadWatch::start(
        &common::imagenet_head(),
        stop_watch.clone(),
        Box::new(|_| Ok(())),
    )
    .unwrap();
    let mut options = options(Some(6));
    options.reload = Some(Arc::new(watch));
    let mut results = 0;
    let summary = pinsight::run::run_loop(
        &mut source,
        common::imagenet_classifier(),
        &options,
        Mode::Continuous,
        &signals,
        &AtomicBool::new(false),
        |result| {
            assert!(!result.unknown, "{:?}", result.label);
            results += 1;
            if results == 1 {
                signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
            }
            Ok(())
        },
    )
    .unwrap();
    stop_watch.store(true, Ordering::Relaxed);
    assert_eq!((summary.reloads, summary.reloads_refused), (1, 0));
    drop(signals);
    for mut pin in [taught, unknown] {
        pin.done();
    }
}

/// Photos of hats and of pants in blocks of 20 frames (hats first), `n` frames in all.
fn hats_and_pants(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let photos = |class: &str| -> Vec<std::path::PathBuf> {
        let mut all = Vec::new();
        for split in ["train", "validation"] {
            let folder = common::repo()
                .join("tests/fixtures/clothing")
                .join(split)
                .join(class);
            all.extend(
                std::fs::read_dir(folder)
                    .unwrap()
                    .map(|e| e.unwrap().path()),
            );
        }
        all.sort();
        all
    };
    let (hats, pants) = (photos("hat"), photos("pants"));
    for i in 0..n {
        let block = if (i / 20) % 2 == 0 { &hats } else { &pants };
        std::fs::copy(
            &block[i % block.len()],
            dir.path().join(format!("{i:04}.jpg")),
        )
        .unwrap();
    }
    dir
}

/// The teacher, held in its second round until a hat press has come and saved its photos
/// while it learns.
struct PressDuringSecondRound {
    teacher: pinsight::teach::Teacher,
    rounds: AtomicU32,
    /// The hat button's presses allowed: one more during the second round.
    hat_allowed: Arc<AtomicU32>,
    hats: std::path::PathBuf,
}

impl pinsight::run::enroll::Learn for PressDuringSecondRound {
    fn learn(&self) -> Result<pinsight::run::enroll::Learned, String> {
        if self.rounds.fetch_add(1, Ordering::Relaxed) == 1 {
            self.hat_allowed.fetch_add(1, Ordering::Relaxed);
            let given_up = std::time::Instant::now() + Duration::from_secs(300);
            let saved = || {
                std::fs::read_dir(&self.hats)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().extension() == Some("jpg".as_ref()))
                    .count()
            };
            while saved() < 8 {
                assert!(std::time::Instant::now() < given_up, "no second hat press");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.teacher.learn()
    }
}

/// Enrollment from the ImageNet head: a hat press (too few photos: pants has none), a pants
/// press (a head is learnt and taken), a hat press while it learns (one more round, taken),
/// then a pants press whose round fails because the head folder holds a file pinsight did not
/// write: the head in use and its folder stay as they were.
#[test]
fn enrollment_teaches_classes_from_button_presses_and_keeps_the_head_when_learning_fails() {
    use pinsight::run::enroll::{EnrollEvent, Enrollment, Outcome};
    let frames = hats_and_pants(1000);
    let work = tempfile::tempdir().unwrap();
    let (photos, taught) = (work.path().join("photos"), work.path().join("taught"));
    let spec = pinsight::board::EnrollSpec {
        photos: photos.clone(),
        head: taught.clone(),
        burst: 4,
        every: Duration::ZERO,
        min_photos: 4,
        buttons: ["hat", "pants"]
            .iter()
            .enumerate()
            .map(|(offset, class)| pinsight::board::EnrollButton {
                class: class.to_string(),
                line: Line {
                    offset: offset as u32 + 10,
                    name: format!("line {}", offset + 10),
                },
                edge: pinsight::board::Edge::Rising,
                bias: pinsight::board::Bias::AsIs,
                debounce: Duration::ZERO,
            })
            .collect(),
    };
    let model = pinsight::run::ModelFiles {
        backbone: common::int8_backbone(),
        head: common::imagenet_head(),
        engine: pinsight::model::Engine::default(),
        threads: pinsight::model::threads::count(),
    };
    let allowed = [Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0))];
    let buttons = ["hat", "pants"]
        .iter()
        .zip(&allowed)
        .map(|(class, allowed)| {
            let done = Arc::new(AtomicBool::new(false));
            let button = Button {
                presses: 2,
                allowed: allowed.clone(),
                high: false,
                quiet_next: false,
                done: done.clone(),
            };
            let trigger =
                Trigger::new(button, pinsight::board::Edge::Rising, Duration::ZERO).unwrap();
            (class.to_string(), Presses::spawn(trigger, done))
        })
        .collect();
    let learner = Arc::new(PressDuringSecondRound {
        teacher: pinsight::teach::Teacher::new(&spec, &model, common::shared_feature_cache()),
        rounds: AtomicU32::new(0),
        hat_allowed: allowed[0].clone(),
        hats: photos.join("hat"),
    });
    let events = Arc::new(Mutex::new(Vec::<EnrollEvent>::new()));
    let sink = {
        let (events, taught, pants) = (events.clone(), taught.clone(), allowed[1].clone());
        Box::new(move |event: &EnrollEvent| {
            eprintln!("{}", serde_json::to_string(event).unwrap());
            let mut events = events.lock().unwrap();
            events.push(event.clone());
            if events.len() == 3 && taught.is_dir() {
                // A file of the user's in the head folder: the next round must not replace it.
                std::fs::write(taught.join("notes.txt"), "mine").unwrap();
                pants.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let enrollment = Enrollment::new(&spec, buttons, learner, sink);

    use State::{High, Low};
    let set = Transaction::set;
    // Busy: up at each press that starts learning, down when no round is left.
    let busy = Mock::new(&[
        set(Low),
        set(High),
        set(Low),
        set(High),
        set(Low),
        set(High),
        set(Low),
        set(Low),
    ]);
    // Taught: a pulse for each head taken.
    let taught_pin = Mock::new(&[set(Low), set(High), set(Low), set(High), set(Low), set(Low)]);
    let mut pulse = output(Role::Taught, 2);
    pulse.mode = OutputMode::Pulse(Duration::from_millis(1));
    let signals = Mutex::new(
        Outputs::new([
            (output(Role::Busy, 1), busy.clone()),
            (pulse, taught_pin.clone()),
        ])
        .unwrap(),
    );
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watch =
        pinsight::run::reload::HeadWatch::start(&taught, stop_watch.clone(), Box::new(|_| Ok(())))
            .unwrap();
    let mut options = options(None);
    options.reload = Some(Arc::new(watch));
    options.enroll = Some(Arc::new(enrollment));
    // The source lasts 20 s or more: the rounds need a few.
    options.max_fps = Some(50.0);
    let mut source = Files::open(frames.path().to_str().unwrap()).unwrap();
    let stop = AtomicBool::new(false);
    let mut results: Vec<(usize, Vec<String>)> = Vec::new();
    let summary = pinsight::run::run_loop(
        &mut source,
        common::imagenet_classifier(),
        &options,
        Mode::Continuous,
        &signals,
        &stop,
        |result| {
            let rounds = events.lock().unwrap().len();
            let labels = result.top.iter().map(|g| g.label.clone()).collect();
            results.push((rounds, labels));
            match results.len() {
                2 => allowed[0].fetch_add(1, Ordering::Relaxed),
                24 => allowed[1].fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            // A few results on the kept head after the failed round, then stop.
            if results.iter().filter(|(rounds, _)| *rounds == 4).count() >= 3 {
                stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        },
    )
    .unwrap();
    stop_watch.store(true, Ordering::Relaxed);

    let events = events.lock().unwrap();
    let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::TooFew,
            Outcome::Swapped,
            Outcome::Swapped,
            Outcome::Failed
        ],
        "{events:#?}"
    );
    let pressed: Vec<&[String]> = events.iter().map(|e| e.pressed.as_slice()).collect();
    assert_eq!(pressed, [["hat"], ["pants"], ["hat"], ["pants"]]);
    assert!(events.iter().all(|e| e.saved == 4), "{events:#?}");
    let counts = |e: &EnrollEvent| (e.photos.get("hat").copied(), e.photos.get("pants").copied());
    assert_eq!(counts(&events[0]), (Some(4), Some(0)));
    // The hat press while the second round learnt saved its photos before that round counted
    // them (the learner waited for them): it learnt from them too, and so did the third.
    assert_eq!(counts(&events[1]), (Some(8), Some(4)));
    assert_eq!(counts(&events[2]), (Some(8), Some(4)));
    for swapped in &events[1..3] {
        assert!(swapped.train_ms.is_some() && swapped.swap_ms.is_some());
        assert!(swapped.press_to_swap_ms.is_some());
    }
    let reason = events[3].reason.as_deref().unwrap();
    assert!(
        reason.contains("taught"),
        "the reason names the folder: {reason}"
    );
    assert_eq!(std::fs::read(taught.join("notes.txt")).unwrap(), b"mine");
    for (class, saved) in [("hat", 8), ("pants", 8)] {
        assert_eq!(
            std::fs::read_dir(photos.join(class)).unwrap().count(),
            saved
        );
    }
    // ImageNet's labels before the first head was taken, the taught classes after it.
    let taught_labels = |labels: &Vec<String>| labels.iter().all(|l| l == "hat" || l == "pants");
    assert!(!taught_labels(&results[0].1));
    for (rounds, labels) in &results {
        if *rounds >= 2 {
            assert!(taught_labels(labels), "{labels:?}");
        }
    }
    assert_eq!((summary.reloads, summary.reloads_refused), (2, 0));
    drop(signals);
    for mut pin in [busy, taught_pin] {
        pin.done();
    }
}
