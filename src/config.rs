//! The one config file: everything `pinsight run` does, in one TOML file
//! (`/etc/pinsight/pinsight.toml` for the service; `board/examples/pinsight.toml` is a commented
//! one).
//!
//! ```toml
//! board = "raspberry-pi-4"  # the board profile, for [trigger] and [outputs] (crate::board)
//! [model]                   # backbone, head, engine, threads
//! [run]                     # source, mode, size, format, fps, threshold, smooth, top
//! [trigger]                 # the deployment: pins (crate::board)
//! [outputs]
//! [mqtt]                    # results to an MQTT broker (crate::net::mqtt); off without it
//! [http]                    # health, metrics, snapshot, preview (crate::net::http); off without it
//! [keep]                    # unsure frames saved for training (crate::keep); off without it
//! ```
//!
//! Every key is optional. A command-line option overrides the file's key, and what neither
//! sets takes pinsight's default ([`resolve_run`]). Paths in the file are relative to the
//! file's folder. The model's defaults are the bundled files found beside the binary
//! ([`bundled_models`]), never in the working directory. Every number has the range the
//! command line gives it ([`FPS`], [`THRESHOLD`], [`SMOOTH`], [`TOP`], [`THREADS`],
//! [`MAX_SIDE`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::board::{self, Deployment};
use crate::decode::MAX_SIDE;
use crate::frame::PixelFormat;
use crate::keep::KeepSettings;
use crate::model::Engine;
use crate::net::{HttpSettings, MqttSettings};
use crate::run::{CameraSettings, ModelFiles, RunConfig, RunMode};
use crate::{Error, Result};

/// Frames a second: 0.001 (one every 16 minutes 40 seconds) to 1000.
pub const FPS: (f64, f64) = (0.001, 1000.0);
/// The smoothed probability a label needs: 0 to 1.
pub const THRESHOLD: (f32, f32) = (0.0, 1.0);
/// Frames averaged: 1 to 100.
pub const SMOOTH: (u16, u16) = (1, 100);
/// Labels a result lists: 1 to 1000.
pub const TOP: (u16, u16) = (1, 1000);
/// Threads the int8 engine splits its layers over ([`crate::model::threads`]).
pub const THREADS: (u16, u16) = (1, crate::model::threads::MAX as u16);

/// The source when neither the command line, the config file nor its board names one.
pub const DEFAULT_CAMERA: &str = "/dev/video0";
/// The frame size asked of a camera when nothing says.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);
/// The threshold when nothing says.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
/// Labels a result lists when nothing says.
pub const DEFAULT_TOP: u16 = 3;

/// What a config file's `[model]` says, or what the command line says of the model.
#[derive(Debug, Clone, Default)]
pub struct ModelSettings {
    pub backbone: Option<PathBuf>,
    pub head: Option<PathBuf>,
    pub engine: Option<Engine>,
    pub threads: Option<u16>,
}

/// What a config file's `[run]` says, or what the command line says of the run.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub source: Option<String>,
    pub mode: Option<RunMode>,
    pub size: Option<(u32, u32)>,
    pub format: Option<PixelFormat>,
    pub fps: Option<f64>,
    pub threshold: Option<f32>,
    pub smooth: Option<u16>,
    pub top: Option<u16>,
}

/// A config file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub model: ModelSettings,
    pub run: RunSettings,
    /// The board, trigger and outputs, when the file names a board.
    pub deployment: Option<Deployment>,
    pub mqtt: Option<MqttSettings>,
    pub http: Option<HttpSettings>,
    pub keep: Option<KeepSettings>,
}

/// `[model]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    backbone: Option<PathBuf>,
    head: Option<PathBuf>,
    engine: Option<Engine>,
    threads: Option<i64>,
}

/// `[run]` as written; numbers as TOML gives them, checked in [`load`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    source: Option<String>,
    mode: Option<RunMode>,
    size: Option<String>,
    format: Option<String>,
    fps: Option<f64>,
    threshold: Option<f64>,
    smooth: Option<i64>,
    top: Option<i64>,
}

