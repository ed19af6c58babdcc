//! The `pinsight` command line.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use pinsight::frame::PixelFormat;
use pinsight::gpio::cdev::Chip;
use pinsight::gpio::{NoOutputs, Outputs, Presses, Signals, Trigger};
use pinsight::image_file::load_rgb;
use pinsight::model::Classifier;
use pinsight::preprocess::Preprocessor;
use pinsight::run::{Mode, RunOptions, millis};
use pinsight::scores::{Guess, top_k};
use pinsight::source::{Camera, CameraConfig, Files, FrameSource};

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify image files and print the most likely labels for each.
    Classify(ClassifyArgs),
    /// The main loop: classify frames from a camera (or image files) as they come, one JSON
    /// line a result on stdout.
    Run(RunArgs),
    /// Train a head on a folder of labelled photos (a sub-folder per class) and write it as a
    /// head folder for `--head`.
    Train(TrainArgs),
    /// Evaluate a head on a folder of labelled photos: accuracy, per-class precision, recall and
    /// F1, and the confusion matrix (text, JSON and a PNG picture).
    Eval(EvalArgs),
    /// Measure the per-frame path on this machine: frame conversion and resize for each camera
    /// format and size, then each backbone in a process of its own: model-ready time, inference
    /// median and 99th percentile, peak memory.
    Bench(pinsight::bench::BenchArgs),
    /// Check a deployment config and the board profile it names, and print them resolved:
    /// every pin as a line offset.
    Config(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// The deployment config (board/README.md).
    config: PathBuf,
}

fn show_config(args: &ConfigArgs) -> Result<()> {
    let deployment = pinsight::board::load(&args.config)?;
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &deployment)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Args)]
struct ModelArgs {
    /// The backbone ONNX file; its folder holds the SHA256SUMS that it is checked against.
    #[arg(
        long,
        env = "PINSIGHT_BACKBONE",
        default_value = "models/efficientnet-lite0/backbone-int8.onnx"
    )]
    backbone: PathBuf,
    /// The head folder: head.onnx, labels.txt, head.json and SHA256SUMS.
    #[arg(long, env = "PINSIGHT_HEAD", default_value = "models/imagenet")]
    head: PathBuf,
}

impl ModelArgs {
    fn load(&self) -> Result<Classifier> {
        let started = Instant::now();
        let classifier = Classifier::load(&self.backbone, &self.head)?;
        log::info!(
            "model ready in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(classifier)
    }
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How many labels to print for each image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// Print one JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    /// Image files (JPEG, PNG, WebP, BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A V4L2 camera (/dev/videoN), a folder of images, a glob pattern or an image file
    /// [default: the deployment config's camera, else /dev/video0].
    #[arg(long)]
    source: Option<String>,
    /// A deployment config (board/README.md): the board, the trigger and the output pins.
    #[arg(long, env = "PINSIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// continuous: classify frame after frame. triggered: classify a burst of frames after each
    /// press of the config's trigger line.
    #[arg(long, default_value = "continuous", value_parser = ["continuous", "triggered"])]
    mode: String,
    /// Stop after this many results (default: run until the source ends or a signal).
    #[arg(long)]
    frames: Option<u64>,
    /// Classify at most this many frames a second.
    #[arg(long, value_parser = positive_f64)]
    fps: Option<f64>,
    /// The smoothed probability the best class needs to be reported as the result's label.
    #[arg(long, default_value_t = 0.5, value_parser = probability)]
    threshold: f32,
    /// Average the probabilities of this many frames [default: 3 for a camera, 1 for files].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    smooth: Option<u16>,
    /// How many labels each result lists.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// Camera: the frame size to ask for (the driver picks the nearest it has).
    #[arg(long, default_value = "640x480", value_parser = frame_size)]
    size: (u32, u32),
    /// Camera: the pixel format to insist on (YUYV, NV12, RGB3, BGR3, GREY, MJPG) [default: the
    /// cheapest to convert that the camera offers].
    #[arg(long, value_parser = pixel_format)]
    format: Option<PixelFormat>,
}

#[derive(Args)]
struct TrainArgs {
    /// The photos: DATA_DIR/<class>/*.jpg, or DATA_DIR/{train,validation,test}/<class>/*.jpg.
    data: PathBuf,
    /// The head folder to write (replaced as a whole if it exists).
    #[arg(long)]
    out: PathBuf,
    /// The backbone ONNX file whose features the head learns from.
    #[arg(
        long,
        env = "PINSIGHT_BACKBONE",
        default_value = "models/efficientnet-lite0/backbone-int8.onnx"
    )]
    backbone: PathBuf,
    /// A hidden layer of this many units (ReLU, with dropout) before the softmax layer; without
    /// it the head is one softmax layer.
    #[arg(long)]
    hidden: Option<usize>,
    /// Dropout on the hidden layer while training.
    #[arg(long, default_value_t = 0.2)]
    dropout: f32,
    /// adam or sgd (with momentum 0.9).
    #[arg(long, default_value = "adam")]
    optimizer: String,
    #[arg(long, default_value_t = 1e-2)]
    learning_rate: f32,
    /// Decoupled weight decay (AdamW style).
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f32,
    /// The most epochs to train; the epoch with the lowest validation loss is kept.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long, default_value_t = 10)]
    patience: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// auto (balanced when the classes' photo counts differ by over 10%), balanced or none.
    #[arg(long, default_value = "auto")]
    class_weights: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also learn from flipped, zoomed, brighter and darker copies of the training photos.
    #[arg(long)]
    augment: bool,
    /// Standardise each feature to zero mean and unit variance while training (folded into the
    /// written head). Off by default: with a few dozen photos a class it generalises worse.
    #[arg(long)]
    standardize: bool,
    /// Where backbone features are cached [default: ~/.cache/pinsight/features].
    #[arg(long)]
    cache: Option<PathBuf>,
}

