//! `ps3rt`: run PS3 bottom-up selection and encoding from a terminal.
//!
//! Exit codes: 0 success; 1 unexpected failure (e.g. an output file cannot be written); 2 usage error;
//! 3 the model package is missing, corrupt or inconsistent; 4 the input cannot be read or decoded;
//! 5 the backend failed. A folder or glob run exits with the code of its most serious per-file
//! failure (5, then 1, then 4). docs/cli.md is the full reference.

mod batch;
mod bench;
mod build_engines;
mod camera;
mod demo;
mod info;
mod inputs;
mod labels;
mod overlay;
mod procfs;
mod report;
mod run;
mod soak;
mod timing_floor;
mod ui;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Exit code of a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a bad model package.
pub const EXIT_MODEL: u8 = 3;
/// Exit code of a bad input.
pub const EXIT_INPUT: u8 = 4;
/// Exit code of a backend failure.
pub const EXIT_BACKEND: u8 = 5;

/// What a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A summary for people.
    Text,
    /// JSON (JSON Lines for a folder or glob run).
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "ps3rt",
    version,
    about = "PS3 4K vision encoder: bottom-up patch selection at a fixed budget",
    after_help = "Examples:\n  ps3rt demo --overlay demo.png       # the 4K road scene, end to end, with a picture\n  ps3rt info                          # the embedded model: sizes, FLOPs, memory, backends\n  ps3rt run --input frame.jpg --overlay frame-ps3.png\n  ps3rt run --input 'frames/*.png' --json results.jsonl --overlay overlays/\n\nExit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad model package, 4 bad input, 5 backend failure.\nLogging: -v info, -vv debug, -vvv trace, -q errors only; PS3RT_LOG overrides (env_logger syntax)."
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors: no warnings, progress bars or batch summary on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encode an image, a tensor, or every image of a folder or glob: summary, JSON, features, overlay.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt run --input street.jpg\n",
        "  ps3rt run --input street.jpg --overlay street-ps3.png --budget 1024\n",
        "  ps3rt run --model pkg/ps3-4k --input frame.png --budget 1024 --json out.json --features feats.npy\n",
        "  ps3rt run --input frame.png --format json | jq .selected_per_scale\n",
        "  ps3rt run --input pixels.npy --steps 2    # [3, 3780, 3780] float32, already normalized\n",
        "  ps3rt run --input frames/ --recursive --json results.jsonl --overlay overlays/\n",
        "  ps3rt run --input 'drive/*.jpg' --fail-fast --format json > results.jsonl\n",
        "\n",
        "Exit codes: 0 ok, 1 unexpected failure (e.g. an output cannot be written), 2 usage, 3 bad model package, 4 bad input, 5 backend failure. A folder or glob run exits with its most serious per-file failure (5, then 1, then 4)."
    ))]
    Run(run::RunArgs),
    /// Describe a model package: geometry, widths, files, FLOPs and memory per frame, backends.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt info                       # the embedded tiny package\n",
        "  ps3rt info packages/ps3-4k-k2560 --budget 1024\n",
        "  ps3rt info packages/ps3-4k-k2560 --verify    # also check every file's SHA-256\n",
        "  ps3rt info --format json | jq .flops\n",
        "\n",
        "Exit codes: 0 ok, 2 usage, 3 bad model package (printed after the description when only file sizes are wrong)."
    ))]
    Info(info::InfoArgs),
    /// Render the project's 4K road scene and run the embedded model on it.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt demo\n",
        "  ps3rt demo --overlay target/ps3rt-demo/overlay.png\n",
        "  ps3rt demo --out-dir /tmp/ps3rt-demo --budget 1024 --size 1920x1080\n",
        "\n",
        "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad model package, 5 backend failure."
    ))]
    Demo(demo::DemoArgs),
    /// Measure latency per stage across resolutions, pixel formats and budgets (table, JSON, plot).
    #[command(
        after_help = "Examples:\n  ps3rt bench\n  ps3rt bench --budget 256,1024,2560 --resolutions 1280x720,7680x4320 --frames 50 --json bench.json --plot bench.png"
    )]
    Bench(bench::BenchArgs),
    /// Build the TensorRT engines of a package ahead of time (cached), optionally timing them and
    /// comparing them with tract (docs/tensorrt.md).
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt build-engines                                  # the embedded tiny package\n",
        "  ps3rt build-engines packages/ps3-4k-k2560 --budget 256,1024,2560\n",
        "  ps3rt build-engines packages/ps3-4k-k2560 --bench 20 --compare-tract\n",
        "\n",
        "Exit codes: 0 ok, 2 usage, 3 bad model package, 5 TensorRT cannot run here or a build failed."
    ))]
    BuildEngines(build_engines::BuildEnginesArgs),
    /// Encode live frames at constant latency: a V4L2 camera, a video file, images or a test scene.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt camera                                  # /dev/video0, its best mode\n",
        "  ps3rt camera --device /dev/video2 --format mjpeg --size 1920x1080 --fps 30 --budget 1024\n",
        "  ps3rt camera --frames 100 --overlay-every 25 overlays/\n",
        "  ps3rt camera --input drive.y4m --output json > frames.jsonl\n",
        "  ps3rt camera --input clip.nv12 --raw-format nv12 --raw-size 1920x1080 --fps 10\n",
        "  ps3rt camera --synthetic 3840x2160 --format nv12 --frames 20\n",
        "\n",
        "Ctrl-C prints the summary and exits. Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 bad model package, 4 camera or input failure (missing, busy, no permission, unsupported format, unplugged for good), 5 backend failure."
    ))]
    Camera(camera::CameraArgs),
    /// Label bank, region pool head and text tower of a package; encode a text with --text.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt labels                                   # the embedded tiny package (random weights)\n",
        "  ps3rt labels packages/ps3-4k --text \"speed limit sign\" --prompt-out prompt.npy\n",
        "  ps3rt run --input frame.png --prompt \"speed limit sign\" --labels\n",
        "\n",
        "Replace the bank with tools/export/ps3_labels.py (docs/labels.md). Exit codes: 0 ok, 2 usage (e.g. no text tower for --text), 3 bad model package, 5 backend failure."
    ))]
    Labels(labels::LabelsArgs),
    /// Encode many frames on T threads over one model; check memory growth and latency drift.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt soak                                     # 10,000 frames, 1 thread, the embedded package\n",
        "  ps3rt soak --frames 2000 --threads 4 --budget 256 --format nv12 --json soak.json\n",
        "\n",
        "Exit codes: 0 pass, 1 fail (memory grew by more than --max-rss-growth-mb or the median latency drifted by more than --max-drift; or an unexpected failure), 2 usage, 3 bad model package, 5 backend failure."
    ))]
    Soak(soak::SoakArgs),
    /// Print a shell completion script.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ps3rt completions bash > ~/.local/share/bash-completion/completions/ps3rt\n",
        "  ps3rt completions zsh > ~/.zfunc/_ps3rt\n",
        "  ps3rt completions fish > ~/.config/fish/completions/ps3rt.fish"
    ))]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    ui::init(cli.quiet);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Camera(args) => camera::camera(args),
        Command::Labels(args) => labels::run(args),
        Command::Info(args) => info::info(args),
        Command::Demo(args) => demo::demo(args),
        Command::BuildEngines(args) => build_engines::build_engines(args),
        Command::Bench(args) => bench::bench(args),
        Command::Soak(args) => soak::soak(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ps3rt", &mut script);
            ui::out(&String::from_utf8_lossy(&script));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            ui::err(&format!("error: {}\n", f.message));
            ExitCode::from(f.code)
        }
    }
}
