//! How a `pinsight` process ends: the exit status of an error, its message, and standard
//! output's reader going away.
//!
//! A closed standard output (`pinsight config … | head -1`, `pinsight run … | grep -m1 dog`)
//! is a normal end for every subcommand: pinsight stops and exits 0 without a message, as the
//! reader has all it wanted. A `run` with pins sets them safe on the way out as on any other.

use std::io::{self, Write};

/// Standard output, noting when its reader has gone (a broken pipe), whichever error type the
/// library wraps that write error in.
pub struct Stdout<W> {
    inner: W,
    /// A write found the pipe closed.
    pub closed: bool,
}

impl<W> Stdout<W> {
    pub fn new(inner: W) -> Stdout<W> {
        Stdout {
            inner,
            closed: false,
        }
    }
}

impl<W: Write> Stdout<W> {
    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        result
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}

/// Whether the error comes from writing to a closed pipe (`bench` writes to standard output
/// itself).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, joined by ": " as `{:#}` does, leaving out a cause whose words
/// the message already holds (an error that quotes its cause and also reports it as its
/// source would otherwise say it twice).
pub fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The exit status for `error`: its [`pinsight::error::ErrorKind`]'s (the table is `pinsight --help`'s and
/// README.md's). The library's errors say their own kind; what only `main` meets is an error
/// writing stdout (the machine's: `ErrorKind::System`); anything else is a bug.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    use pinsight::bench::BenchError;
    use pinsight::error::ErrorKind;

    let kind = error.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<pinsight::Error>() {
            return Some(error.kind());
        }
        if let Some(error) = cause.downcast_ref::<BenchError>() {
            return Some(error.kind());
        }
        cause
            .downcast_ref::<io::Error>()
            .map(|_| ErrorKind::System)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .filter(|e| e.is_io())
                    .map(|_| ErrorKind::System)
            })
    });
    kind.unwrap_or(ErrorKind::Internal).exit_code()
}
