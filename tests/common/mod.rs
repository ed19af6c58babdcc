//! Helpers shared by the integration tests: paths into the repository, one loaded classifier
//! per test binary, the `pinsight` binary behind the cross-testing runner, photo folders made
//! from the clothing fixture, and a feature cache the training tests share.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pinsight::model::Classifier;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn int8_backbone() -> PathBuf {
    repo().join("models/efficientnet-lite0/backbone-int8.onnx")
}

pub fn imagenet_head() -> PathBuf {
    repo().join("models/imagenet")
}

/// The int8 backbone with the ImageNet head, loaded once per test binary: loading is the slow
/// part under QEMU.
pub fn imagenet_classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| Classifier::load(&int8_backbone(), &imagenet_head()).unwrap())
}

/// A command that runs the `pinsight` binary, through the QEMU runner when the tests were
/// cross-compiled (`CARGO_TARGET_<TRIPLE>_RUNNER`, as scripts/test sets it; the same variable
/// cargo itself reads), from the repository's root.
pub fn pinsight() -> Command {
    let binary = env!("CARGO_BIN_EXE_pinsight");
    let target = env!("PINSIGHT_BUILD_TARGET");
    let variable = format!(
        "CARGO_TARGET_{}_RUNNER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    let mut command = match std::env::var(&variable) {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(binary);
            command
        }
        _ => Command::new(binary),
    };
    command
        .current_dir(repo())
        .env_remove("PINSIGHT_BACKBONE")
        .env_remove("PINSIGHT_HEAD");
    command
}

/// Whether the tests run under an emulator (qemu-user, when cross-compiled): the runner
/// [`pinsight`] puts in front of the binary.
pub fn emulated() -> bool {
    let variable = format!(
        "CARGO_TARGET_{}_RUNNER",
        env!("PINSIGHT_BUILD_TARGET")
            .to_uppercase()
            .replace(['-', '.'], "_")
    );
    std::env::var(variable).is_ok_and(|runner| !runner.trim().is_empty())
}

/// A flat photo folder in a temporary directory: `(class folder name, photos)`, the photos
/// copied, in name order, from the clothing fixture's class of the same index (hat, pants,
/// shoes, then hat again).
pub fn photo_folder(layout: &[(&str, usize)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, &(class, photos)) in layout.iter().enumerate() {
        let source = ["hat", "pants", "shoes"][i % 3];
        let mut sources: Vec<PathBuf> =
            std::fs::read_dir(repo().join("tests/fixtures/clothing/train").join(source))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
        sources.sort();
        let class_dir = dir.path().join(class);
        std::fs::create_dir_all(&class_dir).unwrap();
        for n in 0..photos {
            std::fs::copy(
                &sources[n % sources.len()],
                class_dir.join(format!("{n}.jpg")),
            )
            .unwrap();
        }
    }
    dir
}

/// Every file below `dir` (links not followed) with its bytes, to prove a folder was left as
/// it was.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// A feature cache shared by every test of this build target that does not count cache hits
/// or damage entries: the first test that trains on a fixture photo computes its features and
/// the others read them. Under QEMU the backbone is most of a training test's time. Entries are
/// written atomically and checked when read, so tests that run at once may share it.
pub fn shared_feature_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("feature-cache-{}", env!("PINSIGHT_BUILD_TARGET")))
}
