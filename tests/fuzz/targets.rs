//! The fuzz targets: what pinsight does with bytes a user (or a camera) hands it, one function
//! of the bytes each. `tests/fuzz.rs` runs them over the corpus in `tests/fuzz/corpus/<target>/`
//! and over mutations of it; any other driver (a coverage-guided fuzzer) can call them too.
//!
//! A target returns Ok or the error pinsight gave, in a few words: the driver keeps an input
//! whose outcome it has not seen yet, to mutate it further. A panic, a hang or an allocation
//! beyond the driver's limits is a bug; so is a result that breaks what the module promises
//! (each target asserts those promises on what it got).
//!
//! Each thread keeps its own converter, preprocessor and temporary folders from one input to the
//! next, as the run loop keeps its buffers from one frame to the next.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arbitrary::Unstructured;
use image::RgbImage;
use pinsight::checksum::{SUMS_FILE, sha256_hex};
use pinsight::decode::{MAX_DECODED_BYTES, MAX_SIDE};
use pinsight::frame::{Converter, Frame, PixelFormat};
use pinsight::model::{Backbone, Classifier, CpuFeatures, Engine, head};
use pinsight::preprocess::{INPUT_LEN, Preprocessor};

/// A target: an input in, what pinsight made of it (Ok, or its error) out.
pub type Target = fn(&[u8]) -> String;

/// The targets by name, as `tests/fuzz/corpus/<name>/` and `scripts/fuzz` name them.
pub const TARGETS: [(&str, Target); 5] = [
    ("frame", frame),
    ("decode", decode),
    ("int8_graph", int8_graph),
    ("head", head),
    ("config", config),
];

/// The pixel formats in the order the first byte of a `frame` input picks them.
pub const FORMATS: [PixelFormat; 7] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Grey,
    PixelFormat::Mjpeg,
    PixelFormat::Encoded,
];

/// A `frame` input: the header [`frame`] reads, then the frame's bytes.
pub fn frame_input(
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    data: &[u8],
) -> Vec<u8> {
    let index = FORMATS.iter().position(|&f| f == format).unwrap() as u8;
    let mut input = vec![index];
    for value in [width, height, stride] {
        input.extend(value.to_le_bytes());
    }
    input.extend(data);
    input
}

/// One camera frame through [`Converter::to_rgb`] (every pixel format, any size and stride a
/// driver could report, MJPEG with or without Huffman tables) and, when it converts, through
/// preprocessing to the model's input, as the run loop takes it. The input is a format (one
/// byte), width, height and stride (`u32`s, little-endian, as V4L2 reports them), then the
/// frame's bytes ([`frame_input`] writes one).
pub fn frame(input: &[u8]) -> String {
    let mut u = Unstructured::new(input);
    let format = FORMATS[usize::from(u.arbitrary::<u8>().unwrap()) % FORMATS.len()];
    let width: u32 = u.arbitrary().unwrap();
    let height: u32 = u.arbitrary().unwrap();
    let stride: u32 = u.arbitrary().unwrap();
    let frame = Frame {
        sequence: 0,
        captured_at: Instant::now(),
        format,
        width,
        height,
        stride: stride as usize,
        data: u.take_rest().to_vec(),
        origin: "fuzz".into(),
    };
    thread_local! {
        static CONVERTER: RefCell<Converter> = RefCell::default();
    }
    CONVERTER.with_borrow_mut(|converter| match converter.to_rgb(&frame) {
        Err(e) => e.to_string(),
        Ok(rgb) => {
            if matches!(format, PixelFormat::Mjpeg | PixelFormat::Encoded) {
                check_decoded(rgb);
            } else {
                assert_eq!(
                    rgb.dimensions(),
                    (width, height),
                    "{} frame",
                    format.fourcc()
                );
            }
            to_tensor(rgb);
            format!("ok {}", format.fourcc())
        }
    })
}

/// An image file's bytes through [`pinsight::decode::decode`], then preprocessing, as
/// `classify`, `run` over files, `train` and `eval` take them; a decoded image must be within
/// the decoding limits.
pub fn decode(input: &[u8]) -> String {
    match pinsight::decode::decode(input) {
        Err(e) => e,
        Ok(rgb) => {
            check_decoded(&rgb);
            to_tensor(&rgb);
            "ok".into()
        }
    }
}

/// An ONNX file's bytes as a backbone on pinsight's int8 engine: parsed as the engine parses
/// a backbone, read into its program, compiled, and, when it loads, run on one image.
pub fn int8_graph(input: &[u8]) -> String {
    let kernels = CpuFeatures::detected().kernels();
    match Backbone::from_onnx(Path::new("fuzz.onnx"), input, Engine::Int8, kernels) {
        Err(e) => e.to_string(),
        Ok(backbone) => {
            let features = backbone.features(&vec![0.25; INPUT_LEN]).unwrap();
            assert_eq!(features.len(), backbone.feature_len());
            assert!(features.iter().all(|f| f.is_finite()), "{features:?}");
            "ok".into()
        }
    }
}

/// The head folder `head` starts from: its files by name, as `tests/fuzz/corpus/head/` seeds
/// replace them. The backbone is the tiny int8 model `int8_graph`'s corpus starts from.
pub const HEAD_FILES: [&str; 4] = [
    head::ONNX_FILE,
    head::LABELS_FILE,
    head::META_FILE,
    SUMS_FILE,
];

