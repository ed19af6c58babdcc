//! The loop: take the newest frame (continuously, or a burst after each press of the trigger),
//! convert it, classify it, decide, show the result on the outputs, report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use super::enroll::{EnrollEvent, Enrollment, Learned, Outcome};
use super::reload::HeadWatch;
use crate::decide::{Decision, Rules, Scores, Smoother, decide};
use crate::frame::{Converter, Frame};
use crate::gpio::{self, Presses, Signals, Wait};
use crate::keep::Keeper;
use crate::model::Classifier;
use crate::net::Hub;
use crate::notify::{Health, Notifier};
use crate::scores::Guess;
use crate::source::{FrameSource, Next};
use crate::{Result, STOP_CHECK};

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
    /// Where to tell systemd that the loop is ready and alive ([`crate::notify`]).
    pub notifier: Option<Arc<Notifier>>,
    /// The network outputs' hub ([`crate::net`]): every result, its frame, and that the
    /// source is alive.
    pub hub: Option<Arc<Hub>>,
    /// Where frames of results below the threshold are kept ([`crate::keep`]).
    pub keeper: Option<Arc<Keeper>>,
    /// The head folder to take a new head from when it changes ([`super::reload`]); the
    /// enroll head folder when enrolling.
    pub reload: Option<Arc<HeadWatch>>,
    /// Buttons that teach the head new photos ([`super::enroll`]).
    pub enroll: Option<Arc<Enrollment>>,
}

/// One decided result, as the run loop reports it (one JSON line on stdout).
#[derive(Debug, Serialize)]
pub struct Decided<'a> {
    /// When the result was decided (RFC 3339, UTC).
    pub time: String,
    /// The frame's sequence number in its source.
    pub frame: u64,
    pub source: &'a str,
    /// The best class, or null when it is below the threshold or unknown.
    pub label: Option<String>,
    /// The image looks like none of the head's classes: its known score is below the head's
    /// unknown threshold. Always false with a head that has none (the ImageNet head).
    pub unknown: bool,
    /// The head's largest logit, averaged as the probabilities are: how much the image looks
    /// like one of the head's classes.
    pub known_score: f32,
    pub top: Vec<Guess>,
    /// Frames the camera delivered before this one that were never classified (each replaced
    /// by a newer one). In continuous mode the results so far, `skipped` and `dropped` add up
    /// to `frame` + 1: every frame up to this one is accounted for.
    pub dropped: u64,
    /// Frames skipped because they could not be converted (corrupt), so far.
    pub skipped: u64,
    pub ms: StageTimes,
    /// Triggered mode: the press this result answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerReport>,
}

/// Milliseconds each stage took for this result (summed over a triggered burst). A result line
/// shows `capture`, `convert` (decoding or colour conversion, then the model's preprocessing),
/// `inference` and `decide`, each to the microsecond.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    /// Waiting for the frame.
    pub capture: f64,
    /// Decoding (an encoded frame) or colour conversion to RGB.
    pub decode: f64,
    /// Resize, crop and normalisation into the model's input.
    pub preprocess: f64,
    pub inference: f64,
    /// Smoothing, ranking and the threshold.
    pub decide: f64,
}

impl StageTimes {
    /// Decoding and preprocessing together, as a result line shows them.
    pub fn convert(&self) -> f64 {
        round_ms(self.decode + self.preprocess)
    }
}

impl Serialize for StageTimes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut times = serializer.serialize_struct("StageTimes", 4)?;
        times.serialize_field("capture", &round_ms(self.capture))?;
        times.serialize_field("convert", &self.convert())?;
        times.serialize_field("inference", &round_ms(self.inference))?;
        times.serialize_field("decide", &round_ms(self.decide))?;
        times.end()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub decided: u64,
    pub skipped: u64,
    pub dropped: u64,
    /// New heads taken while running, and those refused.
    pub reloads: u64,
    pub reloads_refused: u64,
}

