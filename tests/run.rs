//! The run loop over a folder source, in the library and through `pinsight run`.

mod common;

use std::sync::atomic::AtomicBool;

use pinsight::run::{RunOptions, run};
use pinsight::source::Files;
use serde_json::Value;

fn options(frames: Option<u64>) -> RunOptions {
    RunOptions {
        frames,
        max_fps: None,
        top: 3,
        threshold: 0.5,
        smooth: 1,
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

#[test]
fn cli_run_names_a_missing_camera() {
    let output = common::pinsight()
        .args(["run", "--source", "/dev/video-does-not-exist"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
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
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("camera /dev/null: is not a V4L2 video device"),
        "{stderr}"
    );
}
