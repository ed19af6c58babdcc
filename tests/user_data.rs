//! Nothing a user points `pinsight train` or `pinsight eval` at loses their files: `--out` is
//! refused before any work unless it is new, empty or a head pinsight wrote; a run that fails
//! leaves the previous head loadable and unchanged; the files pinsight writes are whole and
//! readable by others as files the user writes are; a damaged feature-cache entry is recomputed.
//! Each test runs the `pinsight` binary as a user would, on photos from tests/fixtures/clothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The feature-cache entries below `cache` (none when it does not exist).
fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    if !cache.exists() {
        return Vec::new();
    }
    common::snapshot(cache).into_keys().collect()
}

fn train(data: &Path, out: &Path, cache: &Path) -> Output {
    common::pinsight()
        .arg("train")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(["--epochs", "20"])
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `train` and expects it refused: a non-zero exit, an error naming `out`, no feature
/// computed (the refusal came before the backbone). Returns stderr.
fn expect_refused(data: &Path, out: &Path) -> String {
    let cache = tempfile::tempdir().unwrap();
    let output = train(data, out, &cache.path().join("features"));
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&*out.to_string_lossy()),
        "the error names {}: {stderr}",
        out.display()
    );
    assert!(
        cache_entries(&cache.path().join("features")).is_empty(),
        "features were computed before the refusal"
    );
    stderr
}

#[test]
fn a_folder_of_user_files_is_refused_as_out_and_left_as_it_was() {
    let data = common::photo_folder(&[("hat", 4), ("pants", 4)]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("thesis");
    std::fs::create_dir_all(out.join("sub")).unwrap();
    std::fs::write(out.join("thesis.txt"), "chapter one\n").unwrap();
    std::fs::write(out.join("sub/data.csv"), "a,b\n1,2\n").unwrap();
    let before = common::snapshot(&out);

    let stderr = expect_refused(data.path(), &out);
    assert!(stderr.contains("thesis.txt"), "{stderr}");
    assert!(
        common::snapshot(&out) == before,
        "the user's files were changed"
    );

    // A head folder with one file of the user's added is not pinsight's to replace either.
    let head = work.path().join("head");
    let cache = work.path().join("cache");
    let output = train(data.path(), &head, &cache);
    assert!(output.status.success(), "{}", text(&output));
    std::fs::write(head.join("notes.txt"), "my notes").unwrap();
    let before = common::snapshot(&head);
    let stderr = expect_refused(data.path(), &head);
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert!(
        common::snapshot(&head) == before,
        "the head folder was changed"
    );
}

#[test]
fn the_photos_folder_a_folder_in_it_or_around_it_is_refused_as_out() {
    let data = common::photo_folder(&[("hat", 4), ("pants", 4)]);
    let before = common::snapshot(data.path());
    for out in [
        data.path().to_path_buf(),
        data.path().join("hat"),
        data.path().join("new-head"),
        data.path().parent().unwrap().to_path_buf(),
    ] {
        let stderr = expect_refused(data.path(), &out);
        assert!(stderr.contains("photos folder"), "{stderr}");
        assert!(
            common::snapshot(data.path()) == before,
            "the photos were changed"
        );
    }
    assert!(!data.path().join("new-head").exists());
}

#[test]
fn a_file_as_out_is_refused_before_training() {
    let data = common::photo_folder(&[("hat", 4), ("pants", 4)]);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("head");
    std::fs::write(&file, "not a folder").unwrap();
    let stderr = expect_refused(data.path(), &file);
    assert!(stderr.contains("not a folder"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
}

#[test]
fn a_bad_class_name_is_refused_and_the_previous_head_still_loads() {
    let work = tempfile::tempdir().unwrap();
    let (head, cache) = (work.path().join("head"), common::shared_feature_cache());
    let good = common::photo_folder(&[("hat", 4), ("pants", 4)]);
    let output = train(good.path(), &head, &cache);
    assert!(output.status.success(), "{}", text(&output));
    let written = common::snapshot(&head);
    let photo = good.path().join("hat/0.jpg");

    for bad_name in ["pa\nnts", "   ", "ha\tt"] {
        let bad = common::photo_folder(&[("hat", 4), (bad_name, 4)]);
        let output = train(bad.path(), &head, &cache);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}", text(&output));
        assert!(
            stderr.contains(&*bad.path().to_string_lossy())
                && stderr.contains(&format!("{bad_name:?}")),
            "the error names the folder and the class: {stderr}"
        );
        assert!(
            common::snapshot(&head) == written,
            "the previous head was changed"
        );
        let classify = common::pinsight()
            .arg("classify")
            .arg("--head")
            .arg(&head)
            .arg(&photo)
            .output()
            .unwrap();
        assert!(classify.status.success(), "{}", text(&classify));
    }

    // Training again into the head folder pinsight wrote replaces it, and nothing else is left.
    let other = common::photo_folder(&[("cap", 4), ("trousers", 4)]);
    let output = train(other.path(), &head, &cache);
    assert!(output.status.success(), "{}", text(&output));
    let labels = std::fs::read_to_string(head.join("labels.txt")).unwrap();
    assert_eq!(labels, "cap\ntrousers\n");
    let mut names: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["head"], "leftovers beside the head");
    let classify = common::pinsight()
        .arg("classify")
        .arg("--head")
        .arg(&head)
        .arg(&photo)
        .output()
        .unwrap();
    assert!(classify.status.success(), "{}", text(&classify));
}

/// The process's umask, as /proc reports it (the children inherit it).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[test]
fn eval_takes_a_class_of_one_photo_and_writes_reports_others_can_read() {
    let work = tempfile::tempdir().unwrap();
    let (head, cache) = (work.path().join("head"), common::shared_feature_cache());
    let output = train(
        common::photo_folder(&[("hat", 4), ("pants", 4)]).path(),
        &head,
        &cache,
    );
    assert!(output.status.success(), "{}", text(&output));

    let photos = common::photo_folder(&[("hat", 1), ("pants", 5)]);
    for (split, evaluated) in [("all", 6), ("test", 1)] {
        let (json, png) = (
            work.path().join(format!("{split}.json")),
            work.path().join(format!("{split}.png")),
        );
        let output = common::pinsight()
            .arg("eval")
            .arg(photos.path())
            .arg("--head")
            .arg(&head)
            .args(["--split", split])
            .arg("--json")
            .arg(&json)
            .arg("--png")
            .arg(&png)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(report["photos"], evaluated, "--split {split}");
        for file in [&json, &png] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                0o666 & !umask(),
                "{} has mode {mode:o}",
                file.display()
            );
        }
    }

    // Its own reports it replaces; anything else it refuses before any work, and leaves as it
    // was.
    let eval = |json: &Path, png: &Path| {
        common::pinsight()
            .arg("eval")
            .arg(photos.path())
            .arg("--head")
            .arg(&head)
            .args(["--split", "test", "--json"])
            .arg(json)
            .arg("--png")
            .arg(png)
            .output()
            .unwrap()
    };
    let (json, png) = (work.path().join("test.json"), work.path().join("test.png"));
    let output = eval(&json, &png);
    assert!(output.status.success(), "{}", text(&output));
    let notes = work.path().join("notes.json");
    std::fs::write(&notes, "{\"mine\": true}\n").unwrap();
    let picture = work.path().join("holiday.png");
    std::fs::copy(common::repo().join("samples/coffee.png"), &picture).unwrap();
    let before = common::snapshot(work.path());
    for (json, png, named) in [
        (&notes, &png, &notes),
        (&json, &picture, &picture),
        (&json, &json, &json),
        (&json, &work.path().join("head"), &work.path().join("head")),
    ] {
        let output = eval(json, png);
        assert_eq!(output.status.code(), Some(3), "{}", text(&output));
        let message = text(&output);
        assert!(
            message.contains(&format!("will not write a report to {}", named.display())),
            "{message}"
        );
        assert!(
            !message.contains("evaluating"),
            "refused after work: {message}"
        );
    }
    assert!(
        common::snapshot(work.path()) == before,
        "a refused eval changed files"
    );
}

