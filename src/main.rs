//! The `pinsight` command: parse the command line ([`cli`]), set up logging, run one subcommand
//! through the library, and turn its error into a message and an exit status.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use cli::Command;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinsight: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(command: Command) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match command {
        Command::Classify(args) => {
            let json = args.json;
            pinsight::run::classify(&args.resolve(), |result| {
                pinsight::run::print_classified(&mut stdout, result, json)
            })
            .context("classify")
        }
        Command::Run(args) => pinsight::run::run(&args.resolve(), |result| {
            pinsight::run::print_json_line(&mut stdout, result)
        })
        .map(drop)
        .context("run"),
        Command::Train(args) => {
            let trained = pinsight::train::train_from_folder(&args.resolve()).context("train")?;
            Ok(write!(stdout, "{trained}")?)
        }
        Command::Eval(args) => {
            let evaluated = pinsight::train::evaluate_folder(&args.resolve()).context("eval")?;
            Ok(write!(stdout, "{evaluated}")?)
        }
        Command::Bench(args) => pinsight::bench::run(&args.resolve()).context("bench"),
        Command::Config(args) => {
            let deployment = pinsight::board::load(&args.config).context("config")?;
            serde_json::to_writer_pretty(&mut stdout, &deployment)?;
            writeln!(stdout)?;
            Ok(())
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
