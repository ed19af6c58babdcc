//! The model: a frozen backbone that turns an image into pooled features, and a head that
//! turns features into class probabilities. Every use of tract in pinsight is in this module
//! (keep it so: tract's crates move between releases).
//!
//! - [`Backbone`]: reads and checks a backbone file (checksum, ONNX, a 1 × 3 × 224 × 224
//!   input, 1 × F features out) and runs it on the [`Engine`] asked for: pinsight's int8
//!   executor ([`int8`]) on its [`KernelSet`] (picked from the [`CpuFeatures`] probed once,
//!   [`cpu`]), or tract's optimised plan (`tract.rs`: parsing, shapes, plans).
//! - [`Classifier`]: a loaded backbone, shared as `Arc<Backbone>` so that several heads can
//!   sit on one backbone, plus a head's own tract plan (features [1, F] → logits [1, C]) and
//!   its labels. [`Classifier::classify`] is the one path from a decoded image to class
//!   probabilities, with the time its preprocessing and its inference took.
//! - [`head`]: the head folder (`head.onnx`, `labels.txt`, `head.json`, `SHA256SUMS`), read
//!   and written, including the ONNX writer for trained heads.
//!
//! Preprocessing ([`crate::preprocess`]) reuses its buffers from one image to the next: each
//! backbone keeps one set behind a mutex, so a backbone (and a classifier) can be shared
//! between threads and works on one image at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use image::RgbImage;

pub mod cpu;
mod fold;
pub mod head;
pub mod int8;
mod proto;
pub mod threads;
mod tract;

pub use cpu::{CpuFeatures, KernelSet};

use crate::checksum::read_verified;
use crate::preprocess::{INPUT_LEN, INPUT_SIDE, Preprocessor};
use crate::{Error, Result};
use head::HeadFiles;
use int8::Int8Backbone;
use tract::{Plan, expect_shape};

const INPUT_SHAPE: [usize; 4] = [1, 3, INPUT_SIDE as usize, INPUT_SIDE as usize];

/// Which engine runs the backbone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The default: where [`int8_by_default`] (x86_64 with AVX2, aarch64, armv7 with NEON),
    /// pinsight's int8 executor ([`int8`]) when the backbone is an int8 QDQ model it can read,
    /// tract otherwise. There the int8 executor is faster than tract and matches onnxruntime
    /// more closely (see models/README.md). Elsewhere tract.
    #[default]
    Auto,
    /// tract for every backbone: an int8 file runs dequantized, on float kernels.
    Tract,
    /// pinsight's int8 executor; a backbone it cannot read is refused with the reason.
    Int8,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Engine, String> {
        match name {
            "auto" => Ok(Engine::Auto),
            "tract" => Ok(Engine::Tract),
            "int8" => Ok(Engine::Int8),
            other => Err(format!(
                "unknown engine {other:?}: expected auto, tract or int8"
            )),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Tract => "tract",
            Engine::Int8 => "int8",
        })
    }
}

/// What runs the backbone: tract's optimised plan, or pinsight's int8 executor.
enum Executor {
    Tract(Plan),
    Int8(Box<Int8Backbone>),
}

impl Executor {
    fn engine(&self) -> Engine {
        match self {
            Executor::Tract(_) => Engine::Tract,
            Executor::Int8(_) => Engine::Int8,
        }
    }

    fn features(&self, input: &[f32]) -> Result<Vec<f32>> {
        assert_eq!(input.len(), INPUT_LEN, "input tensor length");
        match self {
            Executor::Tract(plan) => plan.run(input),
            Executor::Int8(backbone) => backbone
                .features(int8::Input::Tensor(input))
                .map_err(|e| Error::Inference(format!("{e:#}"))),
        }
    }
}

/// The preprocessing buffers a backbone reuses from one image to the next.
#[derive(Default)]
struct Buffers {
    preprocessor: Preprocessor,
    input: Vec<f32>,
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Whether [`Engine::Auto`] can run an int8 backbone on the int8 engine in this build: where the
/// engine has SIMD kernels of its own (x86_64, aarch64) or the compiler vectorises its portable
/// ones with NEON (armv7 built for a CPU with it, as `.cargo/config.toml` builds it: the cfg
/// `arm_neon` of build.rs). Which CPUs of those it does: [`int8_by_default`].
pub const INT8_BY_DEFAULT: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "arm", arm_neon)
));

