//! The `pinsight` binary as a user runs it.

mod common;

use std::path::PathBuf;

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
    let inference = results[0]["ms"]["inference"].as_f64();
    assert!(
        inference.is_some_and(|ms| ms.is_finite() && ms >= 0.0),
        "the inference time is reported: {}",
        results[0]
    );
    assert_eq!(results[1]["path"], "samples/chelsea.png");
    assert!(
        stderr.contains("broken.jpg"),
        "the bad image is named: {stderr}"
    );
    assert!(
        stderr.contains("1 of 3 images could not be read"),
        "{stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(5),
        "partly done: the rest were classified"
    );
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

    // From another working directory, the bundled models are still found.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = common::pinsight()
        .arg("classify")
        .arg(common::repo().join("samples/coffee.png"))
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.lines().nth(1).unwrap().ends_with("%  espresso"),
        "{stdout}"
    );
}

#[test]
fn config_resolves_the_starter_config_from_anywhere_and_refuses_a_broken_one() {
    // From another working directory: the bundled models are found beside the binary.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = common::pinsight()
        .arg("config")
        .arg(common::repo().join("board/examples/pinsight.toml"))
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let resolved: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        resolved["model"]["head"].as_str().map(PathBuf::from),
        Some(common::imagenet_head())
    );
    assert_eq!(resolved["mode"], "triggered");
    assert_eq!(resolved["source"], "/dev/video0", "the board's camera");
    assert_eq!(resolved["deployment"]["board"], "raspberry-pi-4");
    assert_eq!(resolved["deployment"]["chip"], "pinctrl-bcm2711");
    // pin11 on a Raspberry Pi header is GPIO17.
    assert_eq!(resolved["deployment"]["trigger"]["line"]["offset"], 17);

    // A command-line head overrides the config's; door.toml names classes ImageNet lacks.
    let output = common::pinsight()
        .args(["config", "board/examples/door.toml", "--head"])
        .arg(common::imagenet_head())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("names class \"dog\", which the head does not have"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("twice.toml");
    std::fs::write(
        &config,
        "board = \"raspberry-pi-5\"\n[outputs.ready]\npin = \"pin11\"\n\
         [outputs.busy]\npin = \"GPIO17\"\n",
    )
    .unwrap();
    let output = common::pinsight()
        .arg("config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "a bad config: {stderr}");
    assert!(stderr.contains("twice.toml"), "{stderr}");
    assert!(stderr.contains("line 17 is used twice"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn config_resolves_the_teach_example_and_refuses_a_lone_enroll_class() {
    let example = common::repo().join("board/examples/pinsight-teach.toml");
    let output = common::pinsight()
        .arg("config")
        .arg(&example)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let resolved: Value = serde_json::from_slice(&output.stdout).unwrap();
    let enroll = &resolved["deployment"]["enroll"];
    assert_eq!(enroll["photos"], "/var/lib/pinsight/photos");
    assert_eq!(enroll["head"], "/var/lib/pinsight/taught");
    assert_eq!(enroll["burst"], 8);
    assert_eq!(enroll["buttons"][0]["class"], "left");
    assert_eq!(enroll["buttons"][0]["line"]["offset"], 17);
    assert_eq!(enroll["buttons"][1]["edge"], "falling");

    // One class is no classifier; a class name training would not read is refused.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    for (from, to, says) in [
        ("right = \"pin12\"", "", "at least two classes"),
        ("right = \"pin12\"", "train = \"pin12\"", "\"train\""),
    ] {
        let path = dir.path().join("teach.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let output = common::pinsight()
            .arg("config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn config_checks_the_network_example_and_hides_its_secrets() {
    let example = common::repo().join("board/examples/pinsight-network.toml");
    let output = common::pinsight()
        .arg("config")
        .arg(&example)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("change-me"), "{stdout}");
    let resolved: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(resolved["mqtt"]["password"], "(set)");
    assert_eq!(resolved["http"]["token"], "(set)");
    assert_eq!(resolved["http"]["listen"], "0.0.0.0:8080");
    assert_eq!(resolved["mqtt"]["classes"][1], "coffee mug");
    assert_eq!(resolved["keep"]["folder"], "/var/lib/pinsight/unsure");
    assert_eq!(resolved["keep"]["max_files"], 1000);
    assert_eq!(resolved["keep"]["max_bytes"], 200_000_000);

    // A state-topic class the head lacks is refused before anything runs, naming it.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap().replace(
        "classes = [\"cup\", \"coffee mug\"]",
        "classes = [\"cup\", \"mug\"]",
    );
    let changed = dir.path().join("pinsight.toml");
    std::fs::write(&changed, text).unwrap();
    let output = common::pinsight()
        .arg("config")
        .arg(&changed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("[mqtt] classes: the head has no class \"mug\""),
        "{stderr}"
    );
}

#[test]
fn capture_adds_photos_for_training_and_never_replaces_one() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("cup")).unwrap();
    std::fs::write(photos.join("cup/mine.jpg"), b"the user's photo").unwrap();
    let capture = |args: &[&str]| {
        common::pinsight()
            .arg("capture")
            .arg(&photos)
            .args(args)
            .output()
            .unwrap()
    };
    let mut saved = Vec::new();
    for _ in 0..2 {
        let output = capture(&[
            "--class", "cup", "--count", "2", "--every", "0", "--source", "samples",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let paths: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        saved.extend(paths);
    }
    // Four photos (a second session within the same second numbers its names), each a JPEG
    // of a sample photo, beside the user's.
    let mut names: Vec<String> = std::fs::read_dir(photos.join("cup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        std::fs::read(photos.join("cup/mine.jpg")).unwrap(),
        b"the user's photo"
    );
    for path in &saved {
        assert!(
            path.starts_with(&*photos.join("cup/").to_string_lossy()),
            "{path}"
        );
        let image = image::open(path).unwrap();
        assert!(image.width() > 100, "{path}");
    }

    // A class name `train` would not read as a class is refused before anything is written.
    for class in ["a/b", "train", ".hidden", " cup", ""] {
        let output = capture(&["--class", class, "--source", "samples"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{class:?}: {stderr}");
        assert!(stderr.contains("class"), "{stderr}");
    }
    let output = capture(&["--class", "cup", "--source", "no-such-folder"]);
    assert!(!output.status.success());
    assert_eq!(std::fs::read_dir(photos.join("cup")).unwrap().count(), 5);
}

#[test]
fn version_names_the_commit_target_kernels_and_bundled_backbone() {
    let output = common::pinsight().arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let first = text.lines().next().unwrap();
    let revision = first
        .strip_prefix(concat!("pinsight ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{first}"));
    let commit = revision.strip_suffix("-modified").unwrap_or(revision);
    assert!(
        commit == "unknown" || commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    assert!(
        text.contains(&format!("target: {}\n", env!("PINSIGHT_BUILD_TARGET"))),
        "{text}"
    );
    assert!(text.contains("\nint8 kernels: "), "{text}");
    let sums = std::fs::read_to_string(common::repo().join("models/efficientnet-lite0/SHA256SUMS"))
        .unwrap();
    let sha256 = sums
        .lines()
        .find_map(|l| l.strip_suffix("  backbone-int8.onnx"))
        .unwrap();
    assert!(text.contains(&format!("sha256 {sha256}")), "{text}");
}

/// `PINSIGHT_KERNELS` puts the int8 engine on another kernel set this CPU runs, and a set it
/// cannot run, or no set at all, is refused with the reason before any work.
#[test]
fn the_kernels_variable_picks_a_runnable_set_and_refuses_others() {
    use pinsight::model::KernelSet;

    let version = common::pinsight()
        .arg("--version")
        .env("PINSIGHT_KERNELS", "portable")
        .output()
        .unwrap();
    let text = String::from_utf8(version.stdout).unwrap();
    // On x86_64 the portable kernels lose to tract, which `--engine auto` then runs.
    let line = if cfg!(target_arch = "x86_64") {
        "\nint8 kernels: portable (--engine auto runs int8 backbones on tract)\n"
    } else {
        "\nint8 kernels: portable\n"
    };
    assert!(text.contains(line), "{text}");

    let bench = |kernels: &str| {
        common::pinsight()
            .args(["bench", "--model-only", "--engine", "int8", "--runs", "1"])
            .env("PINSIGHT_KERNELS", kernels)
            .output()
            .unwrap()
    };
    for set in KernelSet::runnable() {
        let output = bench(set.name());
        assert!(output.status.success(), "{set}: {output:?}");
        let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(line["kernels"], set.name(), "{line}");
    }
    let foreign = KernelSet::ALL.into_iter().find(|set| !set.runs_here());
    for name in foreign.map(KernelSet::name).into_iter().chain(["sse9"]) {
        let output = bench(name);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("PINSIGHT_KERNELS={name}")),
            "{stderr}"
        );
        assert!(stderr.contains("this CPU runs portable"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let subcommands = [
        "classify",
        "run",
        "capture",
        "train",
        "eval",
        "bench",
        "config",
        "completions",
        "man",
    ];
    let bash = common::pinsight()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    for subcommand in subcommands {
        assert!(
            script.contains(subcommand),
            "bash completion lacks {subcommand}"
        );
    }
    assert!(script.contains("--threshold"));
    for shell in ["zsh", "fish"] {
        let output = common::pinsight()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            output.status.success() && !output.stdout.is_empty(),
            "{shell}"
        );
    }

    let page = common::pinsight().arg("man").output().unwrap();
    let page = String::from_utf8(page.stdout).unwrap();
    assert!(page.contains(".TH pinsight 1"), "{page}");
    for subcommand in subcommands {
        let output = common::pinsight()
            .args(["man", subcommand])
            .output()
            .unwrap();
        assert!(output.status.success(), "man {subcommand}");
        let page = String::from_utf8(output.stdout).unwrap();
        assert!(
            page.contains(&format!(".TH pinsight-{subcommand} 1")),
            "{page}"
        );
    }
    let unknown = common::pinsight()
        .args(["man", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("\"frobnicate\""));
}
