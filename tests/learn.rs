//! Training a head from a folder of labelled photos, and evaluating it: on the small CC0
//! clothing set in tests/fixtures/clothing (3 classes, 8 training and 4 validation photos each).

mod common;

use std::path::{Path, PathBuf};

use pinsight::Error;
use pinsight::model::{Classifier, Engine};
use pinsight::train::{Assessment, Grid, TrainConfig, TrainOptions, train_from_folder};

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/clothing")
}

fn options(data: &Path, out: &Path, cache: &Path) -> TrainOptions {
    TrainOptions {
        data: data.into(),
        out: out.into(),
        backbone: common::int8_backbone(),
        engine: Engine::default(),
        threads: pinsight::model::threads::count(),
        cache: cache.into(),
        config: TrainConfig::default(),
        grid: Grid::default(),
        augment: false,
        accept_known: 0.95,
    }
}

#[test]
fn trains_a_head_that_classify_runs_and_reuses_cached_features() {
    let work = tempfile::tempdir().unwrap();
    let (head, cache) = (work.path().join("head"), work.path().join("cache"));
    let before = common::snapshot(&fixture());

    let first = train_from_folder(&options(&fixture(), &head, &cache)).unwrap();
    let Assessment::HeldOut {
        report, validation, ..
    } = &first.assessment
    else {
        panic!("train/ and validation/ folders: the head stops early on validation/");
    };
    println!(
        "validation accuracy {:.3}, best epoch {}, tract vs trainer {:e}",
        validation.accuracy, report.best_epoch, first.check_max_abs_diff
    );
    assert_eq!(first.classes, ["hat", "pants", "shoes"]);
    assert_eq!(first.photos, [24, 12, 0]);
    assert!(
        validation.accuracy >= 0.8,
        "chance is 0.33; got {}",
        validation.accuracy
    );
    assert!(
        first.check_max_abs_diff < 1e-3,
        "tract and the trainer disagree by {}",
        first.check_max_abs_diff
    );
    assert_eq!((first.cache_hits, first.cache_misses), (0, 36));

    // The head folder is what `classify` and `run` load.
    let classifier = Classifier::load(&common::int8_backbone(), &head).unwrap();
    assert_eq!(classifier.labels(), ["hat", "pants", "shoes"]);
    let mut names: Vec<String> = std::fs::read_dir(&head)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["SHA256SUMS", "head.json", "head.onnx", "labels.txt"]
    );

    // Again on the same photos: every feature comes from the cache, and the result is the same.
    let second = train_from_folder(&options(&fixture(), &head, &cache)).unwrap();
    assert_eq!((second.cache_hits, second.cache_misses), (36, 0));
    assert_eq!(
        second.assessment.accuracy(),
        first.assessment.accuracy(),
        "training is deterministic"
    );

    assert!(
        common::snapshot(&fixture()) == before,
        "the photos were changed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".pinsight-head-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging folders left behind: {leftovers:?}"
    );

    // `pinsight eval` on the same photos writes its report and picture.
    let json = work.path().join("eval.json");
    let png = work.path().join("confusion.png");
    let output = common::pinsight()
        .args([
            "eval",
            "tests/fixtures/clothing",
            "--split",
            "validation",
            "--head",
        ])
        .arg(&head)
        .arg("--json")
        .arg(&json)
        .arg("--png")
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["photos"], 12);
    assert!(
        report["pinsight"].is_string(),
        "the report says who wrote it"
    );
    // The confusion matrix as its cells that hold photos.
    let cells = report["confusion"].as_array().unwrap();
    let photos = |cell: &serde_json::Value| cell["photos"].as_u64().unwrap();
    assert_eq!(cells.iter().map(photos).sum::<u64>(), 12);
    assert!(cells.iter().all(|cell| photos(cell) > 0));
    let correct: u64 = cells
        .iter()
        .filter(|cell| cell["truth"] == cell["predicted"])
        .map(photos)
        .sum();
    assert!((report["accuracy"].as_f64().unwrap() - correct as f64 / 12.0).abs() < 1e-9);
    let picture = image::open(&png).unwrap();
    assert!(picture.width() > 3 * 36 && picture.height() > 3 * 36);
}

