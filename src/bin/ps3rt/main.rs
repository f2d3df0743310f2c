//! `ps3rt`: run PS3 bottom-up selection and encoding from a terminal.
//!
//! Exit codes: 0 success; 1 unexpected failure; 2 usage error; 3 the model package is missing, corrupt
//! or inconsistent; 4 the input cannot be read or decoded; 5 the backend failed.

mod demo;
mod inputs;
mod report;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code of a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a bad model package.
pub const EXIT_MODEL: u8 = 3;
/// Exit code of a bad input.
pub const EXIT_INPUT: u8 = 4;
/// Exit code of a backend failure.
pub const EXIT_BACKEND: u8 = 5;

#[derive(Parser, Debug)]
#[command(
    name = "ps3rt",
    version,
    about = "PS3 4K vision encoder: bottom-up patch selection at a fixed budget"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad model package, 4 bad input, 5 backend failure."
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encode one image or tensor: selection summary, JSON and features.
    #[command(
        after_help = "Examples:\n  ps3rt run --input street.jpg\n  ps3rt run --model pkg/ps3-4k --input frame.png --budget 1024 --json out.json --features feats.npy\n  ps3rt run --input pixels.npy --steps 2    # [3, 3780, 3780] float32, already normalized"
    )]
    Run(run::RunArgs),
    /// Render the project's 4K road scene and run the embedded model on it.
    #[command(
        after_help = "Examples:\n  ps3rt demo\n  ps3rt demo --out-dir /tmp/ps3rt-demo --budget 1024"
    )]
    Demo(demo::DemoArgs),
}

/// A failure with the exit code it maps to; printed as `error: <message>: <cause>: ...`.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure with an explicit code and message.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ps3rt::Error> for Failure {
    fn from(e: ps3rt::Error) -> Failure {
        let code = match &e {
            ps3rt::Error::Package { .. } => EXIT_MODEL,
            ps3rt::Error::Input { .. } | ps3rt::Error::InvalidFrame(_) => EXIT_INPUT,
            ps3rt::Error::Backend { .. } | ps3rt::Error::NonFinite(_) => EXIT_BACKEND,
            ps3rt::Error::InvalidArgument(_) => EXIT_USAGE,
            _ => 1,
        };
        // The Display of each variant already carries its context; append causes it does not show.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Failure { code, message }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet {
        log::LevelFilter::Error
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("PS3RT_LOG")
        .format_timestamp(None)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