/// Reads the config file at `path`: a regular file of at most
/// [`board::MAX_CONFIG_BYTES`] of TOML, whose content no error quotes.
pub fn load(path: &Path) -> Result<ConfigFile> {
    let bad = |reason: String| Error::Config {
        path: path.into(),
        reason,
    };
    let mut table = board::read_table(path, "a config file")?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let beside = |p: PathBuf| folder.join(p);

    let model = match table.remove("model") {
        None => ModelSettings::default(),
        Some(value) => {
            let raw: RawModel = value
                .try_into()
                .map_err(|e: toml::de::Error| bad(format!("[model]: {}", e.message())))?;
            ModelSettings {
                backbone: raw.backbone.map(beside),
                head: raw.head.map(beside),
                engine: raw.engine,
                threads: raw
                    .threads
                    .map(|v| whole_within(v, THREADS))
                    .transpose()
                    .map_err(|r| bad(format!("[model] threads: {r}")))?,
            }
        }
    };
    let run = match table.remove("run") {
        None => RunSettings::default(),
        Some(value) => {
            let raw: RawRun = value
                .try_into()
                .map_err(|e: toml::de::Error| bad(format!("[run]: {}", e.message())))?;
            let key = |key: &str, reason: String| bad(format!("[run] {key}: {reason}"));
            RunSettings {
                source: raw.source.map(|source| {
                    if source.starts_with("/dev/") {
                        source
                    } else {
                        folder.join(source).to_string_lossy().into_owned()
                    }
                }),
                mode: raw.mode,
                size: raw
                    .size
                    .map(|s| parse_size(&s).map_err(|r| key("size", r)))
                    .transpose()?,
                format: raw
                    .format
                    .map(|f| parse_format(&f).map_err(|r| key("format", r)))
                    .transpose()?,
                fps: raw
                    .fps
                    .map(|v| within(v, FPS).map_err(|r| key("fps", r)))
                    .transpose()?,
                threshold: raw
                    .threshold
                    .map(|v| {
                        let range = (f64::from(THRESHOLD.0), f64::from(THRESHOLD.1));
                        within(v, range).map(|v| v as f32)
                    })
                    .transpose()
                    .map_err(|r| key("threshold", r))?,
                smooth: raw
                    .smooth
                    .map(|v| whole_within(v, SMOOTH).map_err(|r| key("smooth", r)))
                    .transpose()?,
                top: raw
                    .top
                    .map(|v| whole_within(v, TOP).map_err(|r| key("top", r)))
                    .transpose()?,
            }
        }
    };
    let mqtt = table
        .remove("mqtt")
        .map(|value| MqttSettings::from_toml(value, folder))
        .transpose()
        .map_err(bad)?;
    let http = table
        .remove("http")
        .map(HttpSettings::from_toml)
        .transpose()
        .map_err(bad)?;
    let keep = table
        .remove("keep")
        .map(|value| KeepSettings::from_toml(value, folder))
        .transpose()
        .map_err(bad)?;
    let deployment = if table.contains_key("board") {
        Some(board::from_table(path, table)?)
    } else if let Some(key) = ["trigger", "outputs", "gpio", "pins", "camera"]
        .into_iter()
        .find(|key| table.contains_key(*key))
    {
        return Err(bad(format!(
            "`{key}` needs a `board`: name one of {}",
            board::BOARDS.map(|(name, _)| name).join(", ")
        )));
    } else if let Some(key) = table.keys().next() {
        return Err(bad(format!(
            "unknown key `{key}`: a config file has `board`, [model], [run], [trigger], \
             [outputs], [mqtt], [http] and [keep] (board/README.md)"
        )));
    } else {
        None
    };
    Ok(ConfigFile {
        path: path.into(),
        model,
        run,
        deployment,
        mqtt,
        http,
        keep,
    })
}

/// `value` when it is within `range`, else why not.
pub(crate) fn within(value: f64, (least, most): (f64, f64)) -> std::result::Result<f64, String> {
    if (least..=most).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is out of range: it must be {least} to {most}"
        ))
    }
}

pub(crate) fn whole_within(
    value: i64,
    (least, most): (u16, u16),
) -> std::result::Result<u16, String> {
    match u16::try_from(value) {
        Ok(v) if (least..=most).contains(&v) => Ok(v),
        _ => Err(format!(
            "{value} is out of range: it must be {least} to {most}"
        )),
    }
}

/// A frame size like `640x480`, each side 1 to [`MAX_SIDE`] pixels.
pub fn parse_size(text: &str) -> std::result::Result<(u32, u32), String> {
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match parsed {
        Some((width, height))
            if (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height) =>
        {
            Ok((width, height))
        }
        Some(_) => Err(format!(
            "{text} is out of range: each side must be 1 to {MAX_SIDE} pixels"
        )),
        None => Err(format!("{text:?} is not a size like 640x480")),
    }
}

