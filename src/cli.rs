//! The command line: clap's structs, and nothing else of clap anywhere in pinsight.
//!
//! Each subcommand's arguments are parsed here and resolved once into the typed options that
//! the library takes ([`RunConfig`], [`ClassifyConfig`], [`TrainOptions`], [`EvalOptions`],
//! [`BenchOptions`]); closed sets of values are [`ValueEnum`]s mapped onto the library's own
//! enums, so the library never sees a string that could be misspelt.
//!
//! Every number has a range, given in its `--help` line and checked here: a value outside it is
//! a usage error naming the option and the range (`--fps 1e-20` would otherwise overflow a
//! `Duration`; `--smooth 65535` would keep 65535 frames of probabilities).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use pinsight::bench::BenchOptions;
use pinsight::capture::CaptureOptions;
use pinsight::config::{ModelSettings, RunSettings};
use pinsight::frame::PixelFormat;
use pinsight::model::Engine;
use pinsight::run::{ClassifyConfig, ModelFiles, RunConfig, RunMode};
use pinsight::train::{
    ClassWeights, EvalOptions, Grid, HeadKind, Optimizer, Split, TrainConfig, TrainOptions,
};

/// The command line. `-V` gives the version and the commit; `--version` adds the target, the
/// CPU features and the int8 kernels chosen for them (and whether `--engine auto` uses them),
/// and the bundled backbone's SHA-256.
pub fn parse() -> Cli {
    let version = format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("PINSIGHT_GIT_REVISION")
    );
    let cpu = pinsight::model::CpuFeatures::detected();
    let long_version = format!(
        "{version}\n\
         target: {}\n\
         CPU: {cpu}\n\
         int8 kernels: {}\n\
         bundled backbone: efficientnet-lite0 int8, sha256 {}",
        env!("PINSIGHT_BUILD_TARGET"),
        match pinsight::model::KernelSet::chosen() {
            Ok(set) if !pinsight::model::int8_by_default(set) => {
                format!("{set} (--engine auto runs int8 backbones on tract)")
            }
            Ok(set) => set.to_string(),
            Err(why) => why,
        },
        env!("PINSIGHT_BUNDLED_BACKBONE_SHA256"),
    );
    // clap takes &'static strs; the process lives that long anyway.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let long_version: &'static str = Box::leak(long_version.into_boxed_str());
    let matches = Cli::command()
        .version(version)
        .long_version(long_version)
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Writes the completion script for `shell` of the whole command line.
pub fn completions(shell: clap_complete::Shell, out: &mut impl std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "pinsight", out);
}

/// Writes the manual page pinsight(1), or a subcommand's, pinsight-SUBCOMMAND(1), dated with
/// the commit that was built.
pub fn man_page(subcommand: Option<&str>, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let root = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let command = match subcommand {
        None => root,
        Some(name) => {
            let Some(found) = root.find_subcommand(name) else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                anyhow::bail!(pinsight::Error::Usage(format!(
                    "there is no subcommand {name:?}: the pages are pinsight(1) and those of {}",
                    names.join(", ")
                )));
            };
            // clap takes a &'static str; the process ends after printing the page.
            let page: &'static str = Box::leak(format!("pinsight-{name}").into_boxed_str());
            found.clone().name(page).version(env!("CARGO_PKG_VERSION"))
        }
    };
    clap_mangen::Man::new(command)
        .date(env!("PINSIGHT_COMMIT_DATE"))
        .source(format!("pinsight {}", env!("CARGO_PKG_VERSION")))
        .manual("pinsight")
        .render(out)?;
    Ok(())
}

