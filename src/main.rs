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

/// Every failure exits 2 (as the command line's own usage errors do); 0 is success.
fn exit_code(_error: &anyhow::Error) -> u8 {
    2
}
