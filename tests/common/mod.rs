//! Helpers shared by the integration tests: paths into the repository, one loaded classifier
//! per test binary, and the `pinsight` binary behind the cross-testing runner.

#![allow(dead_code)]

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
