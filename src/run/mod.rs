//! `pinsight run` and `pinsight classify`: one pipeline from a frame source to results.
//!
//! [`run`] wires a run in the order that keeps the hardware safe: the output pins are requested
//! at their safe levels first, then the frame source is opened (a missing camera is reported
//! before the model spends time loading), then the model is loaded and the deployment's class
//! names are checked against its labels, then the loop ([`run_loop`]) runs until the source
//! ends, a frame limit or a signal; the outputs go back to their safe levels on every way out.
//! [`classify`] is the same loop over a list of image files, without pins.

pub mod enroll;
mod pipeline;
pub mod reload;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use pipeline::{
    Decided, Mode, RunOptions, RunSummary, StageTimes, TriggerReport, millis, run_loop,
};

use crate::board::{Deployment, EnrollSpec};
use crate::frame::PixelFormat;
use crate::gpio::cdev::Chip;
use crate::gpio::{self, NoOutputs, Outputs, Presses, Signals, Trigger};
use crate::keep::{KeepSettings, Keeper};
use crate::model::{Classifier, Engine, KernelSet, threads};
use crate::net::{HttpSettings, MqttSettings, Network};
use crate::scores::Guess;
use crate::source::{Camera, CameraConfig, Files, FrameSource};
use crate::{Error, Result};
use enroll::{EnrollEvent, Enrollment, Learn};
use reload::HeadWatch;

/// The model files and the engine that runs the backbone.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFiles {
    pub backbone: PathBuf,
    pub head: PathBuf,
    pub engine: Engine,
    /// Threads the int8 engine splits its layers over.
    pub threads: usize,
}

impl ModelFiles {
    /// Loads the classifier (fixing the process's thread count, [`threads::set`]) and logs
    /// how long it took and what runs it.
    pub fn load(&self) -> Result<Classifier> {
        let started = Instant::now();
        threads::set(self.threads).map_err(Error::Usage)?;
        let classifier = Classifier::load_with(&self.backbone, &self.head, self.engine)?;
        log::info!(
            "model ready in {:.0} ms ({} engine, {} kernels, {} threads)",
            started.elapsed().as_secs_f64() * 1e3,
            classifier.engine(),
            classifier.kernels().map_or("tract's", KernelSet::name),
            self.threads
        );
        Ok(classifier)
    }
}

/// What asks the loop for a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Frame after frame.
    Continuous,
    /// A burst of frames after each press of the deployment's trigger line.
    Triggered,
}

/// What to ask a camera for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CameraSettings {
    /// The driver picks the nearest size it has.
    pub width: u32,
    pub height: u32,
    /// A format to insist on, or `None` for the cheapest to convert that the camera offers.
    pub format: Option<PixelFormat>,
}

/// Everything `pinsight run` is told: the command line over the config file over the
/// defaults ([`crate::config::resolve_run`]). Serialised, it is what `pinsight config` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub model: ModelFiles,
    /// A camera (`/dev/…`), a folder, a glob pattern or a file.
    pub source: String,
    /// The config file, for messages.
    pub config: Option<PathBuf>,
    /// The board, trigger and outputs of the config file.
    pub deployment: Option<Deployment>,
    pub mode: RunMode,
    pub camera: CameraSettings,
    /// Stop after this many results.
    pub frames: Option<u64>,
    /// Classify at most this many frames a second.
    #[serde(rename = "fps")]
    pub max_fps: Option<f64>,
    /// Labels each result lists.
    pub top: usize,
    /// The smoothed probability the best class needs to be the result's label.
    pub threshold: f32,
    /// Frames averaged; `None`: 3 for a camera, 1 for files.
    pub smooth: Option<usize>,
    /// How long the outputs stay requested at their safe levels after the loop.
    #[serde(skip)]
    pub hold_safe: Duration,
    /// Results to an MQTT broker ([`crate::net::mqtt`]).
    pub mqtt: Option<MqttSettings>,
    /// The HTTP endpoint ([`crate::net::http`]).
    pub http: Option<HttpSettings>,
    /// Where frames below the threshold are kept ([`crate::keep`]).
    pub keep: Option<KeepSettings>,
}

