//! Board profiles and deployment configs: which gpiochip, which lines, what each line does.
//!
//! A board profile (`board/<name>.toml`, built into the binary) names the gpiochip that carries
//! the 40-pin header by its label, how many lines it has, the header's pins by name and the
//! default camera. A deployment config names a board and is laid over its profile key by key, so
//! it can override anything the profile says; it adds the trigger and the outputs. [`load`] reads
//! both, resolves every pin name to a line offset and refuses what cannot work (an unknown
//! board, a line the chip does not have, a line used twice) with the file and the reason.
//!
//! A config and a board file are read only when each is a regular file of at most
//! [`MAX_CONFIG_BYTES`] (`board = "/dev/zero"` is refused at once), and an error about either
//! never quotes its lines: a file that is not a pinsight config (`board = "/etc/passwd"`) may
//! hold what the user of the error message should not see. A syntax error gives the line, the
//! column and what was wrong there.
//!
//! Every number has a range ([`LIMITS`], listed in board/README.md); a value outside it is
//! refused with the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The profiles built into pinsight, by name (the file's name without `.toml`).
pub const BOARDS: [(&str, &str); 5] = [
    (
        "raspberry-pi-4",
        include_str!("../board/raspberry-pi-4.toml"),
    ),
    (
        "raspberry-pi-5",
        include_str!("../board/raspberry-pi-5.toml"),
    ),
    ("jetson-nano", include_str!("../board/jetson-nano.toml")),
    (
        "jetson-orin-nano",
        include_str!("../board/jetson-orin-nano.toml"),
    ),
    ("generic", include_str!("../board/generic.toml")),
];

/// The largest deployment config or board file pinsight reads: 64 KiB (the bundled profiles
/// are under 4 KiB).
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// A gpiochip's most lines: `[gpio] lines` is at most this, and a line offset below it.
pub const MAX_LINES: u32 = 4096;

/// The range of each number in a config: (key, least, most, unit). Milliseconds stay below
/// what a `Duration` or a timer can hold with room to spare.
pub const LIMITS: [(&str, u64, u64, &str); 10] = [
    ("gpio.lines", 1, MAX_LINES as u64, "lines"),
    ("trigger.debounce_ms", 0, 10_000, "ms"),
    ("trigger.burst", 1, 100, "frames"),
    ("trigger.cooldown_ms", 0, 3_600_000, "ms"),
    ("enroll.debounce_ms", 0, 10_000, "ms"),
    ("enroll.burst", 1, 100, "frames"),
    ("enroll.every_ms", 0, 60_000, "ms"),
    ("enroll.min_photos", 2, 10_000, "photos"),
    ("outputs pulse_ms", 1, 600_000, "ms"),
    ("pin line offsets", 0, MAX_LINES as u64 - 1, ""),
];

/// The range of `key` in [`LIMITS`].
fn limit(key: &str) -> (u64, u64, &'static str) {
    let (_, least, most, unit) = LIMITS
        .iter()
        .find(|(k, ..)| *k == key)
        .expect("every key checked is in LIMITS");
    (*least, *most, unit)
}

/// `value` of `key` (named `what` in the message) as a u64, when it is within `key`'s range
/// in [`LIMITS`].
fn within(what: &str, value: i64, key: &str) -> std::result::Result<u64, String> {
    let (least, most, unit) = limit(key);
    match u64::try_from(value) {
        Ok(value) if (least..=most).contains(&value) => Ok(value),
        _ => {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            Err(format!(
                "{what} = {value} is out of range: it must be {least} to {most}{unit}"
            ))
        }
    }
}

