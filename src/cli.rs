//! The command line: `herald run` and `herald validate`. Each command
//! returns the process exit code; `main` only parses and calls.

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