#[derive(Parser)]
#[command(
    name = "pinsight",
    version,
    about,
    long_about = None,
    after_help = pinsight::error::EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Classify image files and print the most likely labels for each.
    Classify(ClassifyArgs),
    /// The main loop: classify frames from a camera (or image files) as they come, one JSON
    /// line a result on stdout.
    Run(RunArgs),
    /// Save frames from a camera (or image files) as photos of one class, into PHOTOS/CLASS/:
    /// the folder `train` reads. Never replaces a file; prints each photo's path.
    Capture(CaptureArgs),
    /// Train a head on a folder of labelled photos (a sub-folder per class) and write it as a
    /// head folder for `--head`.
    Train(TrainArgs),
    /// Evaluate a head on a folder of labelled photos: accuracy, per-class precision, recall and
    /// F1, and the confusion matrix (text, JSON and a PNG picture).
    Eval(EvalArgs),
    /// Measure the per-frame path on this machine: frame conversion and resize for each camera
    /// format and size, then each backbone in a process of its own: model-ready time, inference
    /// median and 99th percentile, peak memory.
    Bench(BenchArgs),
    /// Check a config file (board/README.md) without loading the model, and print the run it
    /// describes, resolved: model files, run settings, every pin as a line offset.
    Config(ConfigArgs),
    /// Print a shell completion script: `pinsight completions bash >
    /// /etc/bash_completion.d/pinsight` (the Debian package installs them).
    Completions(CompletionsArgs),
    /// Print a manual page (roff): `pinsight man | man -l -` (the Debian package installs
    /// them).
    Man(ManArgs),
}

#[derive(Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// A subcommand's page (pinsight-run(1) for `run`) instead of pinsight(1).
    pub subcommand: Option<String>,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The config file (board/README.md).
    pub config: PathBuf,
    /// Check against this head folder instead of the config's (or the bundled one).
    #[arg(long, env = "PINSIGHT_HEAD")]
    head: Option<PathBuf>,
    /// Check against this backbone instead of the config's (or the bundled one).
    #[arg(long, env = "PINSIGHT_BACKBONE")]
    backbone: Option<PathBuf>,
}

impl ConfigArgs {
    /// The run the config file describes, with `--head` and `--backbone` over its own.
    pub fn resolve(self) -> pinsight::Result<RunConfig> {
        let file = pinsight::config::load(&self.config)?;
        let model = ModelSettings {
            backbone: self.backbone,
            head: self.head,
            engine: None,
            threads: None,
        };
        Ok(pinsight::config::resolve_run(
            Some(file),
            model,
            RunSettings::default(),
            None,
            Duration::ZERO,
        ))
    }
}

/// Which engine runs the backbone.
#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// pinsight's int8 engine where it has SIMD kernels (x86_64 with AVX2, aarch64, armv7 with
    /// NEON) and can read the backbone, else tract.
    Auto,
    /// pinsight's int8 engine; a backbone it cannot read is refused with the reason.
    Int8,
    /// tract for every backbone (an int8 file runs dequantized, on float kernels).
    Tract,
}

impl From<EngineArg> for Engine {
    fn from(engine: EngineArg) -> Engine {
        match engine {
            EngineArg::Auto => Engine::Auto,
            EngineArg::Int8 => Engine::Int8,
            EngineArg::Tract => Engine::Tract,
        }
    }
}

#[derive(Args)]
struct BackboneArgs {
    /// The backbone ONNX file; its folder holds the SHA256SUMS that it is checked against
    /// [default: the bundled EfficientNet-Lite0 int8 file, beside the binary].
    #[arg(long, env = "PINSIGHT_BACKBONE")]
    backbone: Option<PathBuf>,
    /// What runs the backbone [default: auto].
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    #[command(flatten)]
    threads: ThreadsArg,
}

#[derive(Args)]
struct ThreadsArg {
    /// Threads the int8 engine splits each layer over, 1 to 256; the results are the same for
    /// any count (tract's engine runs on one) [default: the cores this process may use].
    #[arg(long, env = "PINSIGHT_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

impl ThreadsArg {
    /// The count asked for, else the cores this process may use.
    fn count(&self) -> usize {
        self.threads
            .map_or_else(pinsight::model::threads::available, usize::from)
    }
}

#[derive(Args)]
struct ModelArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// The head folder: head.onnx, labels.txt, head.json and SHA256SUMS [default: the bundled
    /// ImageNet head, beside the binary].
    #[arg(long, env = "PINSIGHT_HEAD")]
    head: Option<PathBuf>,
}