/// A deployment, resolved: every pin is a line offset on one chip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub board: String,
    /// The camera device (the board's default unless the deployment names one).
    pub camera: Option<PathBuf>,
    /// The gpiochip's label, or a path to its device (`/dev/gpiochipN`).
    pub chip: String,
    /// How many lines the chip has, when the profile says; the chip itself is asked at run time.
    pub lines: Option<u32>,
    pub trigger: Option<TriggerSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Buttons that teach the head a class (`[enroll]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll: Option<EnrollSpec>,
}

/// Teaching on the device: a button per class; a press saves a burst of frames as photos of
/// its class and trains a new head on every photo of the enroll classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollSpec {
    /// The photos, a folder per class (relative paths are the config file's folder's).
    pub photos: PathBuf,
    /// The head folder the taught head is written to; `run` uses it once it holds a head.
    pub head: PathBuf,
    /// Frames a press saves.
    pub burst: usize,
    /// Between two saved frames.
    #[serde(rename = "every_ms", with = "millis")]
    pub every: Duration,
    /// Photos each class needs before a head is trained.
    pub min_photos: usize,
    /// One button per class, in class-name order.
    pub buttons: Vec<EnrollButton>,
}

/// A button that enrolls one class: a trigger-style input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollButton {
    pub class: String,
    pub line: Line,
    pub edge: Edge,
    pub bias: Bias,
    #[serde(rename = "debounce_ms", with = "millis")]
    pub debounce: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerSpec {
    pub line: Line,
    pub edge: Edge,
    pub bias: Bias,
    #[serde(rename = "debounce_ms", with = "millis")]
    pub debounce: Duration,
    /// Frames whose probabilities are averaged into one result.
    pub burst: usize,
    /// After a result, the next capture waits this long.
    #[serde(rename = "cooldown_ms", with = "millis")]
    pub cooldown: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputSpec {
    pub role: Role,
    pub line: Line,
    /// The line is active when low.
    pub active_low: bool,
    /// The physical level at start-up and on every exit.
    pub safe_high: bool,
    pub mode: OutputMode,
}

/// A line offset on the chip and the name the config gave it (for messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub offset: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Active once the model is loaded and the camera streams.
    Ready,
    /// Active during a triggered capture.
    Busy,
    /// Active when the result is unknown: none of the head's classes.
    Unknown,
    /// Active when a new head has been taken in while running (a pulse, usually).
    Taught,
    /// Active when the result is one of `labels` with at least `threshold`.
    Match {
        labels: Vec<String>,
        threshold: Option<f32>,
    },
    /// Active when the result is this class.
    Class(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Held until the next result.
    Level,
    /// Active for this long after each result that sets it.
    Pulse(#[serde(with = "millis")] Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Rising,
    Falling,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bias {
    AsIs,
    PullUp,
    PullDown,
    Disabled,
}

/// Reads the deployment config at `path` and the board profile it names, and resolves them.
pub fn load(path: &Path) -> Result<Deployment> {
    from_table(path, read_table(path, "a deployment config")?)
}

/// Resolves a deployment read from the file at `path` (for messages, and the folder that a
/// board file's path is relative to): the board profile it names, laid under it.
pub fn from_table(path: &Path, deployment: toml::Table) -> Result<Deployment> {
    let bad = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    // A mistake in [gpio] or [pins] is the board file's unless the deployment sets them too.
    let sets_board_keys = deployment.contains_key("gpio") || deployment.contains_key("pins");
    let board_name = match deployment.get("board") {
        Some(toml::Value::String(name)) => name.clone(),
        Some(_) => return Err(bad("`board` must be a string".into())),
        None => return Err(bad(format!("no `board`: name one of {}", board_names()))),
    };
    let (board_path, mut merged) = board_profile(&board_name, path)?;
    merge(&mut merged, deployment);
    merged.remove("board");
    merged.remove("name");
    merged.remove("description");
    let raw: Raw = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    let mut deployment = resolve(&board_name, raw).map_err(|reason| Error::Config {
        path: if reason.about_board && !sets_board_keys {
            board_path
        } else {
            path.to_path_buf()
        },
        reason: reason.text,
    })?;
    if let Some(enroll) = &mut deployment.enroll {
        let folder = path.parent().unwrap_or(Path::new("."));
        enroll.photos = folder.join(&enroll.photos);
        enroll.head = folder.join(&enroll.head);
    }
    Ok(deployment)
}

/// A profile by name (built in) or by path (relative to the deployment config's folder).
fn board_profile(name: &str, config: &Path) -> Result<(PathBuf, toml::Table)> {
    if name.ends_with(".toml") || name.contains('/') {
        let path = config.parent().unwrap_or(Path::new(".")).join(name);
        let table = read_table(&path, "a board file")?;
        return Ok((path, table));
    }
    let Some((_, text)) = BOARDS.iter().find(|(known, _)| *known == name) else {
        return Err(Error::Config {
            path: config.to_path_buf(),
            reason: format!(
                "unknown board {name:?}: pinsight knows {} (or give a path to a board file)",
                board_names()
            ),
        });
    };
    let path = PathBuf::from(format!("board/{name}.toml"));
    let table = parse_table(&path, text)?;
    Ok((path, table))
}

/// Reads a TOML file (`what`: "a board file") as a table: a regular file of at most
/// [`MAX_CONFIG_BYTES`] of UTF-8, whose content no error quotes.
pub(crate) fn read_table(path: &Path, what: &str) -> Result<toml::Table> {
    let bytes = crate::decode::read_regular_file(path, MAX_CONFIG_BYTES, what)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Config {
        path: path.into(),
        reason: format!(
            "not a TOML file: it is not UTF-8 text (byte {} is not)",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_table(path, &text)
}

/// Parses `text`, from the file at `path`, as a TOML table. A syntax error names the line and
/// column and the parser's message, without the line itself (toml's own message quotes it).
fn parse_table(path: &Path, text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        });
        Error::Config {
            path: path.into(),
            reason: format!(
                "not a valid TOML file{at}: {}",
                e.message().trim_end_matches('\n')
            ),
        }
    })
}

fn board_names() -> String {
    BOARDS.map(|(name, _)| name).join(", ")
}

/// Lays `over` onto `base`: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The config as written, board and deployment merged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    camera: Option<PathBuf>,
    gpio: RawGpio,
    #[serde(default)]
    pins: BTreeMap<String, i64>,
    trigger: Option<RawTrigger>,
    #[serde(default)]
    outputs: RawOutputs,
    enroll: Option<RawEnroll>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnroll {
    photos: PathBuf,
    head: PathBuf,
    #[serde(default = "default_enroll_burst")]
    burst: i64,
    #[serde(default = "default_enroll_every_ms")]
    every_ms: i64,
    #[serde(default = "default_min_photos")]
    min_photos: i64,
    #[serde(default = "default_edge")]
    edge: Edge,
    #[serde(default = "default_bias")]
    bias: Bias,
    #[serde(default = "default_debounce_ms")]
    debounce_ms: i64,
    classes: BTreeMap<String, PinRef>,
}

fn default_enroll_burst() -> i64 {
    8
}
fn default_enroll_every_ms() -> i64 {
    250
}
fn default_min_photos() -> i64 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpio {
    chip: String,
    lines: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    pin: PinRef,
    #[serde(default = "default_edge")]
    edge: Edge,
    #[serde(default = "default_bias")]
    bias: Bias,
    #[serde(default = "default_debounce_ms")]
    debounce_ms: i64,
    #[serde(default = "default_burst")]
    burst: i64,
    #[serde(default)]
    cooldown_ms: i64,
}

fn default_edge() -> Edge {
    Edge::Rising
}
fn default_bias() -> Bias {
    Bias::AsIs
}
fn default_debounce_ms() -> i64 {
    30
}
fn default_burst() -> i64 {
    3
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputs {
    mode: Option<RawMode>,
    pulse_ms: Option<i64>,
    ready: Option<RawOutput>,
    busy: Option<RawOutput>,
    unknown: Option<RawOutput>,
    taught: Option<RawOutput>,
    #[serde(rename = "match")]
    matcher: Option<RawOutput>,
    #[serde(default)]
    classes: BTreeMap<String, RawClassOutput>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawClassOutput {
    Pin(PinRef),
    Full(RawOutput),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    pin: PinRef,
    #[serde(default)]
    active_low: bool,
    safe: Option<Level>,
    mode: Option<RawMode>,
    pulse_ms: Option<i64>,
    /// Only for `[outputs.match]`.
    labels: Option<Vec<String>>,
    /// Only for `[outputs.match]`.
    threshold: Option<f32>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Level,
    Pulse,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Low,
    High,
}

/// A pin by the board's name for it, or a line offset.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum PinRef {
    Offset(i64),
    Name(String),
}

struct Reason {
    text: String,
    /// The board profile is at fault, not the deployment.
    about_board: bool,
}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        Reason {
            text,
            about_board: false,
        }
    }
}

fn resolve(board: &str, raw: Raw) -> Result<Deployment, Reason> {
    if raw.gpio.chip.is_empty() {
        return Err(format!(
            "no gpiochip: set `[gpio] chip` to the chip's label (as `gpiodetect` shows it) \
             or its device path; board {board:?} does not name one"
        )
        .into());
    }
    let about_board = |text: String| Reason {
        text,
        about_board: true,
    };
    let lines = raw
        .gpio
        .lines
        .map(|lines| within("gpio.lines", lines, "gpio.lines").map(|l| l as u32))
        .transpose()
        .map_err(about_board)?;
    let mut pins = BTreeMap::new();
    for (name, &offset) in &raw.pins {
        let offset = within(&format!("pins.{name}"), offset, "pin line offsets")
            .map_err(about_board)? as u32;
        if let Some(lines) = lines.filter(|&lines| offset >= lines) {
            return Err(about_board(format!(
                "pin {name} is line {offset}, but the chip has {lines} lines"
            )));
        }
        pins.insert(name.clone(), offset);
    }
    let line = |pin: &PinRef, what: &str| -> Result<Line, Reason> {
        let (offset, name) = match pin {
            PinRef::Offset(offset) => {
                let offset = within(&format!("{what}.pin"), *offset, "pin line offsets")?;
                (offset as u32, format!("line {offset}"))
            }
            PinRef::Name(name) => match pins.get(name) {
                Some(&offset) => (offset, name.clone()),
                None => {
                    let known = pins.keys().map(String::as_str).collect::<Vec<_>>();
                    return Err(format!(
                        "{what}: board {board:?} has no pin {name:?} ({})",
                        if known.is_empty() {
                            "it names none; use a line offset".to_string()
                        } else {
                            format!("it has {}", known.join(", "))
                        }
                    )
                    .into());
                }
            },
        };
        if let Some(lines) = lines.filter(|&lines| offset >= lines) {
            return Err(format!(
                "{what}: {name} is out of range: the chip has lines 0 to {}",
                lines - 1
            )
            .into());
        }
        Ok(Line { offset, name })
    };

    let trigger = match &raw.trigger {
        None => None,
        Some(t) => {
            let debounce = within("trigger.debounce_ms", t.debounce_ms, "trigger.debounce_ms")?;
            let burst = within("trigger.burst", t.burst, "trigger.burst")?;
            let cooldown = within("trigger.cooldown_ms", t.cooldown_ms, "trigger.cooldown_ms")?;
            Some(TriggerSpec {
                line: line(&t.pin, "trigger")?,
                edge: t.edge,
                bias: t.bias,
                debounce: Duration::from_millis(debounce),
                burst: burst as usize,
                cooldown: Duration::from_millis(cooldown),
            })
        }
    };

    let defaults = &raw.outputs;
    let mut outputs = Vec::new();
    let mut output = |role: Role, spec: &RawOutput, what: &str| -> Result<(), Reason> {
        let is_match = matches!(role, Role::Match { .. });
        if !is_match && (spec.labels.is_some() || spec.threshold.is_some()) {
            return Err(
                format!("{what}: `labels` and `threshold` belong in [outputs.match] only").into(),
            );
        }
        // The taught output marks a moment: a pulse unless the config says otherwise.
        let usual = if role == Role::Taught {
            RawMode::Pulse
        } else {
            RawMode::Level
        };
        let mode = match spec.mode.or(defaults.mode).unwrap_or(usual) {
            RawMode::Level => OutputMode::Level,
            RawMode::Pulse => {
                let (key, ms) = match (spec.pulse_ms, defaults.pulse_ms) {
                    (Some(ms), _) => (format!("{what}.pulse_ms"), ms),
                    (None, Some(ms)) => ("outputs.pulse_ms".to_string(), ms),
                    (None, None) => (String::new(), 200),
                };
                let ms = within(&key, ms, "outputs pulse_ms")?;
                OutputMode::Pulse(Duration::from_millis(ms))
            }
        };
        outputs.push(OutputSpec {
            line: line(&spec.pin, what)?,
            active_low: spec.active_low,
            // The inactive level unless the config says otherwise.
            safe_high: match spec.safe {
                Some(Level::High) => true,
                Some(Level::Low) => false,
                None => spec.active_low,
            },
            mode,
            role,
        });
        Ok(())
    };
    if let Some(spec) = &defaults.ready {
        output(Role::Ready, spec, "outputs.ready")?;
    }
    if let Some(spec) = &defaults.busy {
        output(Role::Busy, spec, "outputs.busy")?;
    }
    if let Some(spec) = &defaults.unknown {
        output(Role::Unknown, spec, "outputs.unknown")?;
    }
    if let Some(spec) = &defaults.taught {
        output(Role::Taught, spec, "outputs.taught")?;
    }
    if let Some(spec) = &defaults.matcher {
        let labels = spec.labels.clone().unwrap_or_default();
        if labels.is_empty() {
            return Err("outputs.match: `labels` must list at least one class"
                .to_string()
                .into());
        }
        if let Some(threshold) = spec.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(
                format!("outputs.match: threshold {threshold} is not between 0 and 1").into(),
            );
        }
        let role = Role::Match {
            labels,
            threshold: spec.threshold,
        };
        output(role, spec, "outputs.match")?;
    }
    for (label, spec) in &defaults.classes {
        let what = format!("outputs.classes.{label}");
        let full;
        let spec = match spec {
            RawClassOutput::Full(spec) => spec,
            RawClassOutput::Pin(pin) => {
                full = RawOutput {
                    pin: pin.clone(),
                    active_low: false,
                    safe: None,
                    mode: None,
                    pulse_ms: None,
                    labels: None,
                    threshold: None,
                };
                &full
            }
        };
        output(Role::Class(label.clone()), spec, &what)?;
    }

    let enroll = match &raw.enroll {
        None => None,
        Some(e) => {
            if e.classes.len() < 2 {
                return Err(
                    "[enroll.classes]: a classifier needs at least two classes, one button each"
                        .to_string()
                        .into(),
                );
            }
            let debounce = within("enroll.debounce_ms", e.debounce_ms, "enroll.debounce_ms")?;
            let mut buttons = Vec::new();
            for (class, pin) in &e.classes {
                crate::train::check_new_class_name(class)
                    .map_err(|reason| format!("[enroll.classes] {class:?}: {reason}"))?;
                buttons.push(EnrollButton {
                    class: class.clone(),
                    line: line(pin, &format!("enroll.classes.{class}"))?,
                    edge: e.edge,
                    bias: e.bias,
                    debounce: Duration::from_millis(debounce),
                });
            }
            Some(EnrollSpec {
                photos: e.photos.clone(),
                head: e.head.clone(),
                burst: within("enroll.burst", e.burst, "enroll.burst")? as usize,
                every: Duration::from_millis(within(
                    "enroll.every_ms",
                    e.every_ms,
                    "enroll.every_ms",
                )?),
                min_photos: within("enroll.min_photos", e.min_photos, "enroll.min_photos")?
                    as usize,
                buttons,
            })
        }
    };

    let mut used: Vec<(&Line, String)> = Vec::new();
    let users = trigger
        .iter()
        .map(|t| (&t.line, "the trigger".to_string()))
        .chain(enroll.iter().flat_map(|e| {
            e.buttons
                .iter()
                .map(|b| (&b.line, format!("the enroll button for {:?}", b.class)))
        }))
        .chain(outputs.iter().map(|o| (&o.line, o.role.describe())));
    for (line, user) in users {
        if let Some((first, other)) = used.iter().find(|(l, _)| l.offset == line.offset) {
            return Err(format!(
                "line {} is used twice: {user} ({}) and {other} ({})",
                line.offset, line.name, first.name
            )
            .into());
        }
        used.push((line, user));
    }

    Ok(Deployment {
        board: board.to_string(),
        camera: raw.camera,
        chip: raw.gpio.chip,
        lines,
        trigger,
        outputs,
        enroll,
    })
}

impl Role {
    /// How messages name the output.
    pub fn describe(&self) -> String {
        match self {
            Role::Ready => "the ready output".into(),
            Role::Busy => "the busy output".into(),
            Role::Unknown => "the unknown output".into(),
            Role::Taught => "the taught output".into(),
            Role::Match { .. } => "the match output".into(),
            Role::Class(label) => format!("the output for {label:?}"),
        }
    }
}

impl Deployment {
    /// Refuses outputs for classes the model does not have. With `[enroll]`, the enroll
    /// classes count too: the taught head will have them.
    pub fn check_labels(&self, labels: &[String]) -> std::result::Result<(), String> {
        let taught = |label: &String| {
            self.enroll
                .as_ref()
                .is_some_and(|e| e.buttons.iter().any(|b| &b.class == label))
        };
        for output in &self.outputs {
            if let Some(unknown) = output
                .role
                .classes()
                .iter()
                .find(|l| !labels.contains(l) && !taught(l))
            {
                return Err(format!(
                    "{} names class {unknown:?}, which the head does not have{}",
                    output.role.describe(),
                    if self.enroll.is_some() {
                        " and [enroll] does not teach"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }
}

impl Deployment {
    /// The classes the outputs name, each once, in the outputs' order.
    pub fn output_classes(&self) -> Vec<String> {
        let mut classes: Vec<String> = Vec::new();
        for class in self.outputs.iter().flat_map(|output| output.role.classes()) {
            if !classes.contains(class) {
                classes.push(class.clone());
            }
        }
        classes
    }
}

impl Role {
    /// The classes this role names.
    fn classes(&self) -> &[String] {
        match self {
            Role::Class(label) => std::slice::from_ref(label),
            Role::Match { labels, .. } => labels,
            Role::Ready | Role::Busy | Role::Unknown | Role::Taught => &[],
        }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Deployment> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinsight.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn error(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    #[test]
    fn every_built_in_board_loads() {
        for (name, _) in BOARDS {
            let chip = if name == "generic" {
                "\n[gpio]\nchip = \"gpio-sim\"\n"
            } else {
                ""
            };
            let deployment = load_text(&format!("board = \"{name}\"\n{chip}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(deployment.board, name);
            assert!(!deployment.chip.is_empty());
        }
    }

    #[test]
    fn a_deployment_resolves_pins_and_overrides_the_board() {
        let deployment = load_text(
            r#"
board = "raspberry-pi-4"
camera = "/dev/video2"
[gpio]
chip = "pinctrl-test"
[trigger]
pin = "pin11"
edge = "falling"
bias = "pull-up"
debounce_ms = 25
burst = 5
cooldown_ms = 1000
[outputs]
mode = "pulse"
pulse_ms = 150
[outputs.ready]
pin = 27
[outputs.match]
pin = "GPIO22"
labels = ["dog"]
threshold = 0.8
mode = "level"
[outputs.classes]
dog = "pin29"
cat = { pin = 6, active_low = true, safe = "low" }
"#,
        )
        .unwrap();
        assert_eq!(deployment.camera, Some(PathBuf::from("/dev/video2")));
        assert_eq!(deployment.chip, "pinctrl-test");
        assert_eq!(deployment.lines, Some(58));
        let trigger = deployment.trigger.unwrap();
        assert_eq!(trigger.line.offset, 17);
        assert_eq!((trigger.edge, trigger.bias), (Edge::Falling, Bias::PullUp));
        assert_eq!(trigger.debounce, Duration::from_millis(25));
        assert_eq!((trigger.burst, trigger.cooldown.as_millis()), (5, 1000));
        let by_role = |role: &Role| {
            deployment
                .outputs
                .iter()
                .find(|o| &o.role == role)
                .unwrap()
                .clone()
        };
        let ready = by_role(&Role::Ready);
        assert_eq!(ready.line.offset, 27);
        assert_eq!(ready.mode, OutputMode::Pulse(Duration::from_millis(150)));
        let matcher = &deployment.outputs[1];
        assert_eq!(matcher.line.offset, 22);
        assert_eq!(matcher.mode, OutputMode::Level);
        assert_eq!(
            matcher.role,
            Role::Match {
                labels: vec!["dog".into()],
                threshold: Some(0.8)
            }
        );
        let dog = by_role(&Role::Class("dog".into()));
        assert_eq!(
            (dog.line.offset, dog.active_low, dog.safe_high),
            (5, false, false)
        );
        let cat = by_role(&Role::Class("cat".into()));
        assert_eq!(
            (cat.line.offset, cat.active_low, cat.safe_high),
            (6, true, false)
        );
    }

    #[test]
    fn the_taught_output_pulses_and_the_unknown_output_holds_unless_told() {
        let deployment = load_text(
            "board = \"raspberry-pi-4\"\n[outputs.unknown]\npin = \"pin12\"\n\
             [outputs.taught]\npin = \"pin29\"\n",
        )
        .unwrap();
        let modes: Vec<_> = deployment
            .outputs
            .iter()
            .map(|o| (o.role.clone(), o.line.offset, o.mode))
            .collect();
        assert_eq!(
            modes,
            [
                (Role::Unknown, 18, OutputMode::Level),
                (
                    Role::Taught,
                    5,
                    OutputMode::Pulse(Duration::from_millis(200))
                )
            ]
        );
    }

    #[test]
    fn an_active_low_output_is_safe_high_unless_told() {
        let deployment =
            load_text("board = \"raspberry-pi-4\"\n[outputs.ready]\npin = 5\nactive_low = true\n")
                .unwrap();
        assert!(deployment.outputs[0].safe_high);
    }

    #[test]
    fn an_unknown_board_is_refused_with_the_known_ones() {
        let message = error("board = \"raspberry-pi-9\"\n");
        assert!(
            message.contains("unknown board \"raspberry-pi-9\""),
            "{message}"
        );
        assert!(message.contains("raspberry-pi-5"), "{message}");
        assert!(message.contains("pinsight.toml"), "{message}");
    }

    #[test]
    fn a_line_out_of_range_is_refused() {
        let message = error("board = \"raspberry-pi-4\"\n[outputs.ready]\npin = 58\n");
        assert!(message.contains("outputs.ready"), "{message}");
        assert!(message.contains("out of range"), "{message}");
        assert!(message.contains("0 to 57"), "{message}");
    }

    #[test]
    fn a_pin_used_twice_is_refused() {
        let message = error(
            "board = \"raspberry-pi-4\"\n[trigger]\npin = \"pin11\"\n\
             [outputs.classes]\ndog = \"GPIO17\"\n",
        );
        assert!(message.contains("line 17 is used twice"), "{message}");
        assert!(message.contains("the trigger"), "{message}");
        assert!(message.contains("\"dog\""), "{message}");
    }

    #[test]
    fn mistakes_in_the_config_are_named() {
        let message = error("board = \"raspberry-pi-4\"\n[trigger]\npin = \"pin99\"\n");
        assert!(message.contains("no pin \"pin99\""), "{message}");
        let message = error("board = \"raspberry-pi-4\"\n[trigger]\npin = 4\nedge = \"up\"\n");
        assert!(message.contains("unknown variant `up`"), "{message}");
        let message = error("board = \"raspberry-pi-4\"\n[trigger]\npin = 4\ndebounce = 3\n");
        assert!(message.contains("unknown field `debounce`"), "{message}");
        let message = error("board = \"generic\"\n");
        assert!(message.contains("no gpiochip"), "{message}");
        let message = error("[gpio]\nchip = \"x\"\n");
        assert!(message.contains("no `board`"), "{message}");
        let message =
            error("board = \"raspberry-pi-4\"\n[outputs.ready]\npin = 4\nlabels = [\"a\"]\n");
        assert!(message.contains("[outputs.match] only"), "{message}");
    }

    #[test]
    fn outputs_must_name_the_heads_classes() {
        let deployment =
            load_text("board = \"raspberry-pi-4\"\n[outputs.classes]\nwolf = 5\n").unwrap();
        let labels = ["dog".to_string(), "cat".to_string()];
        let message = deployment.check_labels(&labels).unwrap_err();
        assert!(message.contains("\"wolf\""), "{message}");
    }

    #[test]
    fn a_board_file_by_path_is_checked_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "name = \"mine\"\n[gpio]\nchip = \"c\"\nlines = 8\n[pins]\nled = 9\n",
        )
        .unwrap();
        let path = dir.path().join("pinsight.toml");
        std::fs::write(&path, "board = \"mine.toml\"\n").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("mine.toml"), "{message}");
        assert!(message.contains("pin led is line 9"), "{message}");
    }
}