/// What asks for a result.
pub enum Mode<'a> {
    /// Every frame (at most `max_fps` a second), smoothed over `smooth` frames.
    Continuous,
    /// A press of the trigger: a burst of frames captured after it, averaged into one result.
    Triggered {
        presses: &'a mut Presses,
        burst: usize,
        /// After a result, the next capture waits this long.
        cooldown: Duration,
    },
}

/// What a triggered result adds to its line.
#[derive(Debug, Serialize)]
pub struct TriggerReport {
    /// From the trigger's first edge to the outputs set.
    pub latency_ms: f64,
    /// Frames averaged into the result.
    pub burst: usize,
    /// Presses so far, and those missed because one was already pending.
    pub presses: u64,
    pub missed: u64,
}

/// Runs until the source ends, `options.frames` results are out, or `stop` is set, showing each
/// result on `signals`. The ready output rises with the first frame.
pub fn run_loop(
    source: &mut dyn FrameSource,
    classifier: &Classifier,
    options: &RunOptions,
    mode: Mode,
    signals: &Mutex<dyn Signals>,
    stop: &AtomicBool,
    report: impl FnMut(&Decided) -> std::io::Result<()>,
) -> Result<RunSummary> {
    let mut pipeline = Pipeline {
        source,
        classifier,
        options,
        signals,
        stop,
        report,
        reloaded: None,
        converter: Converter::default(),
        summary: RunSummary::default(),
        streaming: false,
        health: Health::new(options.notifier.as_deref()),
        teaching: Teaching::default(),
    };
    let ran = match mode {
        Mode::Continuous => pipeline.continuous(),
        Mode::Triggered {
            presses,
            burst,
            cooldown,
        } => pipeline.triggered(presses, burst, cooldown),
    };
    pipeline.health.stopping();
    ran?;
    Ok(pipeline.summary)
}

/// The loop's state: the stages it drives and what it has counted.
struct Pipeline<'a, R> {
    source: &'a mut dyn FrameSource,
    classifier: &'a Classifier,
    /// The head taken last while running, on the same backbone: it classifies instead.
    reloaded: Option<Classifier>,
    options: &'a RunOptions,
    signals: &'a Mutex<dyn Signals>,
    stop: &'a AtomicBool,
    report: R,
    converter: Converter,
    summary: RunSummary,
    /// A frame has come: the ready output is up.
    streaming: bool,
    /// What systemd is told.
    health: Health<'a>,
    /// Enrollment's round of learning, when one runs.
    teaching: Teaching,
}

/// Enrollment's state in the loop: the round that learns, and presses for the next. The busy
/// output is up from a press until a round ends with no press queued.
#[derive(Default)]
struct Teaching {
    /// The running round's answer, when one runs.
    running: Option<mpsc::Receiver<std::result::Result<Learned, String>>>,
    /// The presses the running round learns from.
    round: Round,
    /// Presses since the running round started: they ask for another.
    queued: Round,
}

/// The presses a round of learning answers.
#[derive(Default)]
struct Round {
    /// Class names, in press order.
    pressed: Vec<String>,
    /// Photos the presses saved.
    saved: usize,
    first_press: Option<Instant>,
}

/// A classified frame.
struct Classified {
    frame: Frame,
    probabilities: Vec<f32>,
    known_score: f32,
}

/// Probabilities and known scores averaged over a window of frames.
struct Average {
    probabilities: Smoother,
    known_score: Smoother,
}

impl Average {
    fn new(window: usize) -> Average {
        Average {
            probabilities: Smoother::new(window),
            known_score: Smoother::new(window),
        }
    }

    fn push(&mut self, classified: &Classified) {
        self.probabilities.push(&classified.probabilities);
        self.known_score.push(&[classified.known_score]);
    }

    fn scores(&self) -> Scores<'_> {
        Scores {
            probabilities: self.probabilities.mean(),
            known_score: self.known_score.mean()[0],
        }
    }

    fn clear(&mut self) {
        self.probabilities.clear();
        self.known_score.clear();
    }
}