/// Whether [`Engine::Auto`] runs an int8 backbone on the int8 engine with `kernels`: in a build
/// where [`INT8_BY_DEFAULT`], except on x86_64 with the portable kernels (a CPU without AVX2:
/// a Celeron J4125, anything before Haswell), which needed 1540 M instructions an inference
/// against tract's 1047 M on the same int8 file (qemu-x86_64 `-cpu Nehalem`,
/// models/README.md): there tract runs it.
pub fn int8_by_default(kernels: KernelSet) -> bool {
    INT8_BY_DEFAULT && !(cfg!(target_arch = "x86_64") && kernels == KernelSet::Portable)
}

/// The backbone alone: image in, pooled features out.
pub struct Backbone {
    path: PathBuf,
    sha256: String,
    feature_len: usize,
    executor: Executor,
    buffers: Mutex<Buffers>,
}

impl Backbone {
    /// Loads a backbone file on the default [`Engine`], refusing a damaged or unusable file
    /// with a message that names it.
    pub fn load(path: &Path) -> Result<Backbone> {
        Backbone::load_with(path, Engine::default())
    }

    /// Loads a backbone file on `engine`; the int8 engine runs the fastest kernels this CPU
    /// has, or those `PINSIGHT_KERNELS` names ([`KernelSet::chosen`]).
    pub fn load_with(path: &Path, engine: Engine) -> Result<Backbone> {
        Backbone::load_on(path, engine, KernelSet::chosen().map_err(Error::Usage)?)
    }

    /// Loads a backbone file on `engine`, the int8 engine on `kernels` (to compare kernel sets,
    /// e.g. [`KernelSet::Portable`] against the detected one).
    ///
    /// # Panics
    /// When the int8 engine would run the file and this CPU cannot execute `kernels`
    /// ([`KernelSet::runs_here`]).
    pub fn load_on(path: &Path, engine: Engine, kernels: KernelSet) -> Result<Backbone> {
        let (bytes, sha256) = read_verified(path)?;
        Backbone::read(path, &bytes, sha256, engine, kernels)
    }

    /// A backbone from ONNX bytes in memory, with every check of [`Backbone::load_on`] but
    /// the checksum's (which is the file's, not the bytes'); `path` names the bytes in
    /// messages. Its SHA-256 is that of `bytes`. `tests/fuzz.rs` feeds it mutated models.
    ///
    /// # Panics
    /// As [`Backbone::load_on`].
    pub fn from_onnx(
        path: &Path,
        bytes: &[u8],
        engine: Engine,
        kernels: KernelSet,
    ) -> Result<Backbone> {
        Backbone::read(
            path,
            bytes,
            crate::checksum::sha256_hex(bytes),
            engine,
            kernels,
        )
    }

    fn read(
        path: &Path,
        bytes: &[u8],
        sha256: String,
        engine: Engine,
        kernels: KernelSet,
    ) -> Result<Backbone> {
        let mut clock = Clock::start();
        let proto = tract::decode(path, bytes)?;
        clock.lap("decode");
        if engine == Engine::Int8 || (engine == Engine::Auto && int8_by_default(kernels)) {
            let graph = proto.graph.as_ref().expect("decode checked the graph");
            match Int8Backbone::new(graph, kernels) {
                Ok(backbone) => {
                    clock.lap("int8 executor");
                    log::debug!(
                        "loaded {} on the int8 engine ({kernels} kernels): {clock}",
                        path.display()
                    );
                    let shape = backbone.input_shape();
                    expect_shape(path, "input shape", Some(shape.to_vec()), &INPUT_SHAPE)?;
                    let feature_len = backbone.feature_len();
                    return Ok(Backbone::new(
                        path,
                        sha256,
                        feature_len,
                        Executor::Int8(Box::new(backbone)),
                    ));
                }
                Err(why) if engine == Engine::Int8 => {
                    return Err(Error::NotOnnx {
                        path: path.into(),
                        reason: format!(
                            "pinsight's int8 engine cannot run it ({why}); use the tract engine"
                        ),
                    });
                }
                Err(why) => log::debug!(
                    "{} runs on tract: the int8 engine cannot run it ({why})",
                    path.display()
                ),
            }
        }
        let model = tract::into_tract(path, proto, clock)?;
        expect_shape(
            path,
            "input shape",
            tract::input_shape(&model),
            &INPUT_SHAPE,
        )?;
        let feature_len = match tract::output_shape(&model).as_deref() {
            Some([1, features]) => *features,
            other => {
                return Err(Error::WrongShape {
                    path: path.into(),
                    what: "output shape",
                    found: tract::describe(other),
                    expected: "[1, features]".into(),
                });
            }
        };
        let mut clock = Clock::start();
        let plan = Plan::optimize(path, model)?;
        clock.lap("optimized");
        log::debug!("loaded {} on tract: {clock}", path.display());
        Ok(Backbone::new(
            path,
            sha256,
            feature_len,
            Executor::Tract(plan),
        ))
    }

