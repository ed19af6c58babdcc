//! The `pinsight` command line.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use pinsight::image_file::load_rgb;
use pinsight::model::Classifier;
use pinsight::preprocess::Preprocessor;
use pinsight::scores::{Guess, top_k};

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

fn millis(from: Instant, to: Instant) -> f64 {
    let ms = to.duration_since(from).as_secs_f64() * 1e3;
    (ms * 1e3).round() / 1e3
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Classify(args) => classify(args).context("classify"),
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