#[test]
fn a_flat_folder_trains_on_every_photo_with_settings_chosen_by_cross_validation() {
    let work = tempfile::tempdir().unwrap();
    let head = work.path().join("head");
    let data = common::photo_folder(&[("hat", 8), ("pants", 8), ("shoes", 6)]);
    let outcome = train_from_folder(&options(
        data.path(),
        &head,
        &common::shared_feature_cache(),
    ))
    .unwrap();
    println!("{outcome}");
    assert_eq!(outcome.photos, [22, 0, 0], "every photo trains the head");
    let Assessment::CrossValidated(cv) = &outcome.assessment else {
        panic!("a flat folder is cross-validated");
    };
    assert_eq!(cv.folds, 5);
    assert_eq!(cv.fold_accuracy.len(), 5);
    // Hats, pants and shoes are far apart: chance is 0.33.
    assert!(cv.chosen.accuracy >= 0.8, "{cv:?}");
    assert!(
        outcome.to_string().contains(&format!(
            "cross-validated accuracy: {:.2}%",
            100.0 * cv.chosen.accuracy
        )),
        "{outcome}"
    );
    // The unknown threshold comes from every photo's out-of-fold score.
    let set = outcome
        .unknown
        .expect("a flat folder sets the threshold too");
    assert!(set.threshold.is_finite());
    assert_eq!(set.photos, 22);
    assert!(set.accepted >= 0.95, "{set:?}");

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap();
    assert_eq!(meta["photos"]["train"], 22);
    assert_eq!(meta["photos"]["validation"], 0);
    assert_eq!(
        meta["cross_validation"]["accuracy"].as_f64().unwrap(),
        cv.chosen.accuracy
    );
    assert_eq!(meta["cross_validation"]["folds"], 5);
    assert_eq!(meta["config"]["epochs"], cv.chosen.epochs);
    assert!(meta["config"]["patience"].is_null(), "no early stopping");
    assert!(meta.get("validation_accuracy").is_none());

    // A class of one photo cannot be held out and trained on: refused, named.
    let small = common::photo_folder(&[("hat", 6), ("pants", 1)]);
    let message = train_error(small.path());
    assert!(
        message.contains("at least 2 photos") && message.contains("pants (1)"),
        "{message}"
    );
}

fn train_error(data: &Path) -> String {
    let work = tempfile::tempdir().unwrap();
    let result = train_from_folder(&options(
        data,
        &work.path().join("head"),
        &work.path().join("cache"),
    ));
    let error = result.err().expect("training should fail");
    assert!(
        !work.path().join("head").exists(),
        "no head is written when training fails"
    );
    error.to_string()
}

#[test]
fn one_class_is_not_a_classifier() {
    let data = common::photo_folder(&[("hat", 5)]);
    let message = train_error(data.path());
    assert!(message.contains("at least 2 classes"), "{message}");
}

#[test]
fn a_class_needs_two_training_photos() {
    let data = tempfile::tempdir().unwrap();
    for (split, class, n) in [
        ("train", "hat", 3),
        ("train", "pants", 1),
        ("validation", "hat", 1),
        ("validation", "pants", 1),
    ] {
        let dir = data.path().join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            std::fs::copy(
                fixture()
                    .join("train/hat")
                    .read_dir()
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
                dir.join(format!("{i}.jpg")),
            )
            .unwrap();
        }
    }
    let message = train_error(data.path());
    assert!(
        message.contains("at least 2 training photos") && message.contains("pants (1)"),
        "{message}"
    );
}

#[test]
fn unreadable_photos_are_skipped_by_name_and_an_old_head_survives_a_failed_run() {
    let work = tempfile::tempdir().unwrap();
    let (head, cache) = (work.path().join("head"), common::shared_feature_cache());
    // Two classes of four photos, with a broken JPEG and a text file.
    let data = common::photo_folder(&[("a", 4), ("b", 4)]);
    std::fs::write(
        data.path().join("a/broken0.jpg"),
        b"\xFF\xD8\xFF\xE0 truncated",
    )
    .unwrap();
    std::fs::write(data.path().join("a/notes0.txt"), "not a photo").unwrap();
    let before = common::snapshot(data.path());
    let outcome = train_from_folder(&options(data.path(), &head, &cache)).unwrap();
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert!(outcome.skipped[0].ends_with("a/broken0.jpg"));
    assert!(
        common::snapshot(data.path()) == before,
        "the photos were changed"
    );
    let written = common::snapshot(&head);

    // A run that fails (a setting out of range) leaves the previous head as it was.
    let mut bad = options(data.path(), &head, &cache);
    bad.config.batch_size = 0;
    assert!(matches!(train_from_folder(&bad), Err(Error::Training(_))));
    assert!(
        common::snapshot(&head) == written,
        "the old head was touched"
    );
}