/// Runs `pinsight run`: outputs safe, source, model, labels checked, the loop, outputs safe.
/// Each result goes to `report`. SIGINT and SIGTERM end the loop after the current frame.
///
/// With `[enroll]` in the deployment, `learner` learns the heads its buttons ask for (the
/// command line hands one in: the loop imports no training), and each round's event goes to
/// standard output as a JSON line, like the results.
pub fn run(
    config: &RunConfig,
    learner: Option<Arc<dyn Learn>>,
    report: impl FnMut(&Decided) -> io::Result<()>,
) -> Result<RunSummary> {
    let deployment = config.deployment.clone();
    let enroll_spec = deployment.as_ref().and_then(|d| d.enroll.clone());
    let trigger = match (config.mode, &deployment) {
        (RunMode::Continuous, _) => None,
        (RunMode::Triggered, Some(deployment)) => match &deployment.trigger {
            Some(trigger) => Some(trigger.clone()),
            None => {
                return Err(Error::Config {
                    path: config.config.clone().unwrap_or_default(),
                    reason: "--mode triggered needs a [trigger] in the config file".into(),
                });
            }
        },
        (RunMode::Triggered, None) => {
            return Err(Error::Usage(
                "--mode triggered needs --config with a [trigger] line".into(),
            ));
        }
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
    // The network outputs before the model, so that /healthz answers while it loads.
    let mut network = Network::start(config.http.as_ref(), config.mqtt.as_ref())?;
    let keeper = config
        .keep
        .as_ref()
        .map(|settings| Keeper::start(settings).map(Arc::new))
        .transpose()?;
    if let (Some(network), Some(keeper)) = (&network, &keeper) {
        network.hub().metrics.count_kept(keeper.counts());
    }

    let (mut source, is_camera) = open_source(&config.source, &config.camera)?;
    let classifier = match &enroll_spec {
        Some(spec) => load_taught(&config.model, spec)?,
        None => config.model.load()?,
    };
    let labels = classifier.labels();
    if let (Some(deployment), Some(path)) = (&deployment, &config.config) {
        deployment
            .check_labels(labels)
            .map_err(|reason| Error::Config {
                path: path.clone(),
                reason,
            })?;
    }
    let outputs = deployment
        .as_ref()
        .map(Deployment::output_classes)
        .unwrap_or_default();
    let mqtt_classes = config
        .mqtt
        .as_ref()
        .map(|mqtt| mqtt.classes_for(labels, &outputs))
        .transpose()
        .map_err(|reason| Error::Config {
            path: config.config.clone().unwrap_or_default(),
            reason,
        })?;
    if let Some(network) = &mut network {
        network.hub().model_loaded();
        if let Some(classes) = &mqtt_classes {
            network.start_mqtt(classes)?;
        }
    }
    let accept = {
        let deployment = deployment.clone();
        let mqtt = config.mqtt.clone();
        move |labels: &[String]| -> std::result::Result<(), String> {
            if let Some(deployment) = &deployment {
                deployment.check_labels(labels)?;
            }
            if let (Some(mqtt), Some(announced)) = (&mqtt, &mqtt_classes)
                && mqtt.classes_for(labels, &outputs)? != *announced
            {
                log::warn!(
                    "mqtt: the new head's classes are not those announced at the start; \
                     restart pinsight to announce them"
                );
            }
            Ok(())
        }
    };
    let watched = enroll_spec
        .as_ref()
        .map_or(&config.model.head, |spec| &spec.head);
    let reload = HeadWatch::start(watched, stop.clone(), Box::new(accept))?;
    let enroll = match (&enroll_spec, &chip) {
        (Some(spec), Some(chip)) => {
            let learner = learner.ok_or_else(|| {
                Error::Internal("[enroll] needs a learner, and none was given".into())
            })?;
            let mut buttons = Vec::new();
            for button in &spec.buttons {
                let line = chip.trigger(&button.line, button.bias)?;
                let trigger = Trigger::new(line, button.edge, button.debounce)?;
                buttons.push((button.class.clone(), Presses::spawn(trigger, stop.clone())));
            }
            let events =
                Box::new(|event: &EnrollEvent| print_json_line(&mut io::stdout().lock(), event));
            Some(Arc::new(Enrollment::new(spec, buttons, learner, events)))
        }
        _ => None,
    };
    let mut presses = match (&trigger, &chip) {
        (Some(spec), Some(chip)) => {
            let line = chip.trigger(&spec.line, spec.bias)?;
            let trigger = Trigger::new(line, spec.edge, spec.debounce)?;
            Some(Presses::spawn(trigger, stop.clone()))
        }
        _ => None,
    };
    let mode = match (&mut presses, &trigger) {
        (Some(presses), Some(spec)) => Mode::Triggered {
            presses,
            burst: spec.burst,
            cooldown: spec.cooldown,
        },
        _ => Mode::Continuous,
    };
    let options = RunOptions {
        frames: config.frames,
        max_fps: config.max_fps,
        top: config.top,
        threshold: config.threshold,
        smooth: config.smooth.unwrap_or(if is_camera { 3 } else { 1 }),
        notifier: crate::notify::Notifier::from_env().map(Arc::new),
        hub: network.as_ref().map(Network::hub),
        keeper: keeper.clone(),
        reload: Some(Arc::new(reload)),
        enroll,
    };
    let summary = run_loop(
        source.as_mut(),
        &classifier,
        &options,
        mode,
        &*signals,
        &stop,
        report,
    );
    if let Some(keeper) = keeper {
        let kept = keeper.finish();
        log::info!(
            "kept {} frames below the threshold in {} ({} there now, {:.1} MB), removed {} \
             older ones to stay within the budget, {} dropped while the writer was busy, {} \
             could not be written",
            kept.kept,
            keeper.folder().display(),
            kept.files,
            kept.bytes as f64 / 1e6,
            kept.removed,
            kept.dropped,
            kept.failed
        );
    }
    if let Some(network) = network {
        network.finish();
    }
    let summary = summary?;
    // The trigger thread ends on the stop flag.
    stop.store(true, Ordering::Relaxed);
    if deployment.is_some() {
        gpio::lock(&signals).make_safe();
        log::info!("outputs at their safe levels");
        std::thread::sleep(config.hold_safe);
    }
    log::info!(
        "{} results, {} frames skipped as corrupt, {} dropped for newer ones; {} new heads \
         taken, {} refused",
        summary.decided,
        summary.skipped,
        summary.dropped,
        summary.reloads,
        summary.reloads_refused
    );
    Ok(summary)
}

/// With `[enroll]`: the taught head when its folder holds one that loads, else the configured
/// head (a broken taught head is named in the log; the next one taught replaces it).
fn load_taught(model: &ModelFiles, spec: &EnrollSpec) -> Result<Classifier> {
    if spec.head.join(crate::model::head::META_FILE).exists() {
        let taught = ModelFiles {
            head: spec.head.clone(),
            ..model.clone()
        };
        match taught.load() {
            Ok(classifier) => return Ok(classifier),
            Err(e) => log::warn!(
                "{e}; running {} until a head is taught",
                model.head.display()
            ),
        }
    } else {
        log::info!(
            "no taught head in {} yet: running {} until one is",
            spec.head.display(),
            model.head.display()
        );
    }
    model.load()
}

/// The frame source `name` (a camera `/dev/…`, else image files), and whether it is a camera.
pub fn open_source(name: &str, camera: &CameraSettings) -> Result<(Box<dyn FrameSource>, bool)> {
    if !name.starts_with("/dev/") {
        return Ok((Box::new(Files::open(name)?), false));
    }
    let camera = Camera::open(CameraConfig {
        device: name.into(),
        width: camera.width,
        height: camera.height,
        format: camera.format,
    })?;
    Ok((Box::new(camera), true))
}

/// SIGINT and SIGTERM stop the run loop, which then sets the outputs safe as it returns. A
/// second signal, should the loop be stuck, sets them safe from here and ends the process.
/// The outputs are held weakly: when [`run`] returns, with or without an error, its handle is
/// the last, and dropping it sets them safe.
fn watch_signals(stop: Arc<AtomicBool>, signals: Weak<Mutex<dyn Signals>>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut incoming = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Internal(format!("cannot watch for signals: {e}")))?;
    std::thread::spawn(move || {
        for signal in incoming.forever() {
            if stop.swap(true, Ordering::Relaxed) {
                if let Some(signals) = signals.upgrade() {
                    gpio::lock(&signals).make_safe();
                }
                log::warn!("second signal {signal}: outputs set safe, exiting at once");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

/// Everything `pinsight classify` is told.
#[derive(Debug, Clone)]
pub struct ClassifyConfig {
    pub model: ModelFiles,
    /// Classified in this order.
    pub images: Vec<PathBuf>,
    /// Labels each result lists.
    pub top: usize,
}

/// Runs `pinsight classify`: the run loop over the image files, one result each, without
/// smoothing or pins. An image that cannot be read is named in the log and skipped; the others
/// are still classified, and the error at the end counts the skipped ones.
pub fn classify(
    config: &ClassifyConfig,
    report: impl FnMut(&Decided) -> io::Result<()>,
) -> Result<()> {
    let classifier = config.model.load()?;
    let mut source = Files::from_paths(config.images.clone());
    let options = RunOptions {
        frames: None,
        max_fps: None,
        top: config.top,
        threshold: 0.0,
        smooth: 1,
        notifier: None,
        hub: None,
        keeper: None,
        reload: None,
        enroll: None,
    };
    let summary = run_loop(
        &mut source,
        &classifier,
        &options,
        Mode::Continuous,
        &Mutex::new(NoOutputs),
        &AtomicBool::new(false),
        report,
    )?;
    if summary.skipped > 0 {
        return Err(Error::Unreadable {
            failed: summary.skipped,
            total: config.images.len(),
        });
    }
    Ok(())
}

/// A result (or an enrollment's event) as `pinsight run` prints it: one JSON line.
pub fn print_json_line(out: &mut impl Write, result: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, result)?;
    writeln!(out)?;
    out.flush()
}

/// A result as `pinsight classify` prints it: the path and its top labels as a table, or as
/// one JSON object a line with the time each stage took.
pub fn print_classified(out: &mut impl Write, result: &Decided, json: bool) -> io::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Classified<'a> {
            path: &'a str,
            top: &'a [Guess],
            unknown: bool,
            known_score: f32,
            ms: ClassifyTimes,
        }
        #[derive(Serialize)]
        struct ClassifyTimes {
            decode: f64,
            preprocess: f64,
            inference: f64,
        }
        let line = Classified {
            path: result.source,
            top: &result.top,
            unknown: result.unknown,
            known_score: result.known_score,
            ms: ClassifyTimes {
                decode: result.ms.decode,
                preprocess: result.ms.preprocess,
                inference: result.ms.inference,
            },
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)
    } else {
        writeln!(out, "{}", result.source)?;
        for guess in &result.top {
            writeln!(out, "  {:>6.2}%  {}", 100.0 * guess.score, guess.label)?;
        }
        if result.unknown {
            writeln!(
                out,
                "  unknown: like none of the head's classes (score {:.3}, below its threshold)",
                result.known_score
            )?;
        }
        Ok(())
    }
}
