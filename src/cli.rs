//! The command line: `herald run` and `herald validate`. Each command
//! returns the process exit code; `main` only parses and calls.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::error;

use crate::config::{self, Config, LoadError};
use crate::logging::{self, LogFormat};
use crate::sink::dead_letter::DeadLetters;

/// The exit code for a configuration mistake (EX_CONFIG from sysexits.h),
/// so that systemd and scripts can tell it from a crash.
pub const EXIT_CONFIG: u8 = 78;
/// The exit code when the agent could not run for another reason.
pub const EXIT_FAILURE: u8 = 1;
/// The exit code for a command line herald does not understand
/// (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// The exit code when the data_dir cannot be created or locked
/// (EX_CANTCREAT): another agent holds it, or it is not writable.
pub const EXIT_CANTCREAT: u8 = 73;

/// Parses the command line: `--help` and `--version` print and exit 0, a
/// mistake prints clap's message and exits [`EXIT_USAGE`].
///
/// # Errors
/// The exit code to leave with when the process should not go on.
pub fn parse() -> Result<Cli, ExitCode> {
    match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            Err(ExitCode::from(code))
        }
    }
}

/// Async worker threads of the agent's runtime. What runs there is
/// mostly waiting and handing over: the appender, the sender and its HTTP
/// connection, queue reads from the page cache, timers, the light
/// sources. The heavy work has threads of its own (each file source, the
/// queue's writer) or goes to the blocking pool (reads that may wait for
/// the disk, process and host scans), so a second worker adds no
/// parallelism, only wake-ups and tasks moving between threads: on two
/// cores, one worker tailed a file with 5-10% less CPU per GiB at the same
/// or better throughput (the tail bench, same sitting).
const WORKER_THREADS: usize = 1;

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
    /// Run the agent until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run(RunArgs),
    /// Check a configuration: exit 0 when valid, 78 with every mistake
    /// listed otherwise.
    Validate(ConfigArg),
    /// Run the config's [[tests]] through its [[mappings]]: a diff for each
    /// failure, "N passed, M failed", exit 1 when any failed.
    Test(ConfigArg),
    /// Look at the disk queue (works while the agent is stopped, and while
    /// it runs; changes nothing).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The events the endpoint refused for good.
    #[command(subcommand, name = "dead-letter")]
    DeadLetter(DeadLetterCommand),
}

/// `herald dead-letter ...`
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List them: time, status, event, id and reason (`--json` for the
    /// stored lines).
    List(DeadLetterArgs),
    /// Put them back in the queue, to be sent at the agent's next start
    /// (after fixing what made them invalid). The agent must be stopped.
    Retry(DeadLetterArgs),
}