/// The "(N from the cache, M computed)" counts of `pinsight train`'s output.
fn cache_counts(output: &Output) -> (u64, u64) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("features:"))
        .unwrap_or_else(|| panic!("no features line: {stdout}"));
    let inside = line.split_once('(').unwrap().1;
    let (hits, rest) = inside.split_once(" from the cache, ").unwrap();
    let misses = rest.split_once(" computed").unwrap().0;
    (hits.parse().unwrap(), misses.parse().unwrap())
}

#[test]
fn a_damaged_cache_entry_is_recomputed_not_trusted() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let data = common::photo_folder(&[("hat", 4), ("pants", 4)]);
    let output = train(data.path(), &work.path().join("first"), &cache);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(cache_counts(&output), (0, 8));

    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 8, "{entries:?}");
    let intact = std::fs::read(&entries[0]).unwrap();
    // A torn entry (half of it) and one with a flipped bit in its features.
    std::fs::write(&entries[0], &intact[..intact.len() / 2]).unwrap();
    let mut flipped = std::fs::read(&entries[1]).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    std::fs::write(&entries[1], &flipped).unwrap();

    let output = train(data.path(), &work.path().join("second"), &cache);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(cache_counts(&output), (6, 2), "{}", text(&output));
    assert_eq!(
        std::fs::read(&entries[0]).unwrap(),
        intact,
        "the torn entry was written again, whole"
    );
}
