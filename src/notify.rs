//! Telling systemd how the run is doing, through the `sd_notify` protocol: one datagram a
//! message to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace), which systemd sets for a `Type=notify` unit.
//!
//! - `READY=1` once the model is loaded and the source delivers frames (when the `ready` output
//!   rises);
//! - `WATCHDOG=1` from the run loop itself, each time it has made progress: a frame classified,
//!   or, while it waits for a trigger or for its next frame at `fps`, a source that still
//!   delivers frames. A stuck camera or a stuck loop stops the pings, and systemd restarts the
//!   service after `WatchdogSec` (it passes the interval as `$WATCHDOG_USEC`);
//! - `STATUS=` with the last label and the rate of results, at most once a second;
//! - `STOPPING=1` when the loop ends.
//!
//! Without `$NOTIFY_SOCKET` nothing is sent. Sending never waits: a message that cannot be sent
//! at once (systemd's queue is full, the socket is gone) is dropped and logged once, and the
//! run goes on.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// How often systemd expects `WATCHDOG=1`, when it watches this process.
    watchdog: Option<Duration>,
    /// A send failed and was logged: later failures are not.
    failed: AtomicBool,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, with the watchdog interval of `$WATCHDOG_USEC`
    /// when `$WATCHDOG_PID` is unset or this process. None when the variable is unset; a value
    /// that cannot be used is logged.
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .map_or(true, |pid| pid.parse() == Ok(std::process::id()))
            })
            .map(Duration::from_micros);
        match Notifier::new(socket.as_encoded_bytes(), watchdog) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                    socket.display()
                );
                None
            }
        }
    }

    /// A notifier for the socket `name` (a path, or `@` and an abstract name).
    pub fn new(name: &[u8], watchdog: Option<Duration>) -> std::io::Result<Notifier> {
        let address = match name.strip_prefix(b"@") {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name)?
            }
            None => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
        };
        // Never wait for systemd: a full queue loses a message, not the loop's time.
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            address,
            watchdog,
            failed: AtomicBool::new(false),
        })
    }

    /// How often systemd expects a watchdog ping, when it watches.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn status(&self, text: &str) {
        // A status is one line.
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address)
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            log::warn!("cannot notify systemd ({message}): {e}");
        }
    }
}

/// What the run loop tells systemd, and when: pings no more often than a quarter of the
/// watchdog interval, a status no more than once a second.
#[derive(Debug)]
pub struct Health<'a> {
    notifier: Option<&'a Notifier>,
    last_ping: Option<Instant>,
    last_status: Option<Instant>,
    started: Instant,
}

impl<'a> Health<'a> {
    pub fn new(notifier: Option<&'a Notifier>) -> Health<'a> {
        Health {
            notifier,
            last_ping: None,
            last_status: None,
            started: Instant::now(),
        }
    }

    pub fn ready(&mut self) {
        if let Some(notifier) = self.notifier {
            notifier.ready();
        }
    }

    /// The loop made progress at `now`.
    pub fn alive(&mut self, now: Instant) {
        let (Some(notifier), Some(interval)) = (self.notifier, self.watchdog_interval()) else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|last| now.saturating_duration_since(last) >= interval / 4)
        {
            notifier.watchdog();
            self.last_ping = Some(now);
        }
    }

    /// The loop is waiting, not stuck, when the source delivered a frame at `last_frame`
    /// within the watchdog interval (or has no capture of its own to be stuck in: `None`).
    pub fn waiting(&mut self, now: Instant, last_frame: Option<Instant>) {
        let Some(interval) = self.watchdog_interval() else {
            return;
        };
        if last_frame.is_none_or(|at| now.saturating_duration_since(at) < interval / 2) {
            self.alive(now);
        }
    }

    /// A result: its label (None below the threshold) after `results` results.
    pub fn result(&mut self, now: Instant, label: Option<&str>, results: u64) {
        self.alive(now);
        let Some(notifier) = self.notifier else {
            return;
        };
        if self
            .last_status
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        self.last_status = Some(now);
        let seconds = now.saturating_duration_since(self.started).as_secs_f64();
        let rate = if seconds > 0.0 {
            results as f64 / seconds
        } else {
            0.0
        };
        notifier.status(&format!(
            "last: {} · {results} results · {rate:.1}/s",
            label.unwrap_or("(below the threshold)")
        ));
    }

    pub fn stopping(&mut self) {
        if let Some(notifier) = self.notifier {
            notifier.stopping();
        }
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.notifier?.watchdog_interval()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let notifier = Notifier::new(
            path.as_os_str().as_encoded_bytes(),
            Some(Duration::from_secs(4)),
        )
        .unwrap();
        (dir, socket, notifier)
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buffer = [0u8; 512];
        while let Ok(n) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        messages
    }

    #[test]
    fn pings_are_spaced_by_a_quarter_interval_and_statuses_by_a_second() {
        let (_dir, socket, notifier) = listener();
        let mut health = Health::new(Some(&notifier));
        let start = Instant::now();
        health.ready();
        for ms in [0, 200, 900, 1100, 2500] {
            health.result(start + Duration::from_millis(ms), Some("cup"), 1);
        }
        let messages = received(&socket);
        let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
        let statuses: Vec<_> = messages
            .iter()
            .filter(|m| m.starts_with("STATUS="))
            .collect();
        assert_eq!(messages[0], "READY=1");
        assert_eq!(pings, 3, "at 0, 1100 and 2500 ms: {messages:?}");
        assert_eq!(statuses.len(), 3, "at 0, 1100 and 2500 ms: {messages:?}");
        assert!(statuses[0].starts_with("STATUS=last: cup · 1 results"));
    }

    #[test]
    fn a_source_that_stopped_delivering_frames_stops_the_pings() {
        let (_dir, socket, notifier) = listener();
        let mut health = Health::new(Some(&notifier));
        let start = Instant::now();
        let frame = Some(start);
        // Within half the interval of the last frame: pinged. Past it: not.
        health.waiting(start + Duration::from_millis(1500), frame);
        health.waiting(start + Duration::from_millis(2500), frame);
        health.waiting(start + Duration::from_millis(3500), frame);
        // A source without a capture of its own (files): the loop's progress is enough.
        health.waiting(start + Duration::from_millis(5000), None);
        assert_eq!(received(&socket), ["WATCHDOG=1", "WATCHDOG=1"]);
    }

    #[test]
    fn abstract_socket_names_are_understood() {
        let name = format!("pinsight-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(format!("@{name}").as_bytes(), None).unwrap();
        notifier.ready();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
    }
}