/// Arguments of `herald dead-letter`.
#[derive(Debug, clap::Args)]
pub struct DeadLetterArgs {
    /// Where the configuration is (its [agent] data_dir is used).
    #[command(flatten)]
    pub config: ConfigArg,
    /// The data_dir, instead of the configured one.
    #[arg(long, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// Print the stored JSON lines (list only).
    #[arg(long)]
    pub json: bool,
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

/// Arguments of `herald run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where the configuration is.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Reload when the config file's content changes, also when a
    /// Kubernetes ConfigMap mount swaps its `..data` symlink (the file is
    /// looked at every second).
    #[arg(long)]
    pub watch_config: bool,
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
        Command::Test(arg) => test(arg),
        Command::Queue(QueueCommand::Inspect(args)) => queue_inspect(args),
        Command::DeadLetter(DeadLetterCommand::List(args)) => dead_letter_list(args),
        Command::DeadLetter(DeadLetterCommand::Retry(args)) => dead_letter_retry(args),
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

fn test(arg: ConfigArg) -> ExitCode {
    let config = match load(&arg) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let identity = crate::identity::Identity::discover(
        config.agent.hostname.as_deref(),
        &config.agent.labels,
        &env,
    );
    let outcomes = crate::mapping::testing::run(&identity, &config.mappings, &config.tests);
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    for outcome in &outcomes {
        if outcome.passed() {
            println!("ok   {}", outcome.name);
        } else {
            println!("FAIL {} (line {})", outcome.name, outcome.line);
            for difference in &outcome.differences {
                println!("  {difference}");
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn run(args: RunArgs) -> ExitCode {
    let options = crate::agent::RunOptions {
        watch_config: args.watch_config,
    };
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
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
        match crate::agent::run(config, &env, shutdown, options).await {
            Ok(summary) if summary.sink_gone => ExitCode::from(EXIT_FAILURE),
            Ok(_) => ExitCode::SUCCESS,
            Err(e @ crate::agent::AgentError::DataDir(_)) => {
                error!(error = %e, "AgentFailed");
                ExitCode::from(EXIT_CANTCREAT)
            }
            Err(e) => {
                error!(error = %e, "AgentFailed");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// The data_dir a maintenance command works on: `--data-dir`, else the
/// configured one.
fn data_dir_of(
    dir: Option<PathBuf>,
    config: &ConfigArg,
) -> Result<(PathBuf, Option<Config>), ExitCode> {
    match dir {
        Some(dir) => Ok((dir, None)),
        None => {
            let config = load(config)?;
            Ok((
                crate::agent::existing_data_dir(&config.agent, &env),
                Some(config),
            ))
        }
    }
}

fn queue_inspect(args: InspectArgs) -> ExitCode {
    let data_dir = match data_dir_of(args.data_dir, &args.config) {
        Ok((dir, _)) => dir,
        Err(code) => return code,
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

fn dead_letter_list(args: DeadLetterArgs) -> ExitCode {
    let (data_dir, _) = match data_dir_of(args.data_dir, &args.config) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let letters = DeadLetters::new(&data_dir.join("dead-letter"), u64::MAX);
    let entries = match letters.read_all() {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!(
                "herald: cannot read the dead letters in {}: {e}",
                data_dir.display()
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        let line = match entry {
            Ok(value) if args.json => value.to_string(),
            Ok(value) => format!(
                "{}  {}  {}  {}  {}",
                value["time"].as_str().unwrap_or("?"),
                value["status"]
                    .as_u64()
                    .map_or("-".to_owned(), |s| s.to_string()),
                value["event"]["event"].as_str().unwrap_or("?"),
                value["event"]["id"].as_str().unwrap_or("?"),
                value["reason"].as_str().unwrap_or("?"),
            ),
            Err(problem) => format!("# {problem}"),
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::SUCCESS;
        }
    }
    if !args.json {
        eprintln!(
            "{} dead letter{}",
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        );
    }
    ExitCode::SUCCESS
}

fn dead_letter_retry(args: DeadLetterArgs) -> ExitCode {
    let (data_dir, config) = match data_dir_of(args.data_dir, &args.config) {
        Ok(found) => found,
        Err(code) => return code,
    };
    // Holding the lock proves no agent is sending from this queue now.
    let dir = match crate::data_dir::DataDir::open(&data_dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("herald: {e}; stop the agent first");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let letters = DeadLetters::new(&dir.dead_letter_dir(), u64::MAX);
    let entries = match letters.read_all() {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("herald: cannot read the dead letters: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut events = Vec::new();
    for entry in entries {
        match entry {
            Ok(value) if value["event"].is_object() => match serde_json::to_vec(&value["event"]) {
                Ok(bytes) => events.push(bytes),
                Err(e) => eprintln!("herald: skipping an entry: {e}"),
            },
            Ok(_) => eprintln!("herald: skipping an entry without an event"),
            Err(problem) => eprintln!("herald: skipping {problem}"),
        }
    }
    if events.is_empty() {
        eprintln!("no dead letters to retry");
        return ExitCode::SUCCESS;
    }
    let queue_config = config.map(|c| c.queue).unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let n = events.len();
    let queued = runtime.block_on(async {
        let (queue, _) = crate::queue::Queue::open(&dir.queue_dir(), queue_config)?;
        for chunk in events.chunks(1000) {
            queue.append(chunk.to_vec()).await?;
        }
        queue.close().await
    });
    if let Err(e) = queued {
        eprintln!("herald: cannot re-queue the dead letters (they are kept): {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Err(e) = letters.clear() {
        eprintln!("herald: re-queued {n} events but could not remove the dead letters: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    println!(
        "re-queued {n} event{}; the agent sends them when it starts",
        if n == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}
