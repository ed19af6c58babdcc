//! The `pinsight` command: parse the command line ([`cli`]), set up logging, run one subcommand
//! through the library, and turn its error into a message and an exit status.
//!
//! A closed standard output (`pinsight config … | head -1`, `pinsight run … | grep -m1 dog`)
//! is a normal end for every subcommand: pinsight stops and exits 0 without a message, as the
//! reader has all it wanted. A `run` with pins sets them safe on the way out as on any other.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use cli::Command;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut stdout = Stdout {
        inner: io::stdout().lock(),
        closed: false,
    };
    match run(cli::parse().command, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if stdout.closed || is_broken_pipe(&e) => {
            log::info!("standard output was closed; stopping");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pinsight: {}", describe(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Standard output, noting when its reader has gone (a broken pipe), whichever error type the
/// library wraps that write error in.
struct Stdout<W> {
    inner: W,
    closed: bool,
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
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, joined by ": " as `{:#}` does, leaving out a cause whose words
/// the message already holds (an error that quotes its cause and also reports it as its
/// source would otherwise say it twice).
fn describe(error: &anyhow::Error) -> String {
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

fn run(command: Command, stdout: &mut impl Write) -> Result<()> {
    match command {
        Command::Classify(args) => {
            let json = args.json;
            pinsight::run::classify(&args.resolve(), |result| {
                pinsight::run::print_classified(&mut *stdout, result, json)
            })
            .context("classify")
        }
        Command::Run(args) => pinsight::run::run(&args.resolve(), |result| {
            pinsight::run::print_json_line(&mut *stdout, result)
        })
        .map(drop)
        .context("run"),
        Command::Train(args) => {
            let trained = pinsight::train::train_from_folder(&args.resolve()).context("train")?;
            write!(stdout, "{trained}")?;
            Ok(stdout.flush()?)
        }
        Command::Eval(args) => {
            let evaluated = pinsight::train::evaluate_folder(&args.resolve()).context("eval")?;
            write!(stdout, "{evaluated}")?;
            Ok(stdout.flush()?)
        }
        Command::Bench(args) => pinsight::bench::run(&args.resolve()).context("bench"),
        Command::Config(args) => {
            let deployment = pinsight::board::load(&args.config).context("config")?;
            serde_json::to_writer_pretty(&mut *stdout, &deployment)?;
            writeln!(stdout)?;
            Ok(stdout.flush()?)
        }
    }
}

/// The exit status for `error`: its [`pinsight::error::ErrorKind`]'s (the table is `pinsight --help`'s and
/// README.md's). The library's errors say their own kind; what only `main` meets is an error
/// writing stdout (the machine's: `ErrorKind::System`); anything else is a bug.
fn exit_code(error: &anyhow::Error) -> u8 {
    use pinsight::bench::BenchError;
    use pinsight::error::ErrorKind;

    let kind = error.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<pinsight::Error>() {
            return Some(error.kind());
        }
        if let Some(error) = cause.downcast_ref::<BenchError>() {
            return Some(match error {
                BenchError::Pinsight(error) => error.kind(),
                BenchError::OneBackbone(_) => ErrorKind::Usage,
                BenchError::Output(_) | BenchError::Spawn { .. } => ErrorKind::System,
                // The child is pinsight itself: its status already says what kind of failure
                // it had (a damaged backbone is bad input in the child as in the parent).
                BenchError::Child { status, .. } => status
                    .code()
                    .and_then(ErrorKind::from_exit_code)
                    .unwrap_or(ErrorKind::Internal),
                BenchError::ChildOutput { .. } => ErrorKind::Internal,
            });
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