impl ModelArgs {
    fn settings(self) -> ModelSettings {
        ModelSettings {
            backbone: self.backbone.backbone,
            head: self.head,
            engine: self.backbone.engine.map(Engine::from),
            threads: self.backbone.threads.threads,
        }
    }

    /// The model files, with the bundled ones for what the command line leaves out.
    fn resolve(self) -> ModelFiles {
        pinsight::config::resolve_model(self.settings(), ModelSettings::default())
    }
}

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How many labels to print for each image (1 to 1000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    top: u16,
    /// Print one JSON object a line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Image files (JPEG, PNG, WebP, BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

impl ClassifyArgs {
    pub fn resolve(self) -> ClassifyConfig {
        ClassifyConfig {
            model: self.model.resolve(),
            images: self.images,
            top: self.top.into(),
        }
    }
}

/// What asks for a result.
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Classify frame after frame.
    Continuous,
    /// Classify a burst of frames after each press of the config's trigger line.
    Triggered,
}

/// `pinsight run`. Each option overrides the config file's key of the same name (`[run]`,
/// `[model]`); what neither sets takes the default shown.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The config file (board/README.md): model, run settings, board, trigger and output pins.
    #[arg(long, env = "PINSIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// A V4L2 camera (/dev/videoN), a folder of images, a glob pattern or an image file
    /// [default: the board's camera, else /dev/video0].
    #[arg(long)]
    source: Option<String>,
    /// What asks for a result [default: continuous].
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Stop after this many results, 1 or more (default: run until the source ends or a
    /// signal).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    frames: Option<u64>,
    /// Classify at most this many frames a second (0.001, one every 16 minutes 40 seconds, to
    /// 1000) [default: as fast as frames come].
    #[arg(long, value_parser = fps)]
    fps: Option<f64>,
    /// The smoothed probability the best class needs to be reported as the result's label (0
    /// to 1) [default: 0.5].
    #[arg(long, value_parser = probability)]
    threshold: Option<f32>,
    /// Average the probabilities of this many frames, 1 to 100 [default: 3 for a camera, 1 for
    /// files].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    smooth: Option<u16>,
    /// How many labels each result lists (1 to 1000) [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    top: Option<u16>,
    /// Camera: the frame size to ask for, each side 1 to 16384 pixels (the driver picks the
    /// nearest it has) [default: 640x480].
    #[arg(long, value_parser = pinsight::config::parse_size)]
    size: Option<(u32, u32)>,
    /// Camera: the pixel format to insist on (YUYV, NV12, RGB3, BGR3, GREY, MJPG) [default: the
    /// cheapest to convert that the camera offers].
    #[arg(long, value_parser = pinsight::config::parse_format)]
    format: Option<PixelFormat>,
    /// After the loop ends, keep the output lines at their safe levels this many milliseconds
    /// before exiting. Once pinsight exits the kernel releases the lines, and what a released
    /// line does is up to the GPIO driver (gpio-sim returns it to its pull): a test rig reads
    /// the safe levels in this time. 0 to 600000 (ten minutes).
    #[arg(long, value_name = "MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(..=600_000))]
    hold_safe_ms: u64,
}

impl RunArgs {
    /// The run asked for: these options over the config file's, over the defaults.
    pub fn resolve(self) -> pinsight::Result<RunConfig> {
        let file = load_config(self.config.as_deref())?;
        let run = RunSettings {
            source: self.source,
            mode: self.mode.map(|mode| match mode {
                ModeArg::Continuous => RunMode::Continuous,
                ModeArg::Triggered => RunMode::Triggered,
            }),
            size: self.size,
            format: self.format,
            fps: self.fps,
            threshold: self.threshold,
            smooth: self.smooth,
            top: self.top,
        };
        Ok(pinsight::config::resolve_run(
            file,
            self.model.settings(),
            run,
            self.frames,
            Duration::from_millis(self.hold_safe_ms),
        ))
    }
}

