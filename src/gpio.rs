//! GPIO: output lines that show results, and a trigger line that asks for a capture.
//!
//! The logic here is generic over embedded-hal 1.0's [`OutputPin`] and [`InputPin`], so it is
//! tested against `embedded-hal-mock` pin transactions; only [`cdev`] names concrete pins on a
//! Linux gpiochip.
//!
//! Outputs ([`Outputs`]) are set to their safe level the moment they are requested and again
//! when they are dropped, which covers a normal exit, a fatal error (the error unwinds through
//! the owner) and a panic; SIGINT and SIGTERM stop the run loop, which then returns normally.
//!
//! The trigger ([`Trigger`]) waits for edges rather than polling, so a press shorter than any
//! polling period is still seen, and debounces in software: after an edge, the line must stay
//! unchanged for the debounce time before its level counts. Doing it here rather than with the
//! kernel's debounce (GPIO uAPI v2) keeps one tested algorithm on every chip, including chips
//! whose driver cannot debounce.

pub mod cdev;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin, PinState};

use crate::board::{Edge, OutputMode, OutputSpec, Role};
use crate::decide::Decision;
use crate::{Error, Result, STOP_CHECK};

/// One output line: active-low handled here, so that the pin sees physical levels.
pub struct Output<P> {
    pin: P,
    name: String,
    active_low: bool,
    safe_high: bool,
    mode: OutputMode,
    active: bool,
    /// When a pulse that is on ends.
    pulse_ends: Option<Instant>,
}

impl<P: OutputPin> Output<P> {
    /// Takes the pin and drives it to its safe level at once.
    pub fn new(mut pin: P, spec: &OutputSpec) -> Result<Output<P>> {
        let name = spec.line.name.clone();
        pin.set_state(PinState::from(spec.safe_high))
            .map_err(pin_error(&name))?;
        Ok(Output {
            pin,
            name,
            active_low: spec.active_low,
            safe_high: spec.safe_high,
            mode: spec.mode,
            active: spec.safe_high != spec.active_low,
            pulse_ends: None,
        })
    }

    /// What a result asks of the line: level mode follows `active`; pulse mode starts (or
    /// restarts) a pulse when `active` and otherwise lets a running pulse finish.
    pub fn set(&mut self, active: bool, now: Instant) -> Result<()> {
        match self.mode {
            OutputMode::Level => self.drive(active),
            OutputMode::Pulse(length) if active => {
                self.pulse_ends = Some(now + length);
                self.drive(true)
            }
            OutputMode::Pulse(_) => Ok(()),
        }
    }

    /// Ends a pulse that is due; returns when the running pulse ends, if one runs.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Instant>> {
        match self.pulse_ends {
            Some(end) if end <= now => {
                self.pulse_ends = None;
                self.drive(false)?;
                Ok(None)
            }
            pending => Ok(pending),
        }
    }

    pub fn make_safe(&mut self) -> Result<()> {
        self.pulse_ends = None;
        self.pin
            .set_state(PinState::from(self.safe_high))
            .map_err(pin_error(&self.name))?;
        self.active = self.safe_high != self.active_low;
        Ok(())
    }

    /// Sets the line when its state changes (not on every result).
    fn drive(&mut self, active: bool) -> Result<()> {
        if active != self.active {
            self.pin
                .set_state(PinState::from(active != self.active_low))
                .map_err(pin_error(&self.name))?;
            self.active = active;
        }
        Ok(())
    }
}

fn pin_error<E: std::fmt::Debug>(name: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Gpio {
        what: format!("setting {name}"),
        reason: format!("{e:?}"),
    }
}

/// What the run loop tells the outputs. Object safe, so the loop does not care which pins.
pub trait Signals: Send {
    fn set_ready(&mut self, on: bool, now: Instant) -> Result<()>;
    fn set_busy(&mut self, on: bool, now: Instant) -> Result<()>;
    /// Raises the taught output: a new head was taken in while running.
    fn taught(&mut self, now: Instant) -> Result<()>;
    /// Shows a result on the class, match and unknown outputs.
    fn show(&mut self, decision: &Decision, now: Instant) -> Result<()>;
    /// Ends due pulses; returns when the next one ends.
    fn poll(&mut self, now: Instant) -> Result<Option<Instant>>;
    /// Every output to its safe level; errors are logged, so that every line is tried.
    fn make_safe(&mut self);
}

