//! `pinsight bench`: the fields its reports hold, never how fast anything is.

mod common;

use serde_json::Value;

#[test]
fn model_only_prints_one_json_line_with_exact_inference_count() {
    let output = common::pinsight()
        .args(["bench", "--model-only", "--runs", "2", "--threads", "2"])
        .args(["--photo", "samples/coffee.png", "--backbone"])
        .arg(common::int8_backbone())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line");
    let result: Value = serde_json::from_str(lines[0]).unwrap();
    // What runs the int8 file: pinsight's int8 engine where it has SIMD kernels, else tract.
    let kernels = pinsight::model::KernelSet::chosen().unwrap();
    let engine = if pinsight::model::int8_by_default(kernels) {
        "int8"
    } else {
        "tract"
    };
    assert_eq!(result["engine"], engine);
    // tract's engine runs on one thread; the int8 engine on as many as the test asked for.
    assert_eq!(result["threads"], if engine == "int8" { 2 } else { 1 });
    assert_eq!(result["runs"], 2);
    assert_eq!(result["inferences"], 3, "the first inference and two timed");
    // Times are reported, never judged: each is there and a real duration. p50 and p99 are
    // NaN when no inference was timed, so they being finite shows the two runs were measured.
    for key in ["ready_ms", "load_ms", "first_ms", "p50_ms", "p99_ms"] {
        let ms = result[key].as_f64();
        assert!(
            ms.is_some_and(|ms| ms.is_finite() && ms >= 0.0),
            "{key} in {result}"
        );
    }
    let peak = result["peak_rss_kib"].as_u64().unwrap();
    let before = result["rss_before_load_kib"].as_u64().unwrap();
    assert!(
        peak > before,
        "loading a model raises the peak: {peak} vs {before} KiB"
    );
    assert_eq!(
        result["top1_label"], "espresso",
        "the photo given is the one classified"
    );
}

#[test]
fn model_only_refuses_two_backbones() {
    let output = common::pinsight()
        .args(["bench", "--model-only"])
        .args(["--backbone", "models/efficientnet-lite0/backbone-int8.onnx"])
        .args([
            "--backbone",
            "models/efficientnet-lite0/backbone-float.onnx",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("one backbone"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "the report starts itself again, which qemu-user cannot do for an ARM binary"
)]
fn report_measures_each_backbone_in_a_process_of_its_own() {
    let output = common::pinsight()
        .args([
            "bench",
            "--runs",
            "1",
            "--photo",
            "samples/coffee.png",
            "--threads",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    assert!(stdout.contains("MJPG"), "the frame table is kept");
    assert!(
        stdout.contains("int8 (") && stdout.contains(", 3 threads)"),
        "{stdout}"
    );
    for backbone in ["backbone-int8.onnx", "backbone-float.onnx"] {
        let row = stdout
            .lines()
            .find(|l| l.contains(backbone))
            .unwrap_or_else(|| panic!("a row for {backbone}"));
        assert!(row.contains("espresso"), "{row}");
    }
}