    fn new(path: &Path, sha256: String, feature_len: usize, executor: Executor) -> Backbone {
        Backbone {
            path: path.into(),
            sha256,
            feature_len,
            executor,
            buffers: Mutex::default(),
        }
    }

    /// The file the backbone was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 of the backbone file, which heads trained on its features record.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The number of pooled features (F) an image gives.
    pub fn feature_len(&self) -> usize {
        self.feature_len
    }

    /// The engine the backbone runs on: [`Engine::Tract`] or [`Engine::Int8`].
    pub fn engine(&self) -> Engine {
        self.executor.engine()
    }

    /// The kernel set the int8 engine runs; `None` on tract, which picks its own kernels.
    pub fn kernels(&self) -> Option<KernelSet> {
        match &self.executor {
            Executor::Tract(_) => None,
            Executor::Int8(backbone) => Some(backbone.kernels()),
        }
    }

    /// The pooled features of a decoded image: preprocessed ([`crate::preprocess`]), then run
    /// through the backbone.
    pub fn features_of(&self, image: &RgbImage) -> Result<Vec<f32>> {
        Ok(self.extract(image)?.features)
    }

    /// [`Backbone::features_of`], with the time each stage took.
    pub fn extract(&self, image: &RgbImage) -> Result<Extraction> {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        let Buffers {
            preprocessor,
            input,
        } = &mut *buffers;
        let started = Instant::now();
        if let Executor::Int8(backbone) = &self.executor {
            // The crop straight to the engine's u8 input, no float tensor between.
            let crop = preprocessor.crop(image);
            let preprocess_ms = millis_since(started);
            let started = Instant::now();
            let features = backbone
                .features(int8::Input::Rgb(crop.as_raw()))
                .map_err(|e| Error::Inference(format!("{e:#}")))?;
            return Ok(Extraction {
                features,
                preprocess_ms,
                inference_ms: millis_since(started),
            });
        }
        preprocessor.tensor(image, input);
        let preprocess_ms = millis_since(started);
        let started = Instant::now();
        let features = self.executor.features(input)?;
        Ok(Extraction {
            features,
            preprocess_ms,
            inference_ms: millis_since(started),
        })
    }

    /// The pooled features of one input tensor of `INPUT_LEN` values, as
    /// [`Preprocessor::tensor`] makes it: the tensor-level step under
    /// [`Backbone::features_of`].
    pub fn features(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.executor.features(input)
    }
}

/// What a backbone made of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Extraction {
    /// The pooled features (F values).
    pub features: Vec<f32>,
    /// Milliseconds spent resizing, cropping and normalising the image into the input tensor.
    pub preprocess_ms: f64,
    /// Milliseconds spent in the backbone.
    pub inference_ms: f64,
}

/// What a classifier made of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// One probability per label (the softmax of the head's logits), in label order.
    pub probabilities: Vec<f32>,
    /// How much the image looks like one of the head's classes: its largest logit. Compared
    /// with the head's [`Classifier::unknown_threshold`].
    pub known_score: f32,
    /// Milliseconds spent resizing, cropping and normalising the image into the input tensor.
    pub preprocess_ms: f64,
    /// Milliseconds spent in the backbone and the head.
    pub inference_ms: f64,
}

/// A backbone with a head on it: image in, class probabilities out.
pub struct Classifier {
    backbone: Arc<Backbone>,
    /// The head's own plan: features [1, F] → logits [1, C].
    head: Plan,
    labels: Vec<String>,
    unknown: Option<head::UnknownThreshold>,
}

impl Classifier {
    /// Loads `backbone` (an ONNX file) and the head in `head_dir`, refusing damaged or
    /// mismatched files with a message that names them. The backbone runs on the default
    /// [`Engine`].
    pub fn load(backbone: &Path, head_dir: &Path) -> Result<Classifier> {
        Classifier::load_with(backbone, head_dir, Engine::default())
    }