fn train_head(args: &TrainArgs) -> Result<()> {
    use pinsight::train::{ClassWeights, HeadKind, Optimizer, TrainConfig};
    let optimizer = match args.optimizer.as_str() {
        "adam" => Optimizer::Adam {
            lr: args.learning_rate,
        },
        "sgd" => Optimizer::Sgd {
            lr: args.learning_rate,
            momentum: 0.9,
        },
        other => bail!("unknown optimizer {other:?}: use adam or sgd"),
    };
    let class_weights = match args.class_weights.as_str() {
        "auto" => ClassWeights::Auto,
        "balanced" => ClassWeights::Balanced,
        "none" => ClassWeights::None,
        other => bail!("unknown class weights {other:?}: use auto, balanced or none"),
    };
    let config = TrainConfig {
        head: args
            .hidden
            .map_or(HeadKind::Linear, |units| HeadKind::Hidden {
                units,
                dropout: args.dropout,
            }),
        optimizer,
        weight_decay: args.weight_decay,
        epochs: args.epochs,
        patience: Some(args.patience),
        batch_size: args.batch_size,
        seed: args.seed,
        class_weights,
        standardize: args.standardize,
    };
    let options = pinsight::train::TrainOptions {
        data: args.data.clone(),
        out: args.out.clone(),
        backbone: args.backbone.clone(),
        cache: args
            .cache
            .clone()
            .unwrap_or_else(pinsight::train::default_cache_dir),
        config,
        augment: args.augment,
    };
    let outcome = pinsight::train::train_from_folder(&options)?;
    let mut out = io::stdout().lock();
    let [train, validation, test] = outcome.photos;
    writeln!(out, "classes: {}", outcome.classes.join(", "))?;
    writeln!(
        out,
        "photos: {train} train, {validation} validation, {test} test ({} skipped)",
        outcome.skipped.len()
    )?;
    writeln!(
        out,
        "features: {:.1} s ({} from the cache, {} computed); training: {:.1} s, best epoch {} of {}{}",
        outcome.extract_seconds,
        outcome.cache_hits,
        outcome.cache_misses,
        outcome.train_seconds,
        outcome.report.best_epoch,
        outcome.report.epochs.len(),
        if outcome.report.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "validation accuracy: {:.2}%",
        100.0 * outcome.validation.accuracy
    )?;
    if let Some(test) = &outcome.test {
        writeln!(out, "test accuracy: {:.2}%", 100.0 * test.accuracy)?;
    }
    writeln!(
        out,
        "wrote {} (tract vs trainer: max abs difference {:.2e})",
        args.out.display(),
        outcome.check_max_abs_diff
    )?;
    Ok(())
}

