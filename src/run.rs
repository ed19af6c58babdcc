//! The main loop: take the newest frame, convert it, classify it, decide, report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Result;
use crate::decide::{Smoother, decide};
use crate::frame::Converter;
use crate::model::Classifier;
use crate::preprocess::Preprocessor;
use crate::scores::Guess;
use crate::source::{FrameSource, Next};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop after this many results.
    pub frames: Option<u64>,
    /// Classify at most this many frames a second.
    pub max_fps: Option<f64>,
    /// Labels to report for each result.
    pub top: usize,
    /// The smoothed probability the best class needs to be reported as `label`.
    pub threshold: f32,
    /// How many frames' probabilities are averaged.
    pub smooth: usize,
}

/// One decided result, as the run loop reports it (one JSON line on stdout).
#[derive(Debug, Serialize)]
pub struct Decided<'a> {
    /// When the result was decided (RFC 3339, UTC).
    pub time: String,
    /// The frame's sequence number in its source.
    pub frame: u64,
    pub source: &'a str,
    /// The best class, or null when it is below the threshold.
    pub label: Option<String>,
    pub top: Vec<Guess>,
    /// Frames the camera delivered that were never classified, so far.
    pub dropped: u64,
    /// Frames skipped because they could not be converted (corrupt), so far.
    pub skipped: u64,
    pub ms: StageTimes,
}

/// Milliseconds each stage took for this result.
#[derive(Debug, Default, Serialize)]
pub struct StageTimes {
    /// Waiting for the frame.
    pub capture: f64,
    /// Decoding or colour conversion, resize and normalisation.
    pub convert: f64,
    pub inference: f64,
    /// Smoothing, ranking and the threshold.
    pub decide: f64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub decided: u64,
    pub skipped: u64,
    pub dropped: u64,
}

/// Runs until the source ends, `options.frames` results are out, or `stop` is set.
pub fn run(
    source: &mut dyn FrameSource,
    classifier: &Classifier,
    options: &RunOptions,
    stop: &AtomicBool,
    mut report: impl FnMut(&Decided) -> std::io::Result<()>,
) -> Result<RunSummary> {
    let mut converter = Converter::default();
    let mut preprocessor = Preprocessor::default();
    let mut input = Vec::new();
    let mut smoother = Smoother::new(options.smooth);
    let period = options
        .max_fps
        .filter(|f| *f > 0.0)
        .map(|fps| Duration::from_secs_f64(1.0 / fps));
    let mut next_start = Instant::now();
    let mut summary = RunSummary::default();

    while !stop.load(Ordering::Relaxed) && options.frames.is_none_or(|n| summary.decided < n) {
        if let Some(period) = period {
            sleep_until(next_start, stop);
            next_start = (next_start + period).max(Instant::now());
        }
        let started = Instant::now();
        let frame = match source.next_frame()? {
            Next::Frame(frame) => frame,
            Next::Waiting => continue,
            Next::End => break,
        };
        let captured = Instant::now();
        let image = match converter.to_rgb(&frame) {
            Ok(image) => image,
            Err(e) => {
                summary.skipped += 1;
                log::warn!("{e}; skipped ({} so far)", summary.skipped);
                continue;
            }
        };
        preprocessor.tensor(image, &mut input);
        let converted = Instant::now();
        let probabilities = classifier.probabilities(&input)?;
        let inferred = Instant::now();
        let decision = decide(
            smoother.push(&probabilities),
            classifier.labels(),
            options.top,
            options.threshold,
        );
        let decided = Instant::now();
        summary.decided += 1;
        summary.dropped = source.dropped();
        let result = Decided {
            time: jiff::Timestamp::now().to_string(),
            frame: frame.sequence,
            source: &frame.origin,
            label: decision.label,
            top: decision.top,
            dropped: summary.dropped,
            skipped: summary.skipped,
            ms: StageTimes {
                capture: millis(started, captured),
                convert: millis(captured, converted),
                inference: millis(converted, inferred),
                decide: millis(inferred, decided),
            },
        };
        report(&result).map_err(|e| crate::Error::Output(e.to_string()))?;
    }
    Ok(summary)
}

fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

pub fn millis(from: Instant, to: Instant) -> f64 {
    let ms = to.duration_since(from).as_secs_f64() * 1e3;
    (ms * 1e3).round() / 1e3
}
