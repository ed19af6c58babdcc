//! Measurements for `pinsight bench`: what each stage of the per-frame path costs on this
//! machine, and what each backbone costs to load, run and hold in memory. Medians and 99th
//! percentiles of repeated runs; nothing here is asserted, only reported.
//!
//! Peak memory is a figure for a whole process, so each backbone is measured in a process of its
//! own: the report runs `pinsight bench --model-only` once per backbone (the same executable,
//! [`std::env::current_exe`]) and reads back the one JSON line ([`ModelBench`]) each prints.
//! scripts/bench-models puts those lines beside onnxruntime's on the same files, and
//! scripts/insn-count runs `--model-only` under qemu-user with `--runs 1` and `--runs 11`: the
//! two runs differ by exactly 10 inferences.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::decode::load_rgb;
use crate::frame::{Converter, Frame, PixelFormat};
use crate::model::{Classifier, Engine};
use crate::preprocess::Preprocessor;

/// The backbones the report measures when none is named, in the bundled models folder
/// ([`crate::config::bundled_models`]): the int8 file pinsight runs by default, then the float
/// file it was quantised from.
pub const BUNDLED_BACKBONES: [&str; 2] = [
    "efficientnet-lite0/backbone-int8.onnx",
    "efficientnet-lite0/backbone-float.onnx",
];

/// The frame sizes the frame-conversion table measures.
const FRAME_SIZES: [(u32, u32); 2] = [(640, 480), (1280, 720)];

/// What `pinsight bench` measures.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The backbone files, each measured in a process of its own; empty: [`BUNDLED_BACKBONES`].
    pub backbones: Vec<PathBuf>,
    /// What runs each backbone.
    pub engine: Engine,
    /// The head run on every backbone's features.
    pub head: PathBuf,
    /// Timed runs of each measurement, after one warm-up run (for a model, its first
    /// inference, which counts in the model-ready time).
    pub runs: usize,
    /// The photo the synthetic camera frames and the model's input are made from.
    pub photo: PathBuf,
    /// Threads the int8 engine splits its layers over (tract's engine runs on one).
    pub threads: usize,
    /// Measure one backbone in this process and print one [`ModelBench`] JSON line: exactly
    /// `runs` + 1 inferences.
    pub model_only: bool,
}

const QEMU_HINT: &str = " (under qemu-user, which cannot start an ARM program from an ARM \
     program, run `pinsight bench --model-only --backbone FILE` once per backbone instead)";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pinsight(#[from] crate::Error),

    #[error("cannot write the report: {0}")]
    Output(#[from] io::Error),

    #[error(
        "--model-only measures one backbone in one process; {0} were given \
         (run it once per backbone, or leave out --model-only for a table of them all)"
    )]
    OneBackbone(usize),

    #[error(
        "cannot start {} to measure {} in a process of its own: {source}{QEMU_HINT}",
        exe.display(), backbone.display()
    )]
    Spawn {
        exe: PathBuf,
        backbone: PathBuf,
        source: io::Error,
    },

    #[error(
        "measuring {} in a process of its own failed ({status}){}",
        backbone.display(),
        if status.code() == Some(127) {
            format!(": it could not be started{QEMU_HINT}")
        } else {
            "; its messages are above".into()
        }
    )]
    Child {
        backbone: PathBuf,
        status: ExitStatus,
    },

    #[error(
        "measuring {}: the child process printed no result line ({reason}): {output:?}",
        backbone.display()
    )]
    ChildOutput {
        backbone: PathBuf,
        reason: String,
        output: String,
    },
}

impl BenchError {
    /// Which kind of failure this is (and so which exit status `pinsight` gives it).
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            BenchError::Pinsight(error) => error.kind(),
            BenchError::OneBackbone(_) => ErrorKind::Usage,
            BenchError::Output(_) | BenchError::Spawn { .. } => ErrorKind::System,
            // The child is pinsight itself: its status already says what kind of failure it
            // had (a damaged backbone is bad input in the child as in the parent).
            BenchError::Child { status, .. } => status
                .code()
                .and_then(ErrorKind::from_exit_code)
                .unwrap_or(ErrorKind::Internal),
            BenchError::ChildOutput { .. } => ErrorKind::Internal,
        }
    }
}