#[derive(Args)]
struct EvalArgs {
    /// The photos, laid out as for `pinsight train`.
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Which photos: test (validation when there is no test split), validation, train or all.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Where to write the JSON report.
    #[arg(long, default_value = "eval.json")]
    json: PathBuf,
    /// Where to write the confusion matrix picture.
    #[arg(long, default_value = "confusion.png")]
    png: PathBuf,
}

/// `--split`: the library's [`pinsight::train::Split`], which knows nothing of clap.
#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Test,
    Validation,
    Train,
    All,
}

impl From<SplitArg> for pinsight::train::Split {
    fn from(split: SplitArg) -> Self {
        match split {
            SplitArg::Test => Self::Test,
            SplitArg::Validation => Self::Validation,
            SplitArg::Train => Self::Train,
            SplitArg::All => Self::All,
        }
    }
}

fn eval_head(args: &EvalArgs) -> Result<()> {
    let (report, skipped) = pinsight::train::evaluate_folder(
        &args.data,
        args.split.into(),
        &args.model.backbone,
        &args.model.head,
    )?;
    report.write(&args.json, &args.png)?;
    let mut out = io::stdout().lock();
    write!(out, "{}", report.text())?;
    writeln!(
        out,
        "
wrote {} and {}",
        args.json.display(),
        args.png.display()
    )?;
    if !skipped.is_empty() {
        writeln!(
            out,
            "{} photos could not be read (named in the log)",
            skipped.len()
        )?;
    }
    Ok(())
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn probability(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a probability between 0 and 1")),
    }
}

fn frame_size(text: &str) -> Result<(u32, u32), String> {
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match parsed {
        Some((width, height)) if width > 0 && height > 0 => Ok((width, height)),
        _ => Err(format!("{text:?} is not a size like 640x480")),
    }
}

fn pixel_format(text: &str) -> Result<PixelFormat, String> {
    let code: [u8; 4] = text
        .to_ascii_uppercase()
        .into_bytes()
        .try_into()
        .map_err(|_| format!("{text:?} is not a four-letter code"))?;
    PixelFormat::from_fourcc(&code).ok_or_else(|| {
        format!("pinsight does not read {text:?}: use YUYV, NV12, RGB3, BGR3, GREY or MJPG")
    })
}