/// A camera pixel format by its four-letter code, in any case.
pub fn parse_format(text: &str) -> std::result::Result<PixelFormat, String> {
    let code: [u8; 4] = text
        .to_ascii_uppercase()
        .into_bytes()
        .try_into()
        .map_err(|_| format!("{text:?} is not a four-letter code"))?;
    PixelFormat::from_fourcc(&code).ok_or_else(|| {
        format!("pinsight does not read {text:?}: use YUYV, NV12, RGB3, BGR3, GREY or MJPG")
    })
}

/// The bundled backbone's path inside the models folder.
pub const BUNDLED_BACKBONE: &str = "efficientnet-lite0/backbone-int8.onnx";
/// The bundled ImageNet head's path inside the models folder.
pub const BUNDLED_HEAD: &str = "imagenet";

/// The folder of the bundled models, found from the binary's own path: installed,
/// `<prefix>/bin/pinsight` beside `<prefix>/share/pinsight/models` (`/usr/bin` and
/// `/usr/share`); built in a checkout, the `models/` folder of the repository the binary was
/// built in (`target/…/pinsight`). When neither holds the bundled backbone, the installed path,
/// for the error to name.
pub fn bundled_models() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let Some(bin) = exe.as_deref().and_then(Path::parent) else {
        return PathBuf::from("/usr/share/pinsight/models");
    };
    let installed = bin.join("../share/pinsight/models");
    let candidates = std::iter::once(installed.clone())
        .chain(bin.ancestors().map(|folder| folder.join("models")));
    for models in candidates {
        if models.join(BUNDLED_BACKBONE).is_file() {
            return clean(&models);
        }
    }
    clean(&installed)
}

/// The sample photo `pinsight bench` measures with by default: `samples/rocket.jpg` beside the
/// bundled models folder (`/usr/share/pinsight/samples/rocket.jpg` when installed, the
/// checkout's `samples/rocket.jpg` otherwise).
pub fn bundled_photo() -> PathBuf {
    let models = bundled_models();
    models
        .parent()
        .unwrap_or(&models)
        .join("samples/rocket.jpg")
}

/// `path` without `..` after a folder (`/usr/bin/../share` is `/usr/share`), for messages.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir if out.parent().is_some() => {
                out.pop();
            }
            part => out.push(part),
        }
    }
    out
}

/// The run that a command line's settings ask for: each over the config file's, over the
/// defaults. `frames` and `hold_safe` are the command line's alone.
pub fn resolve_run(
    file: Option<ConfigFile>,
    model: ModelSettings,
    run: RunSettings,
    frames: Option<u64>,
    hold_safe: Duration,
) -> RunConfig {
    let (path, file_model, file_run, deployment, mqtt, http, keep) = match file {
        Some(file) => (
            Some(file.path),
            file.model,
            file.run,
            file.deployment,
            file.mqtt,
            file.http,
            file.keep,
        ),
        None => (
            None,
            ModelSettings::default(),
            RunSettings::default(),
            None,
            None,
            None,
            None,
        ),
    };
    let (width, height) = run.size.or(file_run.size).unwrap_or(DEFAULT_SIZE);
    RunConfig {
        model: resolve_model(model, file_model),
        source: run
            .source
            .or(file_run.source)
            .or_else(|| Some(deployment.as_ref()?.camera.as_ref()?.display().to_string()))
            .unwrap_or_else(|| DEFAULT_CAMERA.into()),
        config: path,
        deployment,
        mode: run.mode.or(file_run.mode).unwrap_or(RunMode::Continuous),
        camera: CameraSettings {
            width,
            height,
            format: run.format.or(file_run.format),
        },
        frames,
        max_fps: run.fps.or(file_run.fps),
        top: run.top.or(file_run.top).unwrap_or(DEFAULT_TOP).into(),
        threshold: run
            .threshold
            .or(file_run.threshold)
            .unwrap_or(DEFAULT_THRESHOLD),
        smooth: run.smooth.or(file_run.smooth).map(usize::from),
        hold_safe,
        mqtt,
        http,
        keep,
    }
}

/// The model files: the command line's, over the config file's, over the bundled ones.
pub fn resolve_model(model: ModelSettings, file: ModelSettings) -> ModelFiles {
    let bundled = || bundled_models();
    ModelFiles {
        backbone: model
            .backbone
            .or(file.backbone)
            .unwrap_or_else(|| bundled().join(BUNDLED_BACKBONE)),
        head: model
            .head
            .or(file.head)
            .unwrap_or_else(|| bundled().join(BUNDLED_HEAD)),
        engine: model.engine.or(file.engine).unwrap_or_default(),
        threads: model
            .threads
            .or(file.threads)
            .map_or_else(crate::model::threads::available, usize::from),
    }
}

