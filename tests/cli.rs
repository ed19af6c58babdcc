//! The `pinsight` binary as a user runs it.

mod common;

use serde_json::Value;

#[test]
fn classify_prints_json_lines_and_skips_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jpg");
    let mut jpeg = std::fs::read(common::repo().join("samples/rocket.jpg")).unwrap();
    jpeg.truncate(600);
    std::fs::write(&broken, &jpeg).unwrap();

    let output = common::pinsight()
        .args(["classify", "--json", "--top", "3", "samples/coffee.png"])
        .arg(&broken)
        .arg("samples/chelsea.png")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");

    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2, "the two good images are classified");
    assert_eq!(results[0]["path"], "samples/coffee.png");
    assert_eq!(results[0]["top"][0]["label"], "espresso");
    assert_eq!(results[0]["top"].as_array().unwrap().len(), 3);
    assert!(results[0]["ms"]["inference"].as_f64().unwrap() > 0.0);
    assert_eq!(results[1]["path"], "samples/chelsea.png");
    assert!(
        stderr.contains("broken.jpg"),
        "the bad image is named: {stderr}"
    );
    assert!(
        stderr.contains("1 of 3 images could not be read"),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn classify_prints_a_table_by_default() {
    let output = common::pinsight()
        .args(["classify", "--top", "1", "samples/coffee.png"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("samples/coffee.png\n"), "{stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().ends_with("%  espresso"),
        "{stdout}"
    );
}