impl<R: FnMut(&Decided) -> std::io::Result<()>> Pipeline<'_, R> {
    fn continuous(&mut self) -> Result<()> {
        let mut smoother = Average::new(self.options.smooth);
        let period = self
            .options
            .max_fps
            .filter(|f| *f > 0.0)
            .map(|fps| Duration::from_secs_f64(1.0 / fps));
        let mut next_start = Instant::now();
        while !self.done() {
            // Pulses end first: a head taken below restarts its pulse only once it has ended.
            self.poll_pulses()?;
            // Enrollment first: a head it takes clears a reload the watch asked for on seeing
            // the same head written (loading it twice).
            if self.enroll_step()? | self.reload_if_asked()? {
                smoother.clear();
            }
            if let Some(period) = period {
                self.sleep_until(next_start);
                next_start = (next_start + period).max(Instant::now());
            }
            self.poll_pulses()?;
            let mut ms = StageTimes::default();
            let Some(classified) = self.next_classified(None, &mut ms)? else {
                break;
            };
            let started = Instant::now();
            smoother.push(&classified);
            let decision = self.decide(smoother.scores());
            gpio::lock(self.signals).show(&decision, Instant::now())?;
            ms.decide = millis(started, Instant::now());
            self.emit(&classified.frame, decision, ms, None)?;
        }
        Ok(())
    }

    fn triggered(&mut self, presses: &mut Presses, burst: usize, cooldown: Duration) -> Result<()> {
        // Ready once the camera streams: wait for its first frame.
        if self.next_frame(None, &mut StageTimes::default())?.is_none() {
            return Ok(());
        }
        // A burst's probabilities are averaged: a window as long as the burst, emptied for each
        // press.
        let mut average = Average::new(burst);
        while !self.done() {
            self.poll_pulses()?;
            self.enroll_step()?;
            self.reload_if_asked()?;
            let timeout = self.poll_pulses()?.min(STOP_CHECK);
            let press = match presses.wait(timeout)? {
                Wait::Press(press) => press,
                Wait::Timeout => {
                    self.waiting(Instant::now());
                    continue;
                }
                Wait::Stopped => break,
            };
            gpio::lock(self.signals).set_busy(true, Instant::now())?;
            log::info!("trigger pressed: capturing {burst} frames");
            let mut ms = StageTimes::default();
            let mut last = None;
            let mut frames = 0;
            average.clear();
            while frames < burst {
                let Some(classified) = self.next_classified(Some(press.at), &mut ms)? else {
                    break;
                };
                average.push(&classified);
                frames += 1;
                last = Some(classified.frame);
                self.poll_pulses()?;
            }
            let Some(frame) = last else {
                gpio::lock(self.signals).set_busy(self.learning(), Instant::now())?;
                break;
            };
            let started = Instant::now();
            let decision = self.decide(average.scores());
            let shown = {
                let mut signals = gpio::lock(self.signals);
                signals.show(&decision, Instant::now())?;
                let shown = Instant::now();
                signals.set_busy(self.learning(), shown)?;
                shown
            };
            ms.decide = millis(started, shown);
            let counts = presses.counts();
            let trigger = TriggerReport {
                latency_ms: millis(press.at, shown),
                burst: frames,
                presses: counts.seen.load(Ordering::Relaxed),
                missed: counts.missed.load(Ordering::Relaxed),
            };
            self.emit(&frame, decision, ms, Some(trigger))?;
            let cooled = Instant::now() + cooldown;
            while !self.stop.load(Ordering::Relaxed) && Instant::now() < cooled {
                let until = self.poll_pulses()?.min(cooled - Instant::now());
                std::thread::sleep(until.min(STOP_CHECK));
                self.waiting(Instant::now());
            }
        }
        Ok(())
    }

    /// The decision on `scores` by the head in use.
    fn decide(&self, scores: Scores) -> Decision {
        let classifier = self.classifier();
        let rules = Rules {
            top: self.options.top,
            threshold: self.options.threshold,
            unknown_below: classifier.unknown_threshold(),
        };
        decide(scores, classifier.labels(), rules)
    }

    /// The classifier in use: the head taken last, else the one the run started with.
    fn classifier(&self) -> &Classifier {
        self.reloaded.as_ref().unwrap_or(self.classifier)
    }

    /// Takes the head in the watched folder if a reload was asked for. True when a new head
    /// was taken.
    fn reload_if_asked(&mut self) -> Result<bool> {
        match &self.options.reload {
            Some(watch) if watch.take() => Ok(self.take_head()?.is_ok()),
            _ => Ok(false),
        }
    }

    /// Takes the head in the watched folder: loaded on the running backbone with every check
    /// of a start, then in use (the taught output pulses), or refused (logged and counted)
    /// keeping the running head. The milliseconds it took, or why it was refused.
    fn take_head(&mut self) -> Result<std::result::Result<f64, String>> {
        let Some(watch) = &self.options.reload else {
            return Ok(Err("no head folder is watched".into()));
        };
        let started = Instant::now();
        // The folder as it is now is what is loaded: a reload the watch asked for meanwhile
        // would load it again.
        watch.mark_seen();
        watch.take();
        let backbone = self.classifier().backbone().clone();
        let loaded = Classifier::with_backbone(backbone, &watch.head).and_then(|classifier| {
            watch
                .accept(classifier.labels())
                .map_err(|reason| crate::Error::BadHead {
                    dir: watch.head.clone(),
                    reason,
                })?;
            Ok(classifier)
        });
        match loaded {
            Ok(classifier) => {
                let ms = millis(started, Instant::now());
                log::info!(
                    "new head from {} in {ms:.0} ms: {} classes (was {})",
                    watch.head.display(),
                    classifier.labels().len(),
                    self.classifier().labels().len()
                );
                self.reloaded = Some(classifier);
                self.summary.reloads += 1;
                gpio::lock(self.signals).taught(Instant::now())?;
                Ok(Ok(ms))
            }
            Err(e) => {
                log::warn!("{e}; the running head stays");
                self.summary.reloads_refused += 1;
                Ok(Err(e.to_string()))
            }
        }
    }

    /// Whether enrollment is learning a head (the busy output stays up meanwhile).
    fn learning(&self) -> bool {
        self.teaching.running.is_some()
    }

    /// Enrollment between two frames: each waiting press saves its burst of photos and asks
    /// for a round of learning; a finished round's head is taken in. True when a new head
    /// was taken.
    fn enroll_step(&mut self) -> Result<bool> {
        let Some(enroll) = self.options.enroll.clone() else {
            return Ok(false);
        };
        while let Some((class, press)) = enroll.pressed()? {
            gpio::lock(self.signals).set_busy(true, Instant::now())?;
            let saved = self.save_burst(&enroll, &class, press.at)?;
            log::info!("enroll: saved {saved} photos of {class:?}");
            let queued = &mut self.teaching.queued;
            queued.pressed.push(class);
            queued.saved += saved;
            queued.first_press.get_or_insert(press.at);
        }
        let mut swapped = false;
        if let Some(running) = &self.teaching.running {
            let answer = match running.try_recv() {
                Ok(answer) => Some(answer),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => Some(Err("the learner panicked".into())),
            };
            if let Some(answer) = answer {
                self.teaching.running = None;
                swapped = self.finish_round(&enroll, answer)?;
                if self.teaching.queued.pressed.is_empty() {
                    gpio::lock(self.signals).set_busy(false, Instant::now())?;
                }
            }
        }
        if self.teaching.running.is_none() && !self.teaching.queued.pressed.is_empty() {
            self.start_round(&enroll);
        }
        Ok(swapped)
    }

    /// Saves `enroll.burst` frames captured after `after`, `enroll.every` apart, as photos of
    /// `class`. A frame that cannot be converted or saved is logged and skipped. Returns the
    /// photos saved.
    fn save_burst(&mut self, enroll: &Enrollment, class: &str, after: Instant) -> Result<usize> {
        let dir = enroll.photos.join(class);
        if let Err(e) = crate::durable::create_dir_all(&dir) {
            log::warn!("enroll: cannot make {}: {e}", dir.display());
            return Ok(0);
        }
        let mut saved = 0;
        let mut next = after;
        while saved < enroll.burst && !self.stop.load(Ordering::Relaxed) {
            self.sleep_until(next);
            let Some(frame) = self.next_frame(Some(next), &mut StageTimes::default())? else {
                break;
            };
            next = Instant::now() + enroll.every;
            let image = match self.converter.to_rgb(&frame) {
                Ok(image) => image,
                Err(e) => {
                    self.skip(&e);
                    continue;
                }
            };
            let name = crate::keep::photo_name(frame.sequence);
            match crate::keep::save_photo(&dir, &name, image) {
                Ok(_) => saved += 1,
                Err(e) => log::warn!("enroll: cannot save a photo in {}: {e}", dir.display()),
            }
        }
        Ok(saved)
    }

    /// Starts a round of learning on a thread of its own, for the presses queued.
    fn start_round(&mut self, enroll: &Enrollment) {
        let teaching = &mut self.teaching;
        teaching.round = std::mem::take(&mut teaching.queued);
        let (sender, receiver) = mpsc::channel();
        let learner = enroll.learner.clone();
        std::thread::spawn(move || {
            let _ = sender.send(learner.learn());
        });
        teaching.running = Some(receiver);
        log::info!("enroll: learning from {:?}", enroll.photos);
    }

    /// Ends a round: takes the new head in when one was written, and reports the round.
    fn finish_round(
        &mut self,
        enroll: &Enrollment,
        answer: std::result::Result<Learned, String>,
    ) -> Result<bool> {
        let round = std::mem::take(&mut self.teaching.round);
        let mut event = EnrollEvent {
            event: "enrolled",
            time: String::new(),
            pressed: round.pressed,
            saved: round.saved,
            outcome: Outcome::Failed,
            reason: None,
            photos: Default::default(),
            train_ms: None,
            swap_ms: None,
            press_to_swap_ms: None,
        };
        match answer {
            Err(reason) => {
                log::warn!("enroll: learning failed, the head in use stays: {reason}");
                event.reason = Some(reason);
            }
            Ok(learned) if !learned.too_few.is_empty() => {
                let reason = format!(
                    "too few photos yet of {} (a head is learnt once every class has enough)",
                    learned.too_few.join(", ")
                );
                log::info!("enroll: {reason}");
                event.outcome = Outcome::TooFew;
                event.reason = Some(reason);
                event.photos = learned.photos;
            }
            Ok(learned) => {
                event.photos = learned.photos;
                event.train_ms = Some(round_ms(learned.train_ms));
                match self.take_head()? {
                    Ok(ms) => {
                        event.outcome = Outcome::Swapped;
                        event.swap_ms = Some(round_ms(ms));
                        event.press_to_swap_ms = round
                            .first_press
                            .map(|at| round_ms(millis(at, Instant::now())));
                    }
                    Err(reason) => {
                        event.outcome = Outcome::Refused;
                        event.reason = Some(reason);
                    }
                }
            }
        }
        event.time = jiff::Timestamp::now().to_string();
        enroll
            .report(&event)
            .map_err(|e| crate::Error::Output(e.to_string()))?;
        Ok(event.outcome == Outcome::Swapped)
    }

    /// Sleeps until `deadline` or a stop, telling systemd the loop is alive while its source
    /// is.
    fn sleep_until(&mut self, deadline: Instant) {
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            self.waiting(now);
            std::thread::sleep((deadline - now).min(STOP_CHECK));
        }
    }

    /// While the loop waits (for a press, a cooldown, the next frame at `fps`): tells systemd
    /// and the hub that it is alive as long as the source still captures.
    fn waiting(&mut self, now: Instant) {
        let last_capture = self.source.last_capture();
        self.health.waiting(now, last_capture);
        if let (Some(hub), Some(at)) = (&self.options.hub, last_capture) {
            hub.frame_seen(at);
        }
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .options
                .frames
                .is_some_and(|n| self.summary.decided >= n)
    }

    /// Ends due pulses; returns the time until the next one ends (or a long wait).
    fn poll_pulses(&mut self) -> Result<Duration> {
        let now = Instant::now();
        let next = gpio::lock(self.signals).poll(now)?;
        Ok(next.map_or(Duration::MAX, |end| end.saturating_duration_since(now)))
    }

    /// The next frame captured at or after `after`, converted and classified; corrupt frames
    /// are skipped and counted. None when the source ends or a stop is requested.
    fn next_classified(
        &mut self,
        after: Option<Instant>,
        ms: &mut StageTimes,
    ) -> Result<Option<Classified>> {
        while let Some(frame) = self.next_frame(after, ms)? {
            let started = Instant::now();
            let image = match self.converter.to_rgb(&frame) {
                Ok(image) => image,
                Err(e) => {
                    self.skip(&e);
                    continue;
                }
            };
            ms.decode += millis(started, Instant::now());
            // The fields apart: the converter's image is borrowed meanwhile.
            let classifier = self.reloaded.as_ref().unwrap_or(self.classifier);
            let classification = classifier.classify(image)?;
            ms.preprocess += round_ms(classification.preprocess_ms);
            ms.inference += round_ms(classification.inference_ms);
            return Ok(Some(Classified {
                frame,
                probabilities: classification.probabilities,
                known_score: classification.known_score,
            }));
        }
        Ok(None)
    }

    /// Counts and logs a frame that could not be had or converted.
    fn skip(&mut self, why: &dyn std::fmt::Display) {
        self.summary.skipped += 1;
        log::warn!("{why}; skipped ({} so far)", self.summary.skipped);
    }

    /// The next frame captured at or after `after`; the first one raises the ready output.
    fn next_frame(&mut self, after: Option<Instant>, ms: &mut StageTimes) -> Result<Option<Frame>> {
        let started = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            match self.source.next_frame()? {
                Next::Frame(frame) if after.is_some_and(|after| frame.captured_at < after) => {}
                Next::Frame(frame) => {
                    if !self.streaming {
                        self.streaming = true;
                        gpio::lock(self.signals).set_ready(true, Instant::now())?;
                        self.health.ready();
                    }
                    if let Some(hub) = &self.options.hub {
                        hub.frame_seen(frame.captured_at);
                    }
                    ms.capture += millis(started, Instant::now());
                    return Ok(Some(frame));
                }
                Next::Skipped(why) => self.skip(&why),
                Next::Waiting => {}
                Next::End => break,
            }
        }
        Ok(None)
    }

    fn emit(
        &mut self,
        frame: &Frame,
        decision: Decision,
        ms: StageTimes,
        trigger: Option<TriggerReport>,
    ) -> Result<()> {
        self.summary.decided += 1;
        self.summary.dropped = self.source.dropped();
        self.health.result(
            Instant::now(),
            decision.label.as_deref(),
            self.summary.decided,
        );
        let frames = trigger.as_ref().map_or(1, |trigger| trigger.burst as u64);
        let result = Decided {
            time: jiff::Timestamp::now().to_string(),
            frame: frame.sequence,
            source: &frame.origin,
            label: decision.label,
            unknown: decision.unknown,
            known_score: decision.known_score,
            top: decision.top,
            dropped: self.summary.dropped,
            skipped: self.summary.skipped,
            ms,
            trigger,
        };
        if let Some(hub) = &self.options.hub {
            hub.result(&result, frames, self.converter.rgb());
        }
        if let (Some(keeper), None, Some(best)) =
            (&self.options.keeper, &result.label, result.top.first())
        {
            keeper.offer(&best.label, frame.sequence, self.converter.rgb());
        }
        (self.report)(&result).map_err(|e| crate::Error::Output(e.to_string()))
    }
}

/// Milliseconds from `from` to `to`, to the microsecond.
pub fn millis(from: Instant, to: Instant) -> f64 {
    round_ms(to.duration_since(from).as_secs_f64() * 1e3)
}

fn round_ms(ms: f64) -> f64 {
    (ms * 1e3).round() / 1e3
}