    /// As [`Classifier::load`], with the backbone on `engine`.
    pub fn load_with(backbone: &Path, head_dir: &Path, engine: Engine) -> Result<Classifier> {
        let backbone = Backbone::load_with(backbone, engine)?;
        Classifier::with_backbone(Arc::new(backbone), head_dir)
    }

    /// Puts the head in `head_dir` on a loaded backbone, with the checks of
    /// [`Classifier::load`]: the head's checksums, that it was made for this backbone (by
    /// SHA-256), its input and output shapes, its labels.
    pub fn with_backbone(backbone: Arc<Backbone>, head_dir: &Path) -> Result<Classifier> {
        let head = HeadFiles::read(head_dir)?;
        head.check_backbone(backbone.path(), backbone.sha256())?;
        let head_path = head_dir.join(head::ONNX_FILE);
        let model = tract::parse(&head_path, &head.onnx)?;
        expect_shape(
            &head_path,
            "input shape",
            tract::input_shape(&model),
            &[1, backbone.feature_len()],
        )?;
        expect_shape(
            &head_path,
            "output shape",
            tract::output_shape(&model),
            &[1, head.labels.len()],
        )?;
        let mut clock = Clock::start();
        let plan = Plan::optimize(&head_path, model)?;
        clock.lap("optimized");
        log::debug!(
            "head {} on {} ({} engine): {clock}",
            head_dir.display(),
            backbone.path().display(),
            backbone.engine()
        );
        Ok(Classifier {
            backbone,
            head: plan,
            labels: head.labels,
            unknown: head.meta.unknown,
        })
    }

    /// The backbone the head runs on, to put another head on it.
    pub fn backbone(&self) -> &Arc<Backbone> {
        &self.backbone
    }

    /// The class names, in the order of the probabilities.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The known score below which a result is unknown, when the head was calibrated for it.
    pub fn unknown_threshold(&self) -> Option<f32> {
        self.unknown.map(|u| u.threshold)
    }

    pub fn backbone_sha256(&self) -> &str {
        self.backbone.sha256()
    }

    /// The engine the backbone runs on: [`Engine::Tract`] or [`Engine::Int8`].
    pub fn engine(&self) -> Engine {
        self.backbone.engine()
    }

    /// The kernel set the int8 engine runs; `None` on tract.
    pub fn kernels(&self) -> Option<KernelSet> {
        self.backbone.kernels()
    }

    /// Class probabilities of a decoded image, with what preprocessing and inference cost:
    /// the one path from an image to probabilities.
    pub fn classify(&self, image: &RgbImage) -> Result<Classification> {
        let Extraction {
            features,
            preprocess_ms,
            inference_ms,
        } = self.backbone.extract(image)?;
        let started = Instant::now();
        let mut probabilities = self.head.run(&features)?;
        let known_score = known_score(&probabilities);
        softmax_in_place(&mut probabilities);
        Ok(Classification {
            probabilities,
            known_score,
            preprocess_ms,
            inference_ms: inference_ms + millis_since(started),
        })
    }

    /// The head's raw outputs for pooled features, as [`Backbone::features_of`] makes them.
    pub fn head_logits(&self, features: &[f32]) -> Result<Vec<f32>> {
        self.head.run(features)
    }
}

/// Where load time goes, for `RUST_LOG=pinsight=debug`.
struct Clock {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, what: &'static str) {
        let now = Instant::now();
        self.laps
            .push((what, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (ix, (what, ms)) in self.laps.iter().enumerate() {
            let separator = if ix == 0 { "" } else { ", " };
            write!(f, "{separator}{what} {ms:.1} ms")?;
        }
        Ok(())
    }
}

/// How much an image looks like one of a head's classes, from the head's logits: the largest
/// of them (see `train::unknown` for why this score).
pub fn known_score(logits: &[f32]) -> f32 {
    logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Turns logits into probabilities where they are.
fn softmax_in_place(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for value in values.iter_mut() {
        *value = (*value - max).exp();
    }
    let sum: f32 = values.iter().sum();
    for value in values.iter_mut() {
        *value /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::softmax_in_place;

    fn softmax(logits: &[f32]) -> Vec<f32> {
        let mut probabilities = logits.to_vec();
        softmax_in_place(&mut probabilities);
        probabilities
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0, 9.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[3] > 0.99 && p[1] > p[2] && p[2] > p[0]);
        assert_eq!(softmax(&[1000.0, 1000.0]), [0.5, 0.5]);
    }
}