/// The deployment's outputs, each with its role.
pub struct Outputs<P: OutputPin> {
    lines: Vec<(Role, Output<P>)>,
}

impl<P: OutputPin> Outputs<P> {
    /// Takes the pins (each already requested) and sets each to its safe level.
    pub fn new(pins: impl IntoIterator<Item = (OutputSpec, P)>) -> Result<Outputs<P>> {
        let mut outputs = Outputs { lines: Vec::new() };
        for (spec, pin) in pins {
            let output = Output::new(pin, &spec)?;
            outputs.lines.push((spec.role, output));
        }
        Ok(outputs)
    }

    fn make_all_safe(&mut self) {
        for (_, output) in &mut self.lines {
            if let Err(e) = output.make_safe() {
                log::error!("{e}");
            }
        }
    }

    fn each(&mut self, mut f: impl FnMut(&Role, &mut Output<P>) -> Result<()>) -> Result<()> {
        self.lines
            .iter_mut()
            .try_for_each(|(role, output)| f(role, output))
    }
}

impl<P: OutputPin + Send> Signals for Outputs<P> {
    fn set_ready(&mut self, on: bool, now: Instant) -> Result<()> {
        self.each(|role, output| match role {
            Role::Ready => output.set(on, now),
            _ => Ok(()),
        })
    }

    fn set_busy(&mut self, on: bool, now: Instant) -> Result<()> {
        self.each(|role, output| match role {
            Role::Busy => output.set(on, now),
            _ => Ok(()),
        })
    }

    fn taught(&mut self, now: Instant) -> Result<()> {
        self.each(|role, output| match role {
            Role::Taught => output.set(true, now),
            _ => Ok(()),
        })
    }

    fn show(&mut self, decision: &Decision, now: Instant) -> Result<()> {
        let label = decision.label.as_deref();
        let score = decision.top.first().map_or(0.0, |best| best.score);
        self.each(|role, output| match role {
            Role::Class(class) => output.set(label == Some(class), now),
            Role::Match { labels, threshold } => {
                let matched = label.is_some_and(|label| labels.iter().any(|l| l == label))
                    && threshold.is_none_or(|threshold| score >= threshold);
                output.set(matched, now)
            }
            Role::Unknown => output.set(decision.unknown, now),
            Role::Ready | Role::Busy | Role::Taught => Ok(()),
        })
    }

    fn poll(&mut self, now: Instant) -> Result<Option<Instant>> {
        let mut next: Option<Instant> = None;
        for (_, output) in &mut self.lines {
            if let Some(end) = output.poll(now)? {
                next = Some(next.map_or(end, |next| next.min(end)));
            }
        }
        Ok(next)
    }

    fn make_safe(&mut self) {
        self.make_all_safe();
    }
}

impl<P: OutputPin> Drop for Outputs<P> {
    fn drop(&mut self) {
        self.make_all_safe();
    }
}

/// No outputs: a run without a deployment config.
pub struct NoOutputs;

impl Signals for NoOutputs {
    fn set_ready(&mut self, _: bool, _: Instant) -> Result<()> {
        Ok(())
    }
    fn set_busy(&mut self, _: bool, _: Instant) -> Result<()> {
        Ok(())
    }
    fn taught(&mut self, _: Instant) -> Result<()> {
        Ok(())
    }
    fn show(&mut self, _: &Decision, _: Instant) -> Result<()> {
        Ok(())
    }
    fn poll(&mut self, _: Instant) -> Result<Option<Instant>> {
        Ok(None)
    }
    fn make_safe(&mut self) {}
}

