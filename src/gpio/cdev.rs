//! Concrete pins on a Linux gpiochip character device.
//!
//! Outputs are linux-embedded-hal's [`CdevPin`] (GPIO uAPI v1 through gpio-cdev): setting a
//! level is all they need. The trigger line is requested through the v2 uAPI (the `gpiocdev`
//! crate), which v1 cannot match for an input: it sets the line's bias (a button's pull-up),
//! and its edge events carry sequence numbers, so events lost to a full kernel queue are seen
//! and counted rather than silently missing. On a kernel older than 5.10 (JetPack 4) gpiocdev
//! falls back to v1: edges still come as events, without those two. [`TriggerLine`] puts the
//! request behind embedded-hal's [`InputPin`] and pinsight's [`EdgeWait`].

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin};
use gpiocdev::line::{EdgeDetection, Value};
use linux_embedded_hal::CdevPin;
use linux_embedded_hal::gpio_cdev::{self, LineRequestFlags};

use super::EdgeWait;
use crate::board::{Bias, Deployment, Line, OutputSpec};
use crate::{Error, Result};

/// What pinsight's line requests are called in `gpioinfo`.
const CONSUMER: &str = "pinsight";

/// The deployment's gpiochip: found by its label (or given as a device path) and checked to
/// have every line the deployment uses.
pub struct Chip {
    pub path: PathBuf,
    pub label: String,
    pub lines: u32,
}

impl Chip {
    pub fn find(deployment: &Deployment) -> Result<Chip> {
        let chip = if deployment.chip.starts_with('/') {
            let path = PathBuf::from(&deployment.chip);
            let info = chip_info(&path)?;
            Chip {
                path,
                label: info.label,
                lines: info.num_lines,
            }
        } else {
            by_label(&deployment.chip)?
        };
        let used = deployment
            .trigger
            .iter()
            .map(|t| &t.line)
            .chain(deployment.outputs.iter().map(|o| &o.line));
        for line in used {
            if line.offset >= chip.lines {
                return Err(Error::Gpio {
                    what: format!("{} ({})", chip.path.display(), chip.label),
                    reason: format!(
                        "{} is line {}, but the chip has {} lines",
                        line.name, line.offset, chip.lines
                    ),
                });
            }
        }
        log::info!(
            "gpiochip {} is {} ({} lines)",
            chip.label,
            chip.path.display(),
            chip.lines
        );
        Ok(chip)
    }

    /// Requests an output line, driven to its safe level from the first instant.
    pub fn output(&self, spec: &OutputSpec) -> Result<CdevPin> {
        let failed = |e: gpio_cdev::Error| self.line_error(&spec.line, e.to_string());
        let mut chip = gpio_cdev::Chip::new(&self.path).map_err(failed)?;
        let handle = chip
            .get_line(spec.line.offset)
            .and_then(|line| {
                line.request(LineRequestFlags::OUTPUT, u8::from(spec.safe_high), CONSUMER)
            })
            .map_err(failed)?;
        CdevPin::new(handle).map_err(failed)
    }

    /// Requests a trigger-style line (the trigger, an enroll button) as an input with edge
    /// events on both edges (the debounce needs to see the line go back as well as come).
    pub fn trigger(&self, line: &Line, bias: Bias) -> Result<TriggerLine> {
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&self.path)
            .with_consumer(CONSUMER)
            .with_line(line.offset)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges);
        let bias = match bias {
            Bias::AsIs => None,
            Bias::PullUp => Some(gpiocdev::line::Bias::PullUp),
            Bias::PullDown => Some(gpiocdev::line::Bias::PullDown),
            Bias::Disabled => Some(gpiocdev::line::Bias::Disabled),
        };
        builder.with_bias(bias);
        let request = builder
            .request()
            .map_err(|e| self.line_error(line, e.to_string()))?;
        Ok(TriggerLine {
            request,
            offset: line.offset,
            next_seqno: None,
            lost: 0,
        })
    }

    fn line_error(&self, line: &Line, reason: String) -> Error {
        Error::Gpio {
            what: format!(
                "{} line {} ({}) on {}",
                self.label,
                line.offset,
                line.name,
                self.path.display()
            ),
            reason: if reason.contains("busy") {
                format!("{reason}: another program holds the line (`gpioinfo` names it)")
            } else {
                reason
            },
        }
    }
}