/// Copies every photo of `from` (one folder) into `to`.
fn copy_photos(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_head_taught_hats_and_pants_says_unknown_to_shoes() {
    let work = tempfile::tempdir().unwrap();
    let (data, others, head) = (
        work.path().join("data"),
        work.path().join("others"),
        work.path().join("head"),
    );
    for split in ["train", "validation"] {
        for class in ["hat", "pants"] {
            copy_photos(
                &fixture().join(split).join(class),
                &data.join(split).join(class),
            );
        }
        copy_photos(&fixture().join(split).join("shoes"), &others.join("shoes"));
    }
    let outcome =
        train_from_folder(&options(&data, &head, &common::shared_feature_cache())).unwrap();
    let set = outcome
        .unknown
        .expect("training sets the unknown threshold");
    println!("{outcome}");
    assert!(set.threshold.is_finite());
    assert_eq!(set.photos, 8, "the 8 validation photos set it");
    assert!(set.accepted >= 0.95, "{set:?}");
    assert!(outcome.to_string().contains("unknown below a score of"));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap();
    assert_eq!(
        meta["unknown"]["threshold"].as_f64().unwrap() as f32,
        set.threshold
    );

    // `eval --unknown`: known hats and pants score above shoes.
    let json = work.path().join("eval.json");
    let output = common::pinsight()
        .arg("eval")
        .arg(&data)
        .args(["--split", "validation", "--head"])
        .arg(&head)
        .arg("--unknown")
        .arg(&others)
        .arg("--json")
        .arg(&json)
        .arg("--png")
        .arg(work.path().join("confusion.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("AUROC"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let unknown = &report["unknown"];
    assert_eq!(unknown["unknown_photos"], 12);
    // Measured 0.91 on x86 (0.5 is a coin): shoes are clothing too, the nearest other class.
    assert!(unknown["auroc"].as_f64().unwrap() > 0.75, "{unknown}");
    assert_eq!(unknown["threshold"].as_f64().unwrap() as f32, set.threshold);
    assert!(unknown["rejected"].as_f64().unwrap() > 0.0, "{unknown}");
    // The threshold was set on these very photos, to accept 95% of them or more.
    assert!(
        unknown["known_accepted"].as_f64().unwrap() >= 0.95,
        "{unknown}"
    );
    assert!(
        unknown["known_accuracy"].as_f64().unwrap() <= unknown["known_accepted"].as_f64().unwrap()
    );

    // `eval --unknown` refuses a folder of classes the head knows.
    let refused = common::pinsight()
        .arg("eval")
        .arg(&data)
        .args(["--split", "validation", "--head"])
        .arg(&head)
        .arg("--unknown")
        .arg(data.join("train"))
        .arg("--json")
        .arg(work.path().join("refused.json"))
        .arg("--png")
        .arg(work.path().join("refused.png"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not know"), "{stderr}");

    // `run` on the shoes: a result is unknown exactly when its score is below the threshold,
    // and an unknown result has no label.
    let output = common::pinsight()
        .args(["run", "--smooth", "1", "--head"])
        .arg(&head)
        .arg("--source")
        .arg(others.join("shoes"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(results.len(), 12);
    for result in &results {
        let score = result["known_score"].as_f64().unwrap() as f32;
        let unknown = result["unknown"].as_bool().unwrap();
        assert_eq!(unknown, score < set.threshold, "{result}");
        assert!(!unknown || result["label"].is_null(), "{result}");
    }
    let said_unknown = results.iter().filter(|r| r["unknown"] == true).count();
    assert_eq!(
        said_unknown,
        (unknown["rejected"].as_f64().unwrap() * 12.0).round() as usize,
        "run and eval reject the same shoes"
    );
}
