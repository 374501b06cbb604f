//! The command line: `herald run` and `herald validate`. Each command
//! returns the process exit code; `main` only parses and calls.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::error;

use crate::config::{self, Config, LoadError};
use crate::logging::{self, LogFormat};

/// The exit code for a configuration mistake (EX_CONFIG from sysexits.h),
/// so that systemd and scripts can tell it from a crash.
pub const EXIT_CONFIG: u8 = 78;
/// The exit code when the agent could not run for another reason.
pub const EXIT_FAILURE: u8 = 1;

/// herald turns file, process and infrastructure changes into Prefect
/// events, keeps them durably, and forwards them to a Prefect server or
/// Prefect Cloud.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    /// Log level or RUST_LOG-style directives (info, debug, herald=debug).
    #[arg(long, global = true, env = "HERALD_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "HERALD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// herald's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run(ConfigArg),
    /// Check a configuration: exit 0 when valid, 78 with every mistake
    /// listed otherwise.
    Validate(ConfigArg),
    /// Look at the disk queue (works while the agent is stopped, and while
    /// it runs; changes nothing).
    #[command(subcommand)]
    Queue(QueueCommand),
}

/// `herald queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Segments, depth, first and last unacked seq, oldest event's age.
    Inspect(InspectArgs),
}

/// Arguments of `herald queue inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Where the configuration is (its [agent] data_dir is used).
    #[command(flatten)]
    pub config: ConfigArg,
    /// The data_dir to inspect, instead of the configured one.
    #[arg(long, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// Print the first N unacked events as JSON lines on stdout (the
    /// summary then goes to stderr).
    #[arg(long, value_name = "N")]
    pub dump: Option<usize>,
}

/// Where the configuration is.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file; else HERALD_CONFIG, else /etc/herald/herald.toml, else
    /// the embedded default.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    if let Err(e) = logging::init(&cli.log_level, cli.log_format) {
        eprintln!("herald: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Run(arg) => run(arg),
        Command::Validate(arg) => validate(arg),
        Command::Queue(QueueCommand::Inspect(args)) => queue_inspect(args),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(arg: &ConfigArg) -> Result<Config, ExitCode> {
    let location = config::locate(arg.config.as_deref(), &env);
    match config::load(location, &env) {
        Ok(config) => Ok(config),
        Err(LoadError::Invalid(mistakes)) => {
            eprintln!("{mistakes}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn validate(arg: ConfigArg) -> ExitCode {
    match load(&arg) {
        Ok(config) => {
            println!(
                "{}: valid ({} source{}, sink {:?})",
                config.location,
                config.sources.len(),
                if config.sources.len() == 1 { "" } else { "s" },
                config.sink.kind
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(arg: ConfigArg) -> ExitCode {
    let config = match load(&arg) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("herald")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "RuntimeStartFailed");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        let shutdown = async {
            match crate::signals::terminate().await {
                Ok(name) => name.to_owned(),
                Err(e) => {
                    error!(error = %e, "SignalHandlerFailed: stopping");
                    "signal handler failed".to_owned()
                }
            }
        };
        match crate::agent::run(config, &env, shutdown).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "AgentFailed");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

fn queue_inspect(args: InspectArgs) -> ExitCode {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => match load(&args.config) {
            Ok(config) => crate::agent::existing_data_dir(&config.agent, &env),
            Err(code) => return code,
        },
    };
    let queue_dir = data_dir.join("queue");
    if !queue_dir.is_dir() {
        eprintln!("herald: no queue at {}", queue_dir.display());
        return ExitCode::from(EXIT_FAILURE);
    }
    let inspection = match crate::queue::inspect(&queue_dir) {
        Ok(inspection) => inspection,
        Err(e) => {
            eprintln!("herald: cannot inspect {}: {e}", queue_dir.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Some(n) = args.dump else {
        print!("{inspection}");
        return ExitCode::SUCCESS;
    };
    eprint!("{inspection}");
    match crate::queue::unacked_records(&queue_dir, n) {
        Ok(records) => {
            let mut out = std::io::stdout().lock();
            for record in records {
                let written = out
                    .write_all(&record.payload)
                    .and_then(|()| out.write_all(b"\n"));
                if written.is_err() {
                    // stdout closed (a pager quit): nothing left to do.
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: cannot read {}: {e}", queue_dir.display());
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
