//! Damaged, wrong or mismatched model files are refused with a message naming the file and
//! what is wrong, never a panic.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use pinsight::checksum::sha256_hex;
use pinsight::model::Classifier;
use pinsight::{Error, checksum};

/// A copy of the shipped model folders in a temporary directory, to damage at will.
struct Models {
    _dir: tempfile::TempDir,
    backbone_dir: PathBuf,
    head_dir: PathBuf,
}

impl Models {
    fn copy() -> Models {
        let dir = tempfile::tempdir().unwrap();
        let backbone_dir = dir.path().join("efficientnet-lite0");
        let head_dir = dir.path().join("imagenet");
        copy_dir(common::int8_backbone().parent().unwrap(), &backbone_dir);
        copy_dir(&common::imagenet_head(), &head_dir);
        Models {
            _dir: dir,
            backbone_dir,
            head_dir,
        }
    }

    fn backbone(&self) -> PathBuf {
        self.backbone_dir.join("backbone-int8.onnx")
    }

    fn load(&self) -> Result<Classifier, Error> {
        Classifier::load(&self.backbone(), &self.head_dir)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // The float backbone is not needed here: skip copying 13 MB per test.
        if name != "backbone-float.onnx" {
            fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

/// Replaces `path` and its line in the SHA256SUMS beside it, as a user adding a file would.
fn replace_listed(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let sums = path.parent().unwrap().join(checksum::SUMS_FILE);
    let listing: String = fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .filter(|line| !line.ends_with(&format!(" {name}")))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&sums, format!("{listing}{}  {name}\n", sha256_hex(bytes))).unwrap();
}

fn message(error: Error) -> String {
    let message = error.to_string();
    println!("{message}");
    message
}

#[test]
fn missing_backbone_is_named() {
    let models = Models::copy();
    fs::remove_file(models.backbone()).unwrap();
    let error = models.load().err().unwrap();
    assert!(matches!(error, Error::Read { .. }), "{error:?}");
    let message = message(error);
    assert!(
        message.contains(&models.backbone().display().to_string()),
        "{message}"
    );
}

#[test]
fn truncated_backbone_fails_its_checksum() {
    let models = Models::copy();
    let bytes = fs::read(models.backbone()).unwrap();
    fs::write(models.backbone(), &bytes[..bytes.len() / 2]).unwrap();
    let error = models.load().err().unwrap();
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error:?}");
    let message = message(error);
    assert!(
        message.contains(&models.backbone().display().to_string()),
        "{message}"
    );
    assert!(message.contains("damaged or was changed"), "{message}");
}

#[test]
fn altered_head_fails_its_checksum() {
    let models = Models::copy();
    let head = models.head_dir.join("head.onnx");
    let mut bytes = fs::read(&head).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&head, &bytes).unwrap();
    let error = models.load().err().unwrap();
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error:?}");
    assert!(message(error).contains(&head.display().to_string()));
}

#[test]
fn unlisted_file_is_refused() {
    let models = Models::copy();
    let other = models.backbone_dir.join("other.onnx");
    fs::copy(models.backbone(), &other).unwrap();
    let error = Classifier::load(&other, &models.head_dir).err().unwrap();
    assert!(matches!(error, Error::NoChecksum { .. }), "{error:?}");
    assert!(message(error).contains("other.onnx has no checksum"));
}

#[test]
fn listed_file_that_is_not_onnx_is_refused() {
    let models = Models::copy();
    let text = b"this is a photo of a cat, not a neural network\n".repeat(100);
    replace_listed(&models.backbone(), &text);
    let error = models.load().err().unwrap();
    assert!(matches!(error, Error::NotOnnx { .. }), "{error:?}");
    let message = message(error);
    assert!(message.contains("is not an ONNX model"), "{message}");
}

#[test]
fn backbone_with_the_wrong_input_shape_is_refused() {
    let models = Models::copy();
    // The head is a valid ONNX model, but it takes [1, 1280] features, not an image.
    let head = fs::read(models.head_dir.join("head.onnx")).unwrap();
    replace_listed(&models.backbone(), &head);
    let error = models.load().err().unwrap();
    assert!(
        matches!(
            error,
            Error::WrongShape {
                what: "input shape",
                ..
            }
        ),
        "{error:?}"
    );
    let message = message(error);
    assert!(
        message.contains("[1, 1280]") && message.contains("[1, 3, 224, 224]"),
        "{message}"
    );
}

#[test]
fn head_for_another_backbone_is_refused() {
    let models = Models::copy();
    let meta_path = models.head_dir.join("head.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
    meta["backbone_sha256"] = serde_json::json!(["0".repeat(64)]);
    replace_listed(
        &meta_path,
        serde_json::to_string_pretty(&meta).unwrap().as_bytes(),
    );
    let error = models.load().err().unwrap();
    assert!(
        matches!(error, Error::HeadForOtherBackbone { .. }),
        "{error:?}"
    );
    assert!(message(error).contains("was made for another backbone"));
}

#[test]
fn labels_that_do_not_match_the_head_are_refused() {
    let models = Models::copy();
    let labels = models.head_dir.join("labels.txt");
    let text = fs::read_to_string(&labels).unwrap();
    let fewer: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    replace_listed(&labels, fewer.as_bytes());
    let error = models.load().err().unwrap();
    assert!(matches!(error, Error::BadHead { .. }), "{error:?}");
    assert!(message(error).contains("999 labels but head.json says 1000 classes"));
}

#[test]
fn cli_reports_a_damaged_model_without_panicking() {
    let models = Models::copy();
    let bytes = fs::read(models.backbone()).unwrap();
    fs::write(models.backbone(), &bytes[..1000]).unwrap();
    let output = common::pinsight()
        .args(["classify", "--backbone"])
        .arg(models.backbone())
        .arg("--head")
        .arg(&models.head_dir)
        .arg("samples/coffee.png")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert_eq!(output.status.code(), Some(3), "bad input: {stderr}");
    assert!(
        stderr.contains("backbone-int8.onnx is damaged or was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
