//! A new head while `pinsight run` runs: one `pinsight train` writes over the running head's
//! folder is taken without a restart; a broken one is refused, on a change or on SIGHUP, and the
//! running head stays.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinsight::model::Engine;
use pinsight::train::{Grid, TrainConfig, TrainOptions, train_from_folder};
use serde_json::Value;

/// Trains a head on `data` into `out` (replacing the head there), on the shared feature cache.
fn train(data: &Path, out: &Path) {
    train_from_folder(&TrainOptions {
        data: data.into(),
        out: out.into(),
        backbone: common::int8_backbone(),
        engine: Engine::default(),
        threads: pinsight::model::threads::count(),
        cache: common::shared_feature_cache(),
        config: TrainConfig::default(),
        grid: Grid::default(),
        augment: false,
        accept_known: 0.95,
    })
    .unwrap();
}

/// The labels of a result's `top`.
fn top_labels(line: &str) -> Vec<String> {
    let result: Value = serde_json::from_str(line).unwrap();
    result["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|guess| guess["label"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits up to a minute for `ready`, failing with `what` and the log.
fn wait(what: &str, log: &Mutex<String>, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_takes_a_new_head_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let clothing = common::repo().join("tests/fixtures/clothing");
    let head = dir.path().join("head");
    train(&clothing, &head);
    // Two of the three classes, for the second head.
    let two = dir.path().join("two");
    for class in ["hat", "shoes"] {
        let to = two.join(class);
        std::fs::create_dir_all(&to).unwrap();
        for split in ["train", "validation"] {
            for photo in std::fs::read_dir(clothing.join(split).join(class)).unwrap() {
                let photo = photo.unwrap().path();
                std::fs::copy(
                    &photo,
                    to.join(format!(
                        "{split}-{}",
                        photo.file_name().unwrap().to_string_lossy()
                    )),
                )
                .unwrap();
            }
        }
    }
    let photos = common::photo_folder(&[("photos", 300)]);

    let mut child = common::pinsight()
        .env("RUST_LOG", "info")
        .args([
            "run",
            "--fps",
            "5",
            "--top",
            "3",
            "--threshold",
            "0",
            "--head",
        ])
        .arg(&head)
        .arg("--source")
        .arg(photos.path().join("photos"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::new(Mutex::new(String::new()));
    let readers = [
        {
            let lines = lines.clone();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    lines.lock().unwrap().push(line.unwrap());
                }
            })
        },
        {
            let log = log.clone();
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line.unwrap());
                    log.push('\n');
                }
            })
        },
    ];
    let count = || lines.lock().unwrap().len();
    let logged = |needle: &str| log.lock().unwrap().matches(needle).count();

    wait("no first result", &log, || count() > 0);
    assert_eq!(
        top_labels(&lines.lock().unwrap()[0]).len(),
        3,
        "three classes"
    );

    // `pinsight train` replaces the running head's folder: the next results have two classes.
    train(&two, &head);
    wait("the new head was not taken", &log, || {
        logged("new head from") == 1
    });
    let taken = count();
    wait("no result after the new head", &log, || count() > taken + 1);
    let last = lines.lock().unwrap().last().unwrap().clone();
    let mut labels = top_labels(&last);
    labels.sort();
    assert_eq!(labels, ["hat", "shoes"], "{last}");

    // A broken head (a file damaged in place) is refused; so is it again on SIGHUP. The
    // results go on with the two classes.
    let onnx = head.join("head.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    wait("the broken head was not refused", &log, || {
        logged("the running head stays") == 1
    });
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait("SIGHUP did not try the head again", &log, || {
        logged("the running head stays") == 2
    });
    let refused = count();
    wait("no result after the refusals", &log, || {
        count() > refused + 1
    });
    let last = lines.lock().unwrap().last().unwrap().clone();
    assert_eq!(top_labels(&last).len(), 2, "{last}");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    let log = log.lock().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("1 new heads taken, 2 refused"), "{log}");
    assert!(
        log.contains(&format!("{}", onnx.display())),
        "the refusal names the file:\n{log}"
    );
}