/// `pinsight bench`: the frame-conversion table and a table of the backbones, or with
/// `--model-only` one backbone's [`ModelBench`] as a JSON line.
pub fn run(args: &BenchOptions) -> Result<(), BenchError> {
    let runs = args.runs;
    let photo = load_rgb(&args.photo)?;
    let mut out = io::stdout().lock();
    if args.model_only {
        let backbone = match args.backbones.as_slice() {
            [] => crate::config::bundled_models().join(BUNDLED_BACKBONES[0]),
            [one] => one.clone(),
            many => return Err(BenchError::OneBackbone(many.len())),
        };
        let result = measure_model(
            &backbone,
            &args.head,
            args.engine,
            args.threads,
            &photo,
            runs,
        )?;
        serde_json::to_writer(&mut out, &result).map_err(io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    frame_table(&mut out, &photo, runs)?;
    let backbones = if args.backbones.is_empty() {
        // The package installs the int8 file alone; a checkout has both.
        let models = crate::config::bundled_models();
        let (present, absent): (Vec<PathBuf>, Vec<PathBuf>) = BUNDLED_BACKBONES
            .iter()
            .map(|b| models.join(b))
            .partition(|path| path.is_file());
        for path in absent {
            log::info!("not measured: no {} here", path.display());
        }
        present
    } else {
        args.backbones.clone()
    };
    let mut results = Vec::new();
    for backbone in &backbones {
        results.push(measure_in_child(args, backbone)?);
    }
    model_table(&mut out, &results, runs)?;
    Ok(())
}

fn frame_table(out: &mut impl Write, photo: &RgbImage, runs: usize) -> io::Result<()> {
    writeln!(
        out,
        "frame -> model input (convert to RGB, resize, crop, normalise), ms: median / p99 of {runs}"
    )?;
    write!(out, "{:<8}", "format")?;
    for (width, height) in FRAME_SIZES {
        write!(out, "{:>20}", format!("{width}x{height}"))?;
    }
    writeln!(out)?;
    for format in CAMERA_FORMATS {
        write!(out, "{:<8}", format.fourcc())?;
        for (width, height) in FRAME_SIZES {
            let timing = frame_to_input(&camera_frame(photo, format, width, height), runs);
            write!(
                out,
                "{:>20}",
                format!("{:.3} / {:.3}", timing.median_ms, timing.p99_ms)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn model_table(out: &mut impl Write, results: &[ModelBench], runs: usize) -> io::Result<()> {
    writeln!(
        out,
        "\nbackbone + head, each in a process of its own: ready = load + first inference;\n\
         p50 / p99 of the {runs} inferences after it{}; peak RSS of the process",
        if runs < 100 {
            " (of fewer than 100, p99 is the slowest)"
        } else {
            ""
        }
    )?;
    let width = results
        .iter()
        .map(|r| r.backbone.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    writeln!(out, "CPU: {}", crate::model::CpuFeatures::detected())?;
    writeln!(
        out,
        "{:<width$} {:<32} {:>9} {:>9} {:>9} {:>9} {:>9}  top-1",
        "backbone", "engine (kernels)", "ready ms", "load ms", "p50 ms", "p99 ms", "RSS MiB"
    )?;
    for r in results {
        writeln!(
            out,
            "{:<width$} {:<32} {:>9.0} {:>9.0} {:>9.2} {:>9.2} {:>9}  {} ({:.2})",
            r.backbone,
            match &r.kernels {
                Some(kernels) => format!("{} ({kernels}, {} threads)", r.engine, r.threads),
                None => r.engine.clone(),
            },
            r.ready_ms,
            r.load_ms,
            r.p50_ms,
            r.p99_ms,
            r.peak_rss_kib
                .map_or_else(|| "?".into(), |kib| format!("{:.1}", kib as f64 / 1024.0)),
            r.top1_label,
            r.top1_probability
        )?;
    }
    Ok(())
}

/// Runs this executable with `--model-only` for `backbone` and reads its JSON line.
fn measure_in_child(args: &BenchOptions, backbone: &Path) -> Result<ModelBench, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Spawn {
        exe: "pinsight".into(),
        backbone: backbone.into(),
        source,
    })?;
    let output = Command::new(&exe)
        .arg("bench")
        .arg("--model-only")
        .arg("--backbone")
        .arg(backbone)
        .arg("--engine")
        .arg(args.engine.to_string())
        .arg("--head")
        .arg(&args.head)
        .arg("--runs")
        .arg(args.runs.to_string())
        .arg("--photo")
        .arg(&args.photo)
        .arg("--threads")
        .arg(args.threads.to_string())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BenchError::Spawn {
            exe: exe.clone(),
            backbone: backbone.into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BenchError::Child {
            backbone: backbone.into(),
            status: output.status,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| BenchError::ChildOutput {
        backbone: backbone.into(),
        reason: e.to_string(),
        output: stdout.clone().into_owned(),
    })
}

/// One backbone (with the head) measured in a process of its own: the JSON line that
/// `pinsight bench --model-only` prints and scripts/bench-models reads (models/bench_ort.py
/// prints the same fields for onnxruntime).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelBench {
    pub engine: String,
    /// The kernel set the int8 engine chose from the CPU's features (none on tract, which
    /// picks its own).
    #[serde(default)]
    pub kernels: Option<String>,
    pub backbone: String,
    pub head: String,
    pub threads: u32,
    /// From the start of loading to the first result out: `load_ms` + `first_ms`.
    pub ready_ms: f64,
    /// Reading and checking the files, parsing, optimising.
    pub load_ms: f64,
    /// The first inference, which also allocates what later ones reuse.
    pub first_ms: f64,
    /// Timed inferences after the first.
    pub runs: usize,
    /// All inferences this process ran: `runs` + 1.
    pub inferences: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The process's peak resident set size (VmHWM), KiB; `None` where /proc is not Linux's.
    pub peak_rss_kib: Option<u64>,
    /// The peak before the model was loaded (the photo decoded, the input tensor made).
    pub rss_before_load_kib: Option<u64>,
    /// The best class of the first result, to see that engines agree.
    pub top1_index: usize,
    pub top1_label: String,
    pub top1_probability: f32,
}

/// Loads `backbone` with the head in `head_dir` on `engine`, classifies `photo` once (the
/// model is then ready) and `runs` more times, timing the inference of each.
pub fn measure_model(
    backbone: &Path,
    head_dir: &Path,
    engine: Engine,
    threads: usize,
    photo: &RgbImage,
    runs: usize,
) -> crate::Result<ModelBench> {
    let rss_before_load_kib = peak_rss_kib();
    let started = Instant::now();
    crate::model::threads::set(threads).map_err(crate::Error::Usage)?;
    let classifier = Classifier::load_with(backbone, head_dir, engine)?;
    let loaded = Instant::now();
    let first = classifier.classify(photo)?.probabilities;
    let ready = Instant::now();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(std::hint::black_box(classifier.classify(photo)?).inference_ms);
    }
    let timing = Timing::of(samples);
    let (top1_index, top1_probability) = first
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, f32::NAN));
    Ok(ModelBench {
        engine: classifier.engine().to_string(),
        kernels: classifier.kernels().map(|set| set.name().into()),
        backbone: backbone.display().to_string(),
        head: head_dir.display().to_string(),
        // tract's engine runs on one thread.
        threads: if classifier.kernels().is_some() {
            threads as u32
        } else {
            1
        },
        ready_ms: (ready - started).as_secs_f64() * 1e3,
        load_ms: (loaded - started).as_secs_f64() * 1e3,
        first_ms: (ready - loaded).as_secs_f64() * 1e3,
        runs,
        inferences: runs + 1,
        p50_ms: timing.median_ms,
        p99_ms: timing.p99_ms,
        peak_rss_kib: peak_rss_kib(),
        rss_before_load_kib,
        top1_index,
        top1_label: classifier
            .labels()
            .get(top1_index)
            .cloned()
            .unwrap_or_default(),
        top1_probability,
    })
}

/// This process's peak resident set size so far (VmHWM in /proc/self/status), KiB. Under
/// qemu-user it is the emulator's, translated code included.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The formats a camera hands over, in the order the report lists them.
pub const CAMERA_FORMATS: [PixelFormat; 6] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Grey,
    PixelFormat::Mjpeg,
];

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median_ms: f64,
    pub p99_ms: f64,
}