/// Checks what `config` would load, without building the model: the backbone and the head
/// against their checksums, the head against the backbone it was trained on, and the config's
/// outputs against the head's classes. Returns the head's class names.
pub fn check(config: &RunConfig) -> Result<Vec<String>> {
    let head = crate::model::head::HeadFiles::read(&config.model.head)?;
    let (_, sha256) = crate::checksum::read_verified(&config.model.backbone)?;
    head.check_backbone(&config.model.backbone, &sha256)?;
    if let (Some(deployment), Some(path)) = (&config.deployment, &config.config) {
        deployment
            .check_labels(&head.labels)
            .map_err(|reason| Error::Config {
                path: path.clone(),
                reason: format!("{reason} (head {})", config.model.head.display()),
            })?;
    }
    if let Some(mqtt) = &config.mqtt {
        let outputs = config
            .deployment
            .as_ref()
            .map(Deployment::output_classes)
            .unwrap_or_default();
        mqtt.classes_for(&head.labels, &outputs)
            .map_err(|reason| Error::Config {
                path: config.config.clone().unwrap_or_default(),
                reason: format!("{reason} (head {})", config.model.head.display()),
            })?;
    }
    Ok(head.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ConfigFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinsight.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn error(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_the_defaults() {
        let file = load_text(
            "[model]\nhead = \"heads/door\"\nengine = \"tract\"\nthreads = 3\n\
             [run]\nsource = \"/dev/video2\"\nmode = \"triggered\"\nsize = \"320x240\"\n\
             format = \"mjpg\"\nfps = 2.5\nthreshold = 0.8\nsmooth = 5\ntop = 2\n",
        )
        .unwrap();
        assert!(file.model.head.as_ref().unwrap().ends_with("heads/door"));
        assert!(file.model.head.as_ref().unwrap().is_absolute());
        let line = RunSettings {
            threshold: Some(0.25),
            size: Some((1280, 720)),
            ..RunSettings::default()
        };
        let model = ModelSettings {
            engine: Some(Engine::Int8),
            ..ModelSettings::default()
        };
        let config = resolve_run(Some(file), model, line, None, Duration::ZERO);
        assert_eq!(config.threshold, 0.25);
        assert_eq!((config.camera.width, config.camera.height), (1280, 720));
        assert_eq!(config.model.engine, Engine::Int8);
        assert_eq!(config.model.threads, 3);
        assert!(config.model.head.ends_with("heads/door"));
        assert!(config.model.backbone.ends_with(BUNDLED_BACKBONE));
        assert_eq!(config.source, "/dev/video2");
        assert_eq!(config.mode, RunMode::Triggered);
        assert_eq!(config.camera.format, Some(PixelFormat::Mjpeg));
        assert_eq!(
            (config.max_fps, config.smooth, config.top),
            (Some(2.5), Some(5), 2)
        );

        let defaults = resolve_run(
            None,
            ModelSettings::default(),
            RunSettings::default(),
            None,
            Duration::ZERO,
        );
        assert_eq!(defaults.threshold, DEFAULT_THRESHOLD);
        assert_eq!(defaults.top, usize::from(DEFAULT_TOP));
        assert_eq!(defaults.mode, RunMode::Continuous);
        assert!(defaults.deployment.is_none());
        assert_eq!(defaults.source, DEFAULT_CAMERA);
        assert_eq!(defaults.model.threads, crate::model::threads::available());
    }

    #[test]
    fn the_bundled_models_are_found_beside_the_binary_not_in_the_working_directory() {
        // The test binary lives in target/…/deps of this checkout, like a checkout's pinsight.
        let models = bundled_models();
        assert_eq!(
            models,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            "{}",
            models.display()
        );
    }

    #[test]
    fn mistakes_are_named_with_the_key_and_the_range() {
        for (text, expected) in [
            (
                "[run]\nfps = 0\n",
                "[run] fps: 0 is out of range: it must be 0.001 to 1000",
            ),
            (
                "[run]\nthreshold = 1.5\n",
                "[run] threshold: 1.5 is out of range",
            ),
            (
                "[run]\nsmooth = 1000000\n",
                "[run] smooth: 1000000 is out of range",
            ),
            (
                "[run]\ntop = -1\n",
                "[run] top: -1 is out of range: it must be 1 to 1000",
            ),
            (
                "[run]\nsize = \"0x480\"\n",
                "[run] size: 0x480 is out of range",
            ),
            (
                "[run]\nformat = \"H264\"\n",
                "[run] format: pinsight does not read",
            ),
            (
                "[run]\nmode = \"sometimes\"\n",
                "[run]: unknown variant `sometimes`",
            ),
            ("[run]\nspeed = 3\n", "[run]: unknown field `speed`"),
            (
                "[model]\nengine = \"gpu\"\n",
                "[model]: unknown variant `gpu`",
            ),
            (
                "[model]\nthreads = 0\n",
                "[model] threads: 0 is out of range",
            ),
            (
                "[model]\nthreads = 257\n",
                "[model] threads: 257 is out of range",
            ),
            ("[mqtt]\nport = 1883\n", "[mqtt]: missing field `host`"),
            (
                "[mqtt]\nhost = \"a b\"\n",
                "[mqtt] host: \"a b\" is not a host name",
            ),
            (
                "[mqtt]\nhost = \"h\"\nport = 70000\n",
                "[mqtt] port: 70000 is out of range",
            ),
            (
                "[mqtt]\nhost = \"h\"\ndevice = \"a/b\"\n",
                "[mqtt] device: \"a/b\" must be",
            ),
            (
                "[mqtt]\nhost = \"h\"\nprefix = \"home/#\"\n",
                "[mqtt] prefix: \"home/#\" is not a topic prefix",
            ),
            (
                "[mqtt]\nhost = \"h\"\npassword = \"p\"\n",
                "[mqtt] password: needs a username",
            ),
            (
                "[mqtt]\nhost = \"h\"\nca_file = \"ca.pem\"\n",
                "[mqtt] ca_file: needs tls = true",
            ),
            (
                "[mqtt]\nhost = \"h\"\nqueue = 0\n",
                "[mqtt] queue: 0 is out of range",
            ),
            (
                "[mqtt]\nhost = \"h\"\nqos = 2\n",
                "[mqtt]: unknown field `qos`",
            ),
            (
                "[http]\nlisten = \"8080\"\n",
                "[http] listen: \"8080\" is not an address and port",
            ),
            ("[http]\ntoken = \"\"\n", "[http] token: must be non-empty"),
            (
                "[http]\nstream_fps = 100\n",
                "[http] stream_fps: 100 is out of range",
            ),
            ("[trigger]\npin = 3\n", "`trigger` needs a `board`"),
            ("colour = \"red\"\n", "unknown key `colour`"),
            ("board = \"toaster\"\n", "unknown board \"toaster\""),
        ] {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn network_outputs_are_off_unless_their_sections_are_there() {
        let file = load_text("[run]\nfps = 2\n").unwrap();
        assert!(file.mqtt.is_none() && file.http.is_none());

        let file = load_text(
            "[mqtt]\nhost = \"broker.lan\"\ntls = true\nca_file = \"ca.pem\"\n\
             username = \"cam\"\npassword = \"hunter2\"\ndevice = \"door\"\n\
             [http]\nlisten = \"0.0.0.0:9000\"\ntoken = \"abc\"\n",
        )
        .unwrap();
        let mqtt = file.mqtt.clone().unwrap();
        assert_eq!((mqtt.port, mqtt.device.as_str()), (8883, "door"));
        assert!(mqtt.ca_file.as_ref().unwrap().is_absolute());
        assert_eq!(mqtt.queue, crate::net::mqtt::DEFAULT_QUEUE);
        let http = file.http.clone().unwrap();
        assert_eq!(http.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(http.stream_fps, crate::net::http::DEFAULT_STREAM_FPS);

        // `pinsight config` shows whether a secret is set, never the secret.
        let config = resolve_run(
            Some(file),
            ModelSettings::default(),
            RunSettings::default(),
            None,
            Duration::ZERO,
        );
        let printed = serde_json::to_string(&config).unwrap();
        assert!(!printed.contains("hunter2") && !printed.contains("\"abc\""));
        assert!(printed.contains("\"password\":\"(set)\""), "{printed}");

        let defaults = load_text("[http]\n").unwrap().http.unwrap();
        assert_eq!(
            defaults.listen.to_string(),
            crate::net::http::DEFAULT_LISTEN
        );
    }

    #[test]
    fn a_deployment_is_a_config_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/examples/door.toml");
        let file = load(&path).unwrap();
        let deployment = file.deployment.unwrap();
        assert_eq!(deployment.board, "raspberry-pi-4");
        assert!(deployment.trigger.is_some());
    }
}
