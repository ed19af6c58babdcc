//! The `pinsight` command: parse the command line ([`cli`]), set up logging, run one subcommand
//! through the library, and turn its error into a message and an exit status ([`exit`]).

mod cli;
mod exit;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use cli::Command;
use exit::{Stdout, describe, exit_code, is_broken_pipe};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut stdout = Stdout::new(io::stdout().lock());
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

fn run(command: Command, stdout: &mut impl Write) -> Result<()> {
    match command {
        Command::Classify(args) => {
            let json = args.json;
            pinsight::run::classify(&args.resolve(), |result| {
                pinsight::run::print_classified(&mut *stdout, result, json)
            })
            .context("classify")
        }
        Command::Run(args) => {
            let config = args.resolve().context("run")?;
            let learner = config
                .deployment
                .as_ref()
                .and_then(|d| d.enroll.as_ref())
                .map(|spec| {
                    let teacher = pinsight::teach::Teacher::new(
                        spec,
                        &config.model,
                        pinsight::train::default_cache_dir(),
                    );
                    std::sync::Arc::new(teacher) as std::sync::Arc<dyn pinsight::run::enroll::Learn>
                });
            pinsight::run::run(&config, learner, |result| {
                pinsight::run::print_json_line(&mut *stdout, result)
            })
            .map(drop)
            .context("run")
        }
        Command::Capture(args) => {
            let options = args.resolve().context("capture")?;
            pinsight::capture::capture(&options, |path| {
                writeln!(stdout, "{}", path.display())?;
                stdout.flush()
            })
            .map(drop)
            .context("capture")
        }
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
        Command::Completions(args) => {
            cli::completions(args.shell, stdout);
            Ok(stdout.flush()?)
        }
        Command::Man(args) => {
            cli::man_page(args.subcommand.as_deref(), stdout)?;
            Ok(stdout.flush()?)
        }
        Command::Config(args) => {
            let config = args.resolve().context("config")?;
            let classes = pinsight::config::check(&config).context("config")?;
            log::info!("the head has {} classes", classes.len());
            serde_json::to_writer_pretty(&mut *stdout, &config)?;
            writeln!(stdout)?;
            Ok(stdout.flush()?)
        }
    }
}