/// The backbone every `head` input is put on, and the head folder each input changes one file
/// of: in `tests/fuzz/corpus/`, loaded once.
struct HeadBase {
    backbone: Arc<Backbone>,
    files: Vec<Vec<u8>>,
}

fn head_base() -> &'static HeadBase {
    static BASE: OnceLock<HeadBase> = OnceLock::new();
    BASE.get_or_init(|| {
        let corpus = corpus_dir();
        let dir = tempfile::tempdir().unwrap();
        let model = std::fs::read(corpus.join("int8_graph/tiny-backbone.onnx")).unwrap();
        let path = dir.path().join("backbone.onnx");
        std::fs::write(&path, &model).unwrap();
        let sums = format!("{}  backbone.onnx\n", sha256_hex(&model));
        std::fs::write(dir.path().join(SUMS_FILE), sums).unwrap();
        let backbone = Backbone::load(&path).unwrap();
        let files = HEAD_FILES[..3]
            .iter()
            .map(|name| std::fs::read(corpus.join("head/base").join(name)).unwrap())
            .collect();
        HeadBase {
            backbone: Arc::new(backbone),
            files,
        }
    })
}

/// A head folder with one file replaced, put on a backbone as `run` does
/// ([`Classifier::with_backbone`]: checksums, `head.json`, labels, the head's ONNX and its
/// shapes) and, when it loads, run on one image. The input's first byte picks the file
/// ([`HEAD_FILES`]); the rest is its content. The other files are those of
/// `tests/fuzz/corpus/head/base/`, and `SHA256SUMS`, unless it is the file replaced, lists the
/// files as they are, so that the checksums let the content through.
pub fn head(input: &[u8]) -> String {
    let base = head_base();
    let (which, content) = input.split_first().unwrap_or((&0, &[]));
    let which = usize::from(*which) % HEAD_FILES.len();
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|dir| {
        let mut files = base.files.clone();
        let mut sums = String::new();
        if which < files.len() {
            files[which] = content.to_vec();
        }
        for (name, bytes) in HEAD_FILES.iter().zip(&files) {
            replace(&dir.path().join(name), bytes);
            sums.push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
        }
        let sums = if which == files.len() {
            content
        } else {
            sums.as_bytes()
        };
        replace(&dir.path().join(SUMS_FILE), sums);
        match Classifier::with_backbone(base.backbone.clone(), dir.path()) {
            Err(e) => e.to_string(),
            Ok(classifier) => {
                let image = RgbImage::from_pixel(7, 5, image::Rgb([200, 100, 50]));
                let classification = classifier.classify(&image).unwrap();
                assert_eq!(
                    classification.probabilities.len(),
                    classifier.labels().len()
                );
                "ok".into()
            }
        }
    })
}

/// A config file through [`pinsight::config::load`], as `pinsight config` and `run --config`
/// read it, from a file, then resolved into a run as `run` resolves it. The input up to its first zero byte is the config; what
/// follows, if anything, is written beside it as `board.toml`, the board file a config names
/// with `board = "board.toml"`.
pub fn config(input: &[u8]) -> String {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|dir| {
        let (config, board) = match input.iter().position(|&b| b == 0) {
            Some(at) => (&input[..at], Some(&input[at + 1..])),
            None => (input, None),
        };
        let path = dir.path().join("deployment.toml");
        replace(&path, config);
        let board_path = dir.path().join("board.toml");
        match board {
            Some(board) => replace(&board_path, board),
            None => {
                let _ = std::fs::remove_file(&board_path);
            }
        }
        match pinsight::config::load(&path) {
            Err(e) => e.to_string(),
            Ok(file) => {
                if let Some(deployment) = &file.deployment {
                    for output in &deployment.outputs {
                        output.role.describe();
                    }
                    let _ = deployment.check_labels(&["dog".into(), "cat".into()]);
                }
                let run = pinsight::config::resolve_run(
                    Some(file),
                    Default::default(),
                    Default::default(),
                    None,
                    std::time::Duration::ZERO,
                );
                serde_json::to_string(&run).unwrap();
                "ok".into()
            }
        }
    })
}

/// The corpus: `tests/fuzz/corpus/`, a folder per target (`crate::REPO` is the repository,
/// as the crate that includes this file sees it).
pub fn corpus_dir() -> PathBuf {
    Path::new(crate::REPO).join("tests/fuzz/corpus")
}

/// Writes `bytes` to `path` as a new file. Not truncating the old one spares each execution
/// the flush that ext4 does when a truncated file is closed.
pub fn replace(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

/// What decoding promises of any image it returns: pixels, within its limits.
fn check_decoded(rgb: &RgbImage) {
    let (width, height) = rgb.dimensions();
    assert!(
        (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height),
        "decoded an image of {width} × {height} pixels"
    );
    assert!(
        rgb.len() as u64 <= MAX_DECODED_BYTES,
        "decoded {width} × {height} pixels: beyond the decoding limits"
    );
}

/// The model's input for `rgb`, with one preprocessor a thread kept from one image to the next.
fn to_tensor(rgb: &RgbImage) {
    thread_local! {
        static PREPROCESSOR: RefCell<(Preprocessor, Vec<f32>)> = RefCell::default();
    }
    PREPROCESSOR.with_borrow_mut(|(preprocessor, tensor)| {
        preprocessor.tensor(rgb, tensor);
        assert_eq!(tensor.len(), INPUT_LEN);
        assert!(tensor.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    });
}