/// Locks shared outputs, even if a thread panicked while holding them: setting pins safe must
/// still work then.
pub fn lock<S: Signals + ?Sized>(signals: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    signals
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An input line that can block until its level may have changed.
pub trait EdgeWait: InputPin {
    /// Waits up to `timeout` for an edge; true if there was one (all pending edges are taken).
    fn wait_for_edge(&mut self, timeout: Duration) -> Result<bool, Self::Error>;
}

/// A debounced press of the trigger.
#[derive(Debug, Clone, Copy)]
pub struct Press {
    /// When the first edge of the press arrived (before debouncing).
    pub at: Instant,
}

/// Turns edges on an input line into debounced presses.
pub struct Trigger<P> {
    pin: P,
    edge: Edge,
    debounce: Duration,
    /// The last settled level (high = true).
    level: bool,
}

impl<P: EdgeWait> Trigger<P> {
    pub fn new(mut pin: P, edge: Edge, debounce: Duration) -> Result<Trigger<P>> {
        let level = pin.is_high().map_err(read_error)?;
        Ok(Trigger {
            pin,
            edge,
            debounce,
            level,
        })
    }

    /// Blocks until the next press, or returns None once `stop` is set.
    pub fn next_press(&mut self, stop: &AtomicBool) -> Result<Option<Press>> {
        while !stop.load(Ordering::Relaxed) {
            if !self.pin.wait_for_edge(STOP_CHECK).map_err(read_error)? {
                continue;
            }
            let at = Instant::now();
            let Some(level) = self.settle(stop)? else {
                break;
            };
            log::debug!(
                "trigger line settled {}",
                if level { "high" } else { "low" }
            );
            if level == self.level {
                continue; // bounced and came back: no change
            }
            self.level = level;
            let wanted = match self.edge {
                Edge::Rising => level,
                Edge::Falling => !level,
                Edge::Both => true,
            };
            if wanted {
                return Ok(Some(Press { at }));
            }
        }
        Ok(None)
    }

    /// The level once the line has stayed unchanged for the debounce time.
    fn settle(&mut self, stop: &AtomicBool) -> Result<Option<bool>> {
        loop {
            let level = self.pin.is_high().map_err(read_error)?;
            if !self.pin.wait_for_edge(self.debounce).map_err(read_error)? {
                return Ok(Some(level));
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
        }
    }

    pub fn into_pin(self) -> P {
        self.pin
    }
}

fn read_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::Gpio {
        what: "reading the trigger line".into(),
        reason: format!("{e:?}"),
    }
}

/// Presses, taken from the trigger by a thread of their own: at most one waits while a capture
/// runs; more are counted as missed, not queued.
pub struct Presses {
    receiver: Receiver<Press>,
    counts: Arc<PressCounts>,
    thread: Option<JoinHandle<Result<()>>>,
}

#[derive(Debug, Default)]
pub struct PressCounts {
    pub seen: AtomicU64,
    /// Presses that came while one was already pending.
    pub missed: AtomicU64,
}

/// What a wait for a press ended with.
pub enum Wait {
    Press(Press),
    /// The timeout passed.
    Timeout,
    /// The trigger stopped (the stop flag); its error, if it failed, is returned instead.
    Stopped,
}

impl Presses {
    pub fn spawn<P: EdgeWait + Send + 'static>(
        mut trigger: Trigger<P>,
        stop: Arc<AtomicBool>,
    ) -> Presses {
        // Capacity one: the pending press. The press being captured has been received already.
        let (sender, receiver) = mpsc::sync_channel(1);
        let counts = Arc::new(PressCounts::default());
        let thread_counts = counts.clone();
        let thread = std::thread::spawn(move || {
            while let Some(press) = trigger.next_press(&stop)? {
                if !offer(&sender, press, &thread_counts) {
                    break;
                }
            }
            Ok(())
        });
        Presses {
            receiver,
            counts,
            thread: Some(thread),
        }
    }

    pub fn wait(&mut self, timeout: Duration) -> Result<Wait> {
        match self.receiver.recv_timeout(timeout) {
            Ok(press) => Ok(Wait::Press(press)),
            Err(RecvTimeoutError::Timeout) => Ok(Wait::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                match self.thread.take().map(|thread| thread.join()) {
                    Some(Ok(Err(e))) => Err(e),
                    Some(Err(_)) => Err(Error::Gpio {
                        what: "watching the trigger line".into(),
                        reason: "the trigger thread panicked".into(),
                    }),
                    _ => Ok(Wait::Stopped),
                }
            }
        }
    }

    pub fn counts(&self) -> &PressCounts {
        &self.counts
    }
}