impl Timing {
    /// The median and 99th percentile (nearest rank) of `samples`, in ms.
    pub fn of(mut samples: Vec<f64>) -> Timing {
        if samples.is_empty() {
            return Timing {
                median_ms: f64::NAN,
                p99_ms: f64::NAN,
            };
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Timing {
            median_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }
}

/// Runs `work` `runs` times (after one warm-up run) and returns the median and 99th percentile.
pub fn time(runs: usize, mut work: impl FnMut()) -> Timing {
    work();
    let samples = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            work();
            millis_since(started)
        })
        .collect();
    Timing::of(samples)
}

fn millis_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// The cost of turning one camera frame into the model's input tensor: conversion to RGB,
/// then resize, crop and normalisation.
pub fn frame_to_input(frame: &Frame, runs: usize) -> Timing {
    let mut converter = Converter::default();
    let mut preprocessor = Preprocessor::default();
    let mut input = Vec::new();
    time(runs, || {
        let rgb = converter.to_rgb(frame).expect("a synthetic frame converts");
        preprocessor.tensor(rgb, &mut input);
    })
}

/// `photo` resized to `width` × `height` and encoded as a camera would send it (BT.601
/// limited-range YUV, tightly packed rows; MJPEG at quality 85).
pub fn camera_frame(photo: &RgbImage, format: PixelFormat, width: u32, height: u32) -> Frame {
    let rgb = image::imageops::resize(photo, width, height, image::imageops::FilterType::Triangle);
    let (w, h) = (width as usize, height as usize);
    let pixel = |x: usize, y: usize| rgb.get_pixel(x as u32, y as u32).0;
    let (stride, data) = match format {
        PixelFormat::Yuyv => {
            let mut data = Vec::with_capacity(w * h * 2);
            for y in 0..h {
                for x in (0..w).step_by(2) {
                    let (y0, u, v) = yuv(pixel(x, y));
                    let (y1, _, _) = yuv(pixel((x + 1).min(w - 1), y));
                    data.extend([y0, u, y1, v]);
                }
            }
            (w.div_ceil(2) * 4, data)
        }
        PixelFormat::Nv12 => {
            let mut data: Vec<u8> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (y, x)))
                .map(|(y, x)| yuv(pixel(x, y)).0)
                .collect();
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let (_, u, v) = yuv(pixel(x, y));
                    data.extend([u, v]);
                }
            }
            (w, data)
        }
        PixelFormat::Rgb24 => (w * 3, rgb.as_raw().clone()),
        PixelFormat::Bgr24 => (
            w * 3,
            rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect(),
        ),
        PixelFormat::Grey => (w, rgb.pixels().map(|p| yuv(p.0).0).collect()),
        PixelFormat::Mjpeg | PixelFormat::Encoded => {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
                .encode_image(&rgb)
                .expect("encoding to memory");
            (0, jpeg)
        }
    };
    Frame {
        sequence: 0,
        captured_at: Instant::now(),
        format,
        width,
        height,
        stride,
        data,
        origin: "bench".into(),
    }
}