fn run_loop(args: &RunArgs) -> Result<()> {
    let deployment = args
        .config
        .as_deref()
        .map(pinsight::board::load)
        .transpose()?;
    let triggered = args.mode == "triggered";
    let trigger_spec = match (&deployment, triggered) {
        (Some(deployment), true) => match &deployment.trigger {
            Some(trigger) => Some(trigger.clone()),
            None => bail!("--mode triggered needs a [trigger] in the deployment config"),
        },
        (None, true) => bail!("--mode triggered needs --config with a [trigger] line"),
        (_, false) => None,
    };
    // The outputs first, so that every line is at its safe level from the start.
    let chip = deployment.as_ref().map(Chip::find).transpose()?;
    let signals: Arc<Mutex<dyn Signals>> = match (&deployment, &chip) {
        (Some(deployment), Some(chip)) => {
            let pins = deployment
                .outputs
                .iter()
                .map(|spec| Ok((spec.clone(), chip.output(spec)?)))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(Mutex::new(Outputs::new(pins)?))
        }
        _ => Arc::new(Mutex::new(NoOutputs)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone(), Arc::downgrade(&signals))?;

    // The source next: a missing camera is reported before the model spends time loading.
    let source_name = args
        .source
        .clone()
        .or_else(|| {
            let camera = deployment.as_ref()?.camera.as_ref()?;
            Some(camera.display().to_string())
        })
        .unwrap_or_else(|| "/dev/video0".into());
    let is_camera = source_name.starts_with("/dev/");
    let mut source: Box<dyn FrameSource> = if is_camera {
        let (width, height) = args.size;
        let config = CameraConfig {
            device: source_name.into(),
            width,
            height,
            format: args.format,
        };
        Box::new(Camera::open(config)?)
    } else {
        Box::new(Files::open(&source_name)?)
    };
    let classifier = args.model.load()?;
    if let Some(deployment) = &deployment {
        deployment
            .check_labels(classifier.labels())
            .map_err(|reason| {
                anyhow::anyhow!("{}: {reason}", args.config.as_ref().unwrap().display())
            })?;
    }
    let mut presses = match (&trigger_spec, &chip) {
        (Some(spec), Some(chip)) => {
            let trigger = Trigger::new(chip.trigger(spec)?, spec.edge, spec.debounce)?;
            Some(Presses::spawn(trigger, stop.clone()))
        }
        _ => None,
    };
    let mode = match (&mut presses, &trigger_spec) {
        (Some(presses), Some(spec)) => Mode::Triggered {
            presses,
            burst: spec.burst,
            cooldown: spec.cooldown,
        },
        _ => Mode::Continuous,
    };
    let options = RunOptions {
        frames: args.frames,
        max_fps: args.fps,
        top: args.top.into(),
        threshold: args.threshold,
        smooth: args
            .smooth
            .map_or(if is_camera { 3 } else { 1 }, usize::from),
    };
    let mut stdout = io::stdout().lock();
    let summary = pinsight::run::run(
        source.as_mut(),
        &classifier,
        &options,
        mode,
        &*signals,
        &stop,
        |result| {
            serde_json::to_writer(&mut stdout, result)?;
            writeln!(stdout)?;
            stdout.flush()
        },
    )?;
    // The trigger thread ends on the stop flag.
    stop.store(true, Ordering::Relaxed);
    if deployment.is_some() {
        pinsight::gpio::lock(&signals).make_safe();
        log::info!("outputs at their safe levels");
        // For tests on gpio-sim, which returns a released line to its pull: keep the lines
        // (at their safe levels) long enough to be read.
        if let Some(ms) = std::env::var("PINSIGHT_TEST_HOLD_SAFE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    log::info!(
        "{} results, {} frames skipped as corrupt, {} dropped for newer ones",
        summary.decided,
        summary.skipped,
        summary.dropped
    );
    Ok(())
}

/// SIGINT and SIGTERM stop the run loop, which then sets the outputs safe as it returns. A
/// second signal, should the loop be stuck, sets them safe from here and ends the process.
/// The outputs are held weakly: when `run_loop` returns, with or without an error, its handle
/// is the last, and dropping it sets them safe.
fn watch_signals(stop: Arc<AtomicBool>, signals: Weak<Mutex<dyn Signals>>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut incoming = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        for signal in incoming.forever() {
            if stop.swap(true, Ordering::Relaxed) {
                if let Some(signals) = signals.upgrade() {
                    pinsight::gpio::lock(&signals).make_safe();
                }
                log::warn!("second signal {signal}: outputs set safe, exiting at once");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

#[derive(Serialize)]
struct Classified<'a> {
    path: &'a Path,
    top: Vec<Guess>,
    ms: StageTimes,
}

#[derive(Serialize)]
struct StageTimes {
    decode: f64,
    preprocess: f64,
    inference: f64,
}

fn classify(args: &ClassifyArgs) -> Result<()> {
    let classifier = args.model.load()?;
    let mut preprocessor = Preprocessor::default();
    let mut input = Vec::new();
    let mut stdout = io::stdout().lock();
    let mut failed = 0;
    for path in &args.images {
        let started = Instant::now();
        let image = match load_rgb(path) {
            Ok(image) => image,
            Err(e) => {
                log::error!("{e}");
                failed += 1;
                continue;
            }
        };
        let decoded = Instant::now();
        preprocessor.tensor(&image, &mut input);
        let preprocessed = Instant::now();
        let probabilities = classifier.probabilities(&input)?;
        let inferred = Instant::now();
        let result = Classified {
            path,
            top: top_k(&probabilities, classifier.labels(), args.top.into()),
            ms: StageTimes {
                decode: millis(started, decoded),
                preprocess: millis(decoded, preprocessed),
                inference: millis(preprocessed, inferred),
            },
        };
        if args.json {
            serde_json::to_writer(&mut stdout, &result)?;
            writeln!(stdout)?;
        } else {
            writeln!(stdout, "{}", path.display())?;
            for guess in &result.top {
                writeln!(stdout, "  {:>6.2}%  {}", 100.0 * guess.score, guess.label)?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", args.images.len());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Classify(args) => classify(args).context("classify"),
        Command::Run(args) => run_loop(args).context("run"),
        Command::Bench(args) => pinsight::bench::run(args).context("bench"),
        Command::Train(args) => train_head(args).context("train"),
        Command::Eval(args) => eval_head(args).context("eval"),
        Command::Config(args) => show_config(args).context("config"),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinsight: {e:#}");
            ExitCode::from(2)
        }
    }
}