#[derive(Args)]
pub struct CaptureArgs {
    /// The photos folder: the photos go into PHOTOS/CLASS/, made if missing.
    photos: PathBuf,
    /// The class the photos show: its folder's name, and the label a head trained on them
    /// gives.
    #[arg(long)]
    class: String,
    /// Photos to save, 1 to 100000.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64)
          .range(pinsight::capture::COUNT.0..=pinsight::capture::COUNT.1))]
    count: u64,
    /// Seconds between two photos, 0 (as fast as frames come) to 3600.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = every)]
    every: f64,
    /// The config file, for its source and camera settings (board/README.md).
    #[arg(long, env = "PINSIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// A V4L2 camera (/dev/videoN), a folder of images, a glob pattern or an image file
    /// [default: the config file's, the board's camera, else /dev/video0].
    #[arg(long)]
    source: Option<String>,
    /// Camera: the frame size to ask for [default: 640x480].
    #[arg(long, value_parser = pinsight::config::parse_size)]
    size: Option<(u32, u32)>,
    /// Camera: the pixel format to insist on (YUYV, NV12, RGB3, BGR3, GREY, MJPG).
    #[arg(long, value_parser = pinsight::config::parse_format)]
    format: Option<PixelFormat>,
}

impl CaptureArgs {
    /// The session asked for: the source and camera of these options over the config file's,
    /// over the defaults (as `run` resolves them).
    pub fn resolve(self) -> pinsight::Result<CaptureOptions> {
        let file = load_config(self.config.as_deref())?;
        let run = RunSettings {
            source: self.source,
            size: self.size,
            format: self.format,
            ..RunSettings::default()
        };
        let resolved = pinsight::config::resolve_run(
            file,
            ModelSettings::default(),
            run,
            None,
            Duration::ZERO,
        );
        Ok(CaptureOptions {
            photos: self.photos,
            class: self.class,
            count: self.count,
            every: Duration::from_secs_f64(self.every),
            source: resolved.source,
            camera: resolved.camera,
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Adam,
    /// Stochastic gradient descent with momentum 0.9.
    Sgd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClassWeightsArg {
    /// Balanced when the classes' photo counts differ by over 10%.
    Auto,
    /// Each class weighs in inversely to its photo count.
    Balanced,
    None,
}

#[derive(Args)]
pub struct TrainArgs {
    /// The photos: DATA_DIR/<class>/*.jpg, or DATA_DIR/{train,validation,test}/<class>/*.jpg.
    data: PathBuf,
    /// The head folder to write: one that does not exist yet, an empty one, or a head folder
    /// pinsight wrote, which is replaced as a whole; anything else is refused before any work.
    #[arg(long)]
    out: PathBuf,
    /// The backbone whose features the head learns from, and what runs it.
    #[command(flatten)]
    backbone: BackboneArgs,
    /// A hidden layer of this many units, 1 to 4096 (ReLU, with dropout) before the softmax
    /// layer; without it the head is one softmax layer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    hidden: Option<u32>,
    /// Dropout on the hidden layer while training (0 to 0.95).
    #[arg(long, default_value_t = 0.2, value_parser = dropout)]
    dropout: f32,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// The optimizer's step size (above 0, at most 10).
    #[arg(long, default_value_t = 1e-2, value_parser = learning_rate)]
    learning_rate: f32,
    /// Decoupled weight decay, AdamW style (0 to 1) [default: 0.01 with split folders; chosen
    /// by cross-validation among 0.3, 1, 3 and 10 for a flat folder].
    #[arg(long, value_parser = weight_decay)]
    weight_decay: Option<f32>,
    /// The most epochs to train (1 to 100000); the epoch with the lowest validation loss is
    /// kept (for a flat folder: the epoch count with the lowest cross-validated loss).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: u32,
    /// Stop after this many epochs without a better validation (or cross-validated) loss (1 to
    /// 100000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    patience: u32,
    /// Photos a training step learns from (1 to 65536).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch_size: u32,
    /// How much each class's photos weigh in the loss.
    #[arg(long, value_enum, default_value_t = ClassWeightsArg::Auto)]
    class_weights: ClassWeightsArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also learn from flipped, zoomed, brighter and darker copies of the training photos.
    #[arg(long)]
    augment: bool,
    /// Standardise each feature to zero mean and unit variance while training (folded into the
    /// written head). Off by default with split folders (with a few dozen photos a class it
    /// generalised worse, and so did it in cross-validation on flat folders).
    #[arg(long)]
    standardize: bool,
    /// Where backbone features are cached [default: ~/.cache/pinsight/features].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The share of held-out photos of the head's own classes that it accepts as known (0.5 to
    /// 1): results scoring below the least of them are "unknown".
    #[arg(long, default_value_t = 0.95, value_parser = accept_known, value_name = "SHARE")]
    accept_known: f32,
}

impl TrainArgs {
    pub fn resolve(self) -> TrainOptions {
        let lr = self.learning_rate;
        let config = TrainConfig {
            head: self
                .hidden
                .map_or(HeadKind::Linear, |units| HeadKind::Hidden {
                    units: units as usize,
                    dropout: self.dropout,
                }),
            optimizer: match self.optimizer {
                OptimizerArg::Adam => Optimizer::Adam { lr },
                OptimizerArg::Sgd => Optimizer::Sgd { lr, momentum: 0.9 },
            },
            weight_decay: self.weight_decay.unwrap_or(1e-2),
            epochs: self.epochs as usize,
            patience: Some(self.patience as usize),
            batch_size: self.batch_size as usize,
            seed: self.seed,
            class_weights: match self.class_weights {
                ClassWeightsArg::Auto => ClassWeights::Auto,
                ClassWeightsArg::Balanced => ClassWeights::Balanced,
                ClassWeightsArg::None => ClassWeights::None,
            },
            standardize: self.standardize,
        };
        TrainOptions {
            data: self.data,
            out: self.out,
            backbone: self.backbone.backbone.unwrap_or_else(|| {
                pinsight::config::bundled_models().join(pinsight::config::BUNDLED_BACKBONE)
            }),
            engine: self.backbone.engine.map_or(Engine::Auto, Engine::from),
            threads: self.backbone.threads.count(),
            cache: self
                .cache
                .unwrap_or_else(pinsight::train::default_cache_dir),
            config,
            grid: Grid {
                weight_decay: self
                    .weight_decay
                    .map_or_else(|| Grid::default().weight_decay, |decay| vec![decay]),
                standardize: if self.standardize {
                    vec![true]
                } else {
                    Grid::default().standardize
                },
            },
            augment: self.augment,
            accept_known: self.accept_known,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    /// The test split (the validation split when there is no test split).
    Test,
    Validation,
    Train,
    /// Every photo.
    All,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The photos, laid out as for `pinsight train`.
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Which photos to evaluate on.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Where to write the JSON report.
    #[arg(long, default_value = "eval.json")]
    json: PathBuf,
    /// Where to write the confusion matrix picture.
    #[arg(long, default_value = "confusion.png")]
    png: PathBuf,
    /// Photos of classes the head does not know (a folder per class): also report how well the
    /// head tells them from its own (AUROC, and shares at its unknown threshold).
    #[arg(long, value_name = "DIR")]
    unknown: Option<PathBuf>,
}

impl EvalArgs {
    pub fn resolve(self) -> EvalOptions {
        let model = self.model.resolve();
        EvalOptions {
            data: self.data,
            split: match self.split {
                SplitArg::Test => Split::Test,
                SplitArg::Validation => Split::Validation,
                SplitArg::Train => Split::Train,
                SplitArg::All => Split::All,
            },
            backbone: model.backbone,
            head: model.head,
            engine: model.engine,
            threads: model.threads,
            json: self.json,
            png: self.png,
            unknown: self.unknown,
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// A backbone ONNX file to measure, each in a process of its own; repeat for several
    /// [default: the bundled int8 and float EfficientNet-Lite0 files].
    #[arg(long, env = "PINSIGHT_BACKBONE")]
    backbone: Vec<PathBuf>,
    /// What runs each backbone.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    engine: EngineArg,
    /// The head folder run on every backbone's features (ImageNet's works with both bundled
    /// backbones) [default: the bundled ImageNet head].
    #[arg(long, env = "PINSIGHT_HEAD")]
    head: Option<PathBuf>,
    /// Timed runs of each measurement, after one warm-up run. For a model the warm-up is its
    /// first inference, which counts in the model-ready time: a model runs RUNS + 1 times.
    /// 1 to 10000.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    runs: u16,
    /// The photo the synthetic camera frames and the model's input are made from [default: the
    /// bundled rocket.jpg, beside the models].
    #[arg(long)]
    photo: Option<PathBuf>,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Measure one backbone in this process and print one JSON line: ready time (load and
    /// first inference), inference p50 and p99, peak RSS. Exactly RUNS + 1 inferences, for
    /// counting instructions (scripts/insn-count).
    #[arg(long)]
    model_only: bool,
}

impl BenchArgs {
    pub fn resolve(self) -> BenchOptions {
        BenchOptions {
            backbones: self.backbone,
            engine: self.engine.into(),
            head: self.head.unwrap_or_else(|| {
                pinsight::config::bundled_models().join(pinsight::config::BUNDLED_HEAD)
            }),
            runs: self.runs.into(),
            photo: self.photo.unwrap_or_else(pinsight::config::bundled_photo),
            threads: self.threads.count(),
            model_only: self.model_only,
        }
    }
}

/// `text` as a number within `least..=most` (`least` itself excluded when `open`); clap puts
/// the option's name before the message.
fn number_in<T>(text: &str, least: T, open: bool, most: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let range = if open {
        format!("above {least} and at most {most}")
    } else {
        format!("{least} to {most}")
    };
    match text.trim().parse::<T>() {
        // NaN is neither above nor below anything: it fails both comparisons.
        Ok(value) if (if open { value > least } else { value >= least }) && value <= most => {
            Ok(value)
        }
        Ok(_) => Err(format!("{text} is out of range: it must be {range}")),
        Err(_) => Err(format!("{text:?} is not a number (it must be {range})")),
    }
}

fn fps(text: &str) -> Result<f64, String> {
    let (least, most) = pinsight::config::FPS;
    number_in(text, least, false, most)
}

/// The config file `--config` names, read and checked.
fn load_config(
    path: Option<&std::path::Path>,
) -> pinsight::Result<Option<pinsight::config::ConfigFile>> {
    path.map(pinsight::config::load).transpose()
}

fn every(text: &str) -> Result<f64, String> {
    let (least, most) = pinsight::capture::EVERY;
    number_in(text, least, false, most)
}

fn probability(text: &str) -> Result<f32, String> {
    let (least, most) = pinsight::config::THRESHOLD;
    number_in(text, least, false, most)
}

fn accept_known(text: &str) -> Result<f32, String> {
    number_in(text, 0.5, false, 1.0)
}

fn dropout(text: &str) -> Result<f32, String> {
    number_in(text, 0.0, false, 0.95)
}

fn learning_rate(text: &str) -> Result<f32, String> {
    number_in(text, 0.0, true, 10.0)
}

fn weight_decay(text: &str) -> Result<f32, String> {
    number_in(text, 0.0, false, 1.0)
}