/// BT.601 limited range, as V4L2 defines it for SDTV YUV.
fn yuv([r, g, b]: [u8; 3]) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    (y.round() as u8, u.round() as u8, v.round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frames_convert_back_to_their_photo() {
        let photo = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        });
        let mut converter = Converter::default();
        for format in CAMERA_FORMATS {
            let frame = camera_frame(&photo, format, 32, 24);
            let rgb = converter.to_rgb(&frame).unwrap();
            assert_eq!(rgb.dimensions(), (32, 24), "{format:?}");
            let reference =
                image::imageops::resize(&photo, 32, 24, image::imageops::FilterType::Triangle);
            let error: f64 = rgb
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / rgb.as_raw().len() as f64;
            let tolerance = if format == PixelFormat::Grey {
                60.0
            } else {
                6.0
            };
            assert!(error < tolerance, "{format:?}: mean error {error}");
        }
    }

    #[test]
    fn time_runs_the_work_once_more_than_it_measures() {
        let mut n = 0u64;
        let timing = time(20, || n = n.wrapping_add(1));
        assert_eq!(n, 21, "one warm-up run and twenty measured");
        for ms in [timing.median_ms, timing.p99_ms] {
            assert!(ms.is_finite() && ms >= 0.0, "{timing:?}");
        }
    }

    #[test]
    fn timing_picks_nearest_rank_quantiles_of_unsorted_samples() {
        // 1..=100 in a scrambled order (37 is coprime to 100): the median by nearest rank is
        // the 51st smallest (index round(99 * 0.5) = 50), the 99th percentile the 99th.
        let samples: Vec<f64> = (0..100).map(|i| f64::from((i * 37) % 100 + 1)).collect();
        let timing = Timing::of(samples);
        assert_eq!((timing.median_ms, timing.p99_ms), (51.0, 99.0));

        let timing = Timing::of(vec![9.0, 1.0, 5.0]);
        assert_eq!((timing.median_ms, timing.p99_ms), (5.0, 9.0));

        let none = Timing::of(Vec::new());
        assert!(none.median_ms.is_nan() && none.p99_ms.is_nan(), "{none:?}");
    }
}
