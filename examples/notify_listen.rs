//! Listens as systemd does for a `Type=notify` service with a watchdog, for the end-to-end
//! tests' guest, which has no systemd: binds the datagram socket a service's `NOTIFY_SOCKET`
//! names, prints each message it receives with the milliseconds since it started, and, as
//! systemd would before it kills the service, says when no `WATCHDOG=1` came within the
//! watchdog interval (counted from `READY=1`, then from each ping). Ends after `STOPPING=1`.
//!
//!     notify_listen SOCKET WATCHDOG_MS
//!     notify_listen /tmp/notify 20000 &
//!     NOTIFY_SOCKET=/tmp/notify WATCHDOG_USEC=20000000 pinsight run ...
//!
//! Lines printed: `MS MESSAGE` for each message, `MS watchdog timeout: no WATCHDOG=1 for N ms`
//! once for each silence longer than the interval.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: notify_listen SOCKET WATCHDOG_MS";
    let (Some(path), Some(interval)) = (args.get(1), args.get(2)) else {
        fail(usage)
    };
    let interval = Duration::from_millis(interval.parse().unwrap_or_else(|_| fail(usage)));
    let socket =
        UnixDatagram::bind(path).unwrap_or_else(|e| fail(&format!("cannot bind {path}: {e}")));
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap_or_else(|e| fail(&format!("{e}")));

    let start = Instant::now();
    let ms = || start.elapsed().as_millis();
    // Since READY=1: the last ping (or READY itself), and whether its silence was reported.
    let mut watched: Option<(Instant, bool)> = None;
    let mut buffer = [0u8; 4096];
    loop {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let datagram = String::from_utf8_lossy(&buffer[..n]).into_owned();
                // A datagram may hold several assignments, one a line.
                for message in datagram.lines() {
                    println!("{} {message}", ms());
                    if message == "READY=1" || (message == "WATCHDOG=1" && watched.is_some()) {
                        watched = Some((Instant::now(), false));
                    }
                    if message == "STOPPING=1" {
                        return;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => fail(&format!("cannot read {path}: {e}")),
        }
        if let Some((last, false)) = watched {
            let silence = last.elapsed();
            if silence > interval {
                println!(
                    "{} watchdog timeout: no WATCHDOG=1 for {} ms",
                    ms(),
                    silence.as_millis()
                );
                watched = Some((last, true));
            }
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("notify_listen: {message}");
    std::process::exit(1);
}
