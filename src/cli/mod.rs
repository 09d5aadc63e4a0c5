//! The `corral` command line: `corral run`, `corral init`, `corral check`.
//!
//! Exit codes (scripts rely on them): 0 after a clean stop, 1 when workers had to be killed,
//! a slot gave up, or the cluster could not start (an address in use), 2 for a usage or
//! configuration error.

mod files;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use corral::config_file::{parse_duration, parse_signal, parse_size};
use corral::{ListenSpec, Readiness};

/// Exit code: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the cluster failed (killed workers, a slot gave up, a start that failed).
pub const EXIT_FAILED: i32 = 1;

/// Supervise any program as a cluster of worker processes on shared sockets.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM as supervised workers that share the listeners (socket activation).
    Run(Box<RunArgs>),
    /// Write a commented corral.toml with every option at its default.
    Init {
        /// Where to write it.
        #[arg(default_value = "corral.toml")]
        file: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a configuration file and print the effective configuration.
    Check {
        /// The file.
        #[arg(default_value = "corral.toml")]
        file: PathBuf,
    },
}

/// `corral run` (flags override the configuration file).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker processes (default: one per CPU).
    #[arg(short, long, value_name = "N")]
    pub workers: Option<usize>,
    /// A listener, [NAME=]ADDR: 127.0.0.1:8080, [::1]:0, unix:/path (repeatable).
    #[arg(short, long = "listen", value_name = "[NAME=]ADDR", value_parser = parse_listen)]
    pub listen: Vec<ListenSpec>,
    /// How the kernel shares connections.
    #[arg(long, value_name = "shared|reuseport", value_parser = ["shared", "reuseport"])]
    pub sched: Option<String>,
    /// When a new worker counts as ready.
    #[arg(long, value_name = "notify|delay:MS", value_parser = parse_ready)]
    pub ready: Option<Readiness>,
    /// The signal that asks a worker to drain (default SIGTERM).
    #[arg(long, value_name = "SIG", value_parser = parse_sig)]
    pub stop_signal: Option<i32>,
    /// How long a draining worker has before its process group is killed (default 5s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub kill_timeout: Option<Duration>,
    /// How long a new worker has to become ready (default 10s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub listen_timeout: Option<Duration>,
    /// Recycle a worker whose RSS stays over SIZE (e.g. 512MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Workers must send WATCHDOG=1 at least this often, or are replaced.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub watchdog: Option<Duration>,
    /// permanent, transient or temporary (default permanent).
    #[arg(long, value_name = "TYPE", value_parser = ["permanent", "transient", "temporary"])]
    pub restart: Option<String>,
    /// At most N restarts of one slot within --period, or it gives up.
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// The window of --max-restarts (default 10s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub period: Option<Duration>,
    /// A worker up this long is restarted at once; earlier deaths back off (default 1s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub min_uptime: Option<Duration>,
    /// inherit (default) or capture (each line logged with slot, pid, stream).
    #[arg(long, value_name = "MODE", value_parser = ["inherit", "capture"])]
    pub output: Option<String>,
    /// The workers' working directory.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Run the workers as this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run the workers as this group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// An environment variable for every worker, KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// A corral.toml to start from.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The program and its arguments (or `program` and `args` in the file).
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<String>,
}

fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    s.parse().map_err(|e: corral::ListenSpecError| e.to_string())
}

fn parse_ready(s: &str) -> Result<Readiness, String> {
    s.parse().map_err(|e: corral::ReadinessError| e.to_string())
}

fn parse_sig(s: &str) -> Result<i32, String> {
    parse_signal(s).ok_or_else(|| format!("{s:?} is not a signal"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Runs the command line; returns the process's exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Init { file, force } => files::init(&file, force),
        Command::Check { file } => files::check(&file),
    }
}