/// Hands a press to the run loop, or counts it as missed when one is already pending.
/// False when the run loop has gone.
fn offer(sender: &SyncSender<Press>, press: Press, counts: &PressCounts) -> bool {
    counts.seen.fetch_add(1, Ordering::Relaxed);
    match sender.try_send(press) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            counts.missed.fetch_add(1, Ordering::Relaxed);
            log::info!("trigger pressed during a capture with one already pending: missed");
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use embedded_hal::digital::ErrorType;
    use embedded_hal_mock::eh1::MockError;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

    use super::*;
    use crate::board::Line;
    use crate::scores::Guess;

    fn spec(role: Role, active_low: bool, safe_high: bool, mode: OutputMode) -> OutputSpec {
        OutputSpec {
            role,
            line: Line {
                offset: 0,
                name: "test".into(),
            },
            active_low,
            safe_high,
            mode,
        }
    }

    fn decision(label: Option<&str>, score: f32) -> Decision {
        Decision {
            top: vec![Guess {
                index: 0,
                label: label.unwrap_or("cat").to_string(),
                score,
            }],
            label: label.map(String::from),
            unknown: false,
            known_score: 0.0,
        }
    }

    #[test]
    fn level_outputs_follow_each_result_and_end_safe() {
        let dog = Mock::new(&[
            T::set(State::Low), // safe at start
            T::set(State::High),
            T::set(State::Low),
            T::set(State::Low), // safe on drop
        ]);
        let cat = Mock::new(&[T::set(State::Low), T::set(State::High), T::set(State::Low)]);
        let now = Instant::now();
        {
            let mut outputs = Outputs::new([
                (
                    spec(Role::Class("dog".into()), false, false, OutputMode::Level),
                    dog.clone(),
                ),
                (
                    spec(Role::Class("cat".into()), false, false, OutputMode::Level),
                    cat.clone(),
                ),
            ])
            .unwrap();
            outputs.show(&decision(Some("dog"), 0.9), now).unwrap();
            // The same result again does not touch the line.
            outputs.show(&decision(Some("dog"), 0.8), now).unwrap();
            outputs.show(&decision(Some("cat"), 0.9), now).unwrap();
        }
        for mut pin in [dog, cat] {
            pin.done();
        }
    }

    #[test]
    fn the_unknown_output_follows_unknown_results_and_taught_pulses() {
        let unknown = Mock::new(&[
            T::set(State::Low), // safe at start
            T::set(State::High),
            T::set(State::Low),
            T::set(State::Low), // safe on drop
        ]);
        let taught = Mock::new(&[
            T::set(State::Low),
            T::set(State::High), // taught
            T::set(State::Low),  // the pulse ends
            T::set(State::Low),
        ]);
        let now = Instant::now();
        {
            let pulse = OutputMode::Pulse(Duration::from_millis(200));
            let mut outputs = Outputs::new([
                (
                    spec(Role::Unknown, false, false, OutputMode::Level),
                    unknown.clone(),
                ),
                (spec(Role::Taught, false, false, pulse), taught.clone()),
            ])
            .unwrap();
            let mut result = decision(None, 0.9);
            result.unknown = true;
            outputs.show(&result, now).unwrap();
            outputs.taught(now).unwrap();
            outputs.poll(now + Duration::from_millis(300)).unwrap();
            outputs.show(&decision(Some("dog"), 0.9), now).unwrap();
        }
        for mut pin in [unknown, taught] {
            pin.done();
        }
    }

    #[test]
    fn active_low_outputs_invert_and_rest_high() {
        let relay = Mock::new(&[
            T::set(State::High), // safe: inactive, which is high
            T::set(State::Low),  // active
            T::set(State::High), // inactive
            T::set(State::High), // safe on drop
        ]);
        let now = Instant::now();
        {
            let labels = vec!["dog".to_string()];
            let role = Role::Match {
                labels,
                threshold: Some(0.8),
            };
            let mut outputs =
                Outputs::new([(spec(role, true, true, OutputMode::Level), relay.clone())]).unwrap();
            outputs.show(&decision(Some("dog"), 0.9), now).unwrap();
            // Below the match threshold (though above the run's): off.
            outputs.show(&decision(Some("dog"), 0.7), now).unwrap();
            outputs.show(&decision(None, 0.3), now).unwrap();
        }
        let mut relay = relay;
        relay.done();
    }

    #[test]
    fn pulses_end_on_time_and_restart_on_a_new_result() {
        let led = Mock::new(&[
            T::set(State::Low),
            T::set(State::High),
            T::set(State::Low), // the pulse ends
            T::set(State::High),
            T::set(State::Low), // the restarted pulse ends
            T::set(State::Low), // safe on drop
        ]);
        let length = Duration::from_millis(200);
        let t0 = Instant::now();
        {
            let role = Role::Class("dog".into());
            let mut outputs = Outputs::new([(
                spec(role, false, false, OutputMode::Pulse(length)),
                led.clone(),
            )])
            .unwrap();
            outputs.show(&decision(Some("dog"), 0.9), t0).unwrap();
            assert_eq!(outputs.poll(t0 + length / 2).unwrap(), Some(t0 + length));
            // Another class does not cut the pulse short.
            outputs
                .show(&decision(Some("cat"), 0.9), t0 + length / 2)
                .unwrap();
            assert_eq!(outputs.poll(t0 + length).unwrap(), None);
            let t1 = t0 + 2 * length;
            outputs.show(&decision(Some("dog"), 0.9), t1).unwrap();
            let t2 = t1 + length / 2;
            outputs.show(&decision(Some("dog"), 0.9), t2).unwrap(); // extends, no new edge
            assert_eq!(outputs.poll(t1 + length).unwrap(), Some(t2 + length));
            assert_eq!(outputs.poll(t2 + length).unwrap(), None);
        }
        let mut led = led;
        led.done();
    }

    #[test]
    fn ready_and_busy_are_separate_from_results() {
        // Safe at start, up, then safe twice: make_safe, and again when dropped.
        let ready = Mock::new(&[
            T::set(State::Low),
            T::set(State::High),
            T::set(State::Low),
            T::set(State::Low),
        ]);
        // Safe at start, up, down, then safe twice.
        let busy = Mock::new(&[
            T::set(State::Low),
            T::set(State::High),
            T::set(State::Low),
            T::set(State::Low),
            T::set(State::Low),
        ]);
        let now = Instant::now();
        {
            let mut outputs = Outputs::new([
                (
                    spec(Role::Ready, false, false, OutputMode::Level),
                    ready.clone(),
                ),
                (
                    spec(Role::Busy, false, false, OutputMode::Level),
                    busy.clone(),
                ),
            ])
            .unwrap();
            outputs.set_ready(true, now).unwrap();
            outputs.set_busy(true, now).unwrap();
            outputs.show(&decision(Some("dog"), 0.9), now).unwrap();
            outputs.set_busy(false, now).unwrap();
            // What the second SIGINT does: every line to its safe level, set even when it is
            // already there.
            outputs.make_safe();
        }
        for mut pin in [ready, busy] {
            pin.done();
        }
    }

    #[test]
    fn a_pin_error_names_the_line() {
        let pin = Mock::new(&[
            T::set(State::Low).with_error(MockError::Io(std::io::ErrorKind::PermissionDenied))
        ]);
        let error = Output::new(
            pin.clone(),
            &spec(Role::Ready, false, false, OutputMode::Level),
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("setting test"), "{error}");
        let mut pin = pin;
        pin.done();
    }

    /// A mock input pin (level reads are embedded-hal-mock transactions) with scripted edges:
    /// each `wait_for_edge` takes the next answer; when the script runs out it sets `stop`.
    struct Scripted {
        pin: Mock,
        edges: VecDeque<bool>,
        stop: Arc<AtomicBool>,
    }

    impl ErrorType for Scripted {
        type Error = MockError;
    }

    impl InputPin for Scripted {
        fn is_high(&mut self) -> Result<bool, MockError> {
            self.pin.is_high()
        }
        fn is_low(&mut self) -> Result<bool, MockError> {
            self.pin.is_low()
        }
    }

    impl EdgeWait for Scripted {
        fn wait_for_edge(&mut self, _: Duration) -> Result<bool, MockError> {
            match self.edges.pop_front() {
                Some(edge) => Ok(edge),
                None => {
                    self.stop.store(true, Ordering::Relaxed);
                    Ok(false)
                }
            }
        }
    }

    fn scripted(levels: &[State], edges: &[bool]) -> (Scripted, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let transactions: Vec<T> = levels.iter().map(|&l| T::get(l)).collect();
        let pin = Scripted {
            pin: Mock::new(&transactions),
            edges: edges.iter().copied().collect(),
            stop: stop.clone(),
        };
        (pin, stop)
    }

    fn presses(trigger: &mut Trigger<Scripted>, stop: &AtomicBool) -> usize {
        std::iter::from_fn(|| trigger.next_press(stop).unwrap()).count()
    }

    use State::{High, Low};

    #[test]
    fn a_bouncing_press_is_one_press() {
        // Idle low; then edges: the line reads high, low, high within the debounce time (each
        // read followed by another edge), then stays high: one rising press. Then it bounces
        // back low and settles: a falling change, which a rising trigger ignores.
        let (pin, stop) = scripted(
            &[Low, High, Low, High, Low, High, Low],
            &[true, true, true, false, true, true, true, false],
        );
        let mut trigger = Trigger::new(pin, Edge::Rising, Duration::from_millis(30)).unwrap();
        assert_eq!(presses(&mut trigger, &stop), 1);
        trigger.into_pin().pin.done();
    }

    #[test]
    fn a_glitch_that_returns_to_the_idle_level_is_no_press() {
        let (pin, stop) = scripted(&[Low, High, Low], &[true, true, false]);
        let mut trigger = Trigger::new(pin, Edge::Rising, Duration::from_millis(30)).unwrap();
        assert_eq!(presses(&mut trigger, &stop), 0);
        trigger.into_pin().pin.done();
    }

    #[test]
    fn edges_choose_which_changes_are_presses() {
        // Idle high (a button to ground with a pull-up): press = falling, release = rising.
        let levels = [High, Low, High, Low, High];
        let edges = [true, false, true, false, true, false, true, false];
        for (edge, expected) in [(Edge::Falling, 2), (Edge::Rising, 2), (Edge::Both, 4)] {
            let (pin, stop) = scripted(&levels, &edges);
            let mut trigger = Trigger::new(pin, edge, Duration::from_millis(30)).unwrap();
            assert_eq!(presses(&mut trigger, &stop), expected, "{edge:?}");
            trigger.into_pin().pin.done();
        }
    }

    #[test]
    fn one_press_waits_while_a_capture_runs_and_the_rest_are_counted() {
        // Four clean presses (rising, then release) with nobody taking them: one is kept
        // pending, three are counted as missed.
        let levels = [Low, High, Low, High, Low, High, Low, High, Low];
        let edges: Vec<bool> = std::iter::repeat_n([true, false], 8).flatten().collect();
        let (pin, stop) = scripted(&levels, &edges);
        let mut mock = pin.pin.clone();
        let trigger = Trigger::new(pin, Edge::Rising, Duration::from_millis(30)).unwrap();
        let mut presses = Presses::spawn(trigger, stop);
        // The thread ends when the script runs out; the pending press is still there.
        let thread = presses.thread.take().unwrap();
        thread.join().unwrap().unwrap();
        assert!(matches!(presses.receiver.try_recv(), Ok(Press { .. })));
        assert!(presses.receiver.try_recv().is_err());
        assert_eq!(presses.counts().seen.load(Ordering::Relaxed), 4);
        assert_eq!(presses.counts().missed.load(Ordering::Relaxed), 3);
        mock.done();
    }
}