fn by_label(label: &str) -> Result<Chip> {
    let paths = gpiocdev::chip::chips().map_err(|e| Error::Gpio {
        what: "/dev".into(),
        reason: format!("cannot list gpiochips: {e}"),
    })?;
    let mut found = Vec::new();
    let mut denied = None;
    for path in paths {
        let info = match chip_info(&path) {
            Ok(info) => info,
            // The chip may be this one: say so if no other chip has the label.
            Err(e @ Error::GpioPermission { .. }) => {
                denied.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if info.label == label {
            return Ok(Chip {
                path,
                label: info.label,
                lines: info.num_lines,
            });
        }
        found.push(format!("{} ({})", info.label, path.display()));
    }
    if let Some(denied) = denied {
        return Err(denied);
    }
    Err(Error::Gpio {
        what: format!("gpiochip {label:?}"),
        reason: if found.is_empty() {
            "this machine has no gpiochips (/dev/gpiochip*)".into()
        } else {
            format!(
                "no chip has that label; this machine has {}: set `[gpio] chip` in the \
                 deployment config",
                found.join(", ")
            )
        },
    })
}

fn chip_info(path: &Path) -> Result<gpiocdev::chip::Info> {
    // Open it ourselves first, for an error that says what to do when it is denied.
    if let Err(e) = OpenOptions::new().read(true).write(true).open(path) {
        return Err(match e.kind() {
            io::ErrorKind::PermissionDenied => Error::GpioPermission {
                device: path.to_path_buf(),
            },
            _ => Error::Gpio {
                what: path.display().to_string(),
                reason: e.to_string(),
            },
        });
    }
    gpiocdev::chip::Chip::from_path(path)
        .and_then(|chip| chip.info())
        .map_err(|e| Error::Gpio {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The trigger line: a v2 line request with edge events, as an embedded-hal input pin.
pub struct TriggerLine {
    request: gpiocdev::Request,
    offset: u32,
    next_seqno: Option<u32>,
    /// Edge events the kernel dropped because its queue was full.
    lost: u64,
}

/// gpiocdev's error, as embedded-hal wants it.
#[derive(Debug)]
pub struct LineError(pub gpiocdev::Error);

impl embedded_hal::digital::Error for LineError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl ErrorType for TriggerLine {
    type Error = LineError;
}

impl InputPin for TriggerLine {
    fn is_high(&mut self) -> Result<bool, LineError> {
        // Requested without the active-low flag, so active is high.
        Ok(self.request.value(self.offset).map_err(LineError)? == Value::Active)
    }

    fn is_low(&mut self) -> Result<bool, LineError> {
        self.is_high().map(|high| !high)
    }
}

impl EdgeWait for TriggerLine {
    fn wait_for_edge(&mut self, timeout: Duration) -> Result<bool, LineError> {
        if !self.request.wait_edge_event(timeout).map_err(LineError)? {
            return Ok(false);
        }
        while self.request.has_edge_event().map_err(LineError)? {
            let event = self.request.read_edge_event().map_err(LineError)?;
            if let Some(expected) = self.next_seqno.filter(|&n| event.seqno > n) {
                self.lost += u64::from(event.seqno - expected);
                log::warn!(
                    "the kernel dropped {} trigger edges ({} so far): its event queue was full",
                    event.seqno - expected,
                    self.lost
                );
            }
            self.next_seqno = Some(event.seqno.wrapping_add(1));
        }
        Ok(true)
    }
}
