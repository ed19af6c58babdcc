//! The `pinsight` command: parse the command line ([`cli`]), set up logging, run one subcommand
//! through the library, and turn its error into a message and an exit status.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinsight: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The command line, with `--version` naming the CPU features the int8 kernels were chosen for.
fn parse() -> Cli {
    let version = format!(
        "{} (CPU: {})",
        env!("CARGO_PKG_VERSION"),
        pinsight::model::CpuFeatures::detected()
    );
    // clap takes a &'static str; the process lives that long anyway.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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

/// Every failure exits 2 (clap's own usage errors too); 0 is success.
fn exit_code(_error: &anyhow::Error) -> u8 {
    2
}
