//! The `corral` command line: `corral run`, `corral init`, `corral check`.
//!
//! Exit codes (scripts rely on them): 0 after a clean stop, 1 when workers had to be killed,
//! a slot gave up, or the cluster could not start (an address in use), 2 for a usage or
//! configuration error.

mod ctl;
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
    /// The workers of a running cluster, as a table (exit 3 unless every slot is ready; with
    /// --json, 0 whenever the cluster answered).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Every worker of every node of the node set, with its node's name.
        #[arg(long)]
        all: bool,
        /// Refresh every second, in place.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Rolling reload; waits for it and reports per slot (exit 1 when it aborted). With
    /// --all, across the node set one node at a time (each node's reload, then its health),
    /// stopping at the first failure.
    Reload {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Every node of the node set, one at a time.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Send a message to every worker on every node of the node set (JSON of the cluster's
    /// message type; `null` for `corral run`'s).
    Broadcast {
        /// The message, as JSON.
        #[arg(default_value = "null", value_parser = parse_json)]
        message: serde_json::Value,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Scale to N workers, or by +K / -K.
    Scale {
        /// N, +K or -K.
        #[arg(allow_hyphen_values = true, value_name = "N|+K|-K")]
        count: String,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Replace one slot's process (replacement first).
    Restart {
        /// The slot.
        slot: usize,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Send a signal to one slot's process.
    Signal {
        /// The slot.
        slot: usize,
        /// The signal (TERM, SIGUSR1, 10, …).
        #[arg(value_parser = parse_sig)]
        signal: i32,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Stop the cluster gracefully and wait until it has stopped.
    Stop {
        /// How long to wait for it.
        #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Upgrade the primary in place: it checks the executable now on disk, hands its sockets
    /// and workers over and execs it (same pid); the new image replaces the workers. Waits
    /// until every slot runs a new worker (exit 1 when refused or not complete in time).
    Upgrade {
        /// How long to wait for the new workers.
        #[arg(long, value_name = "DUR", default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// The running cluster's effective configuration.
    Config {
        /// Print JSON (the default; kept for symmetry).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// The workers' captured output, each line tagged with slot, pid and stream.
    Logs {
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only this slot's lines.
        #[arg(long, value_name = "N")]
        slot: Option<usize>,
        /// How many past lines.
        #[arg(long, value_name = "N", default_value_t = 100)]
        lines: usize,
        #[command(flatten)]
        target: ctl::Target,
    },
}

/// `corral run` (flags override the configuration file).
#[derive(Debug, Clone, Args)]
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
    /// capture (default: each line logged with slot, pid, stream, kept for `corral logs`) or inherit.
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
    /// The control socket (default: $XDG_RUNTIME_DIR/corral/NAME.sock, /run/corral for root).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// No control socket.
    #[arg(long, conflicts_with = "control")]
    pub no_control: bool,
    /// The cluster's name (its default control socket is NAME.sock).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Join a node set as node NAME (needs --node-listen and a cookie; the `cluster` feature).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The node server's address, IP:PORT.
    #[arg(long, value_name = "ADDR")]
    pub node_listen: Option<String>,
    /// A node server to join, IP:PORT (repeatable).
    #[arg(long = "join", value_name = "ADDR")]
    pub join: Vec<String>,
    /// A file (mode 0600) holding the node set's cookie (default: $CORRAL_COOKIE).
    #[arg(long, value_name = "PATH")]
    pub cookie_file: Option<PathBuf>,
    /// A corral.toml to start from.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve /metrics (Prometheus), /status.json and a status page on ADDR (IP:PORT, or a
    /// bare PORT for 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics)]
    pub metrics: Option<std::net::SocketAddr>,
    /// The program and its arguments (or `program` and `args` in the file).
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<String>,
}

fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    s.parse().map_err(|e: corral::ListenSpecError| e.to_string())
}

fn parse_metrics(s: &str) -> Result<std::net::SocketAddr, String> {
    corral::parse_metrics_addr(s).map_err(|e| e.to_string())
}

fn parse_ready(s: &str) -> Result<Readiness, String> {
    s.parse().map_err(|e: corral::ReadinessError| e.to_string())
}

fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("{s:?} is not JSON: {e}"))
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
        Command::Status { json, watch, all, target } => ctl::status(&target, json, watch, all),
        Command::Reload { json, all: true, target } => {
            ctl::simple(&target, corral::control::Command::ReloadAll, json, |d| {
                let nodes = d["nodes"].as_array().cloned().unwrap_or_default();
                let mut out = String::new();
                for n in &nodes {
                    let replaced = n["replaced"]["replaced"].as_array().map_or(0, Vec::len);
                    out.push_str(&format!(
                        "node {}: reloaded {replaced} workers, healthy\n",
                        n["node"].as_str().unwrap_or("?")
                    ));
                }
                out.push_str(&format!("reloaded {} nodes\n", nodes.len()));
                out
            })
        }
        Command::Broadcast { message, json, target } => {
            ctl::simple(&target, corral::control::Command::Broadcast { message }, json, |d| {
                let mut out = String::new();
                for n in d["nodes"].as_array().cloned().unwrap_or_default() {
                    match n["error"].as_str() {
                        Some(e) => out.push_str(&format!("{e}\n")),
                        None => out.push_str(&format!(
                            "node {}: reached {} of {} workers\n",
                            n["node"].as_str().unwrap_or("?"),
                            n["reached"],
                            n["workers"]
                        )),
                    }
                }
                out
            })
        }
        Command::Reload { json, all: false, target } => {
            ctl::simple(&target, corral::control::Command::Reload, json, |d| {
                let replaced = d["replaced"].as_array().cloned().unwrap_or_default();
                let mut out = String::new();
                for r in &replaced {
                    out.push_str(&format!(
                        "slot {}: pid {} -> {} (generation {})\n",
                        r["slot"], r["old_pid"], r["new_pid"], r["generation"]
                    ));
                }
                out.push_str(&format!("reloaded {} workers\n", replaced.len()));
                out
            })
        }
        Command::Scale { count, target } => match ctl::parse_scale(&count) {
            Ok(command) => ctl::simple(&target, command, false, |d| format!("scaled {} -> {}\n", d["from"], d["to"])),
            Err(e) => ctl::usage(&e),
        },
        Command::Restart { slot, target } => {
            ctl::simple(&target, corral::control::Command::Restart { slot }, false, |d| {
                format!("slot {}: pid {} -> {}\n", d["slot"], d["old_pid"], d["new_pid"])
            })
        }
        Command::Signal { slot, signal, target } => {
            ctl::simple(&target, corral::control::Command::Signal { slot, signal }, false, |d| {
                format!("sent {} to slot {} (pid {})\n", d["signal"].as_str().unwrap_or("?"), d["slot"], d["pid"])
            })
        }
        Command::Stop { timeout, target } => ctl::stop(&target, timeout),
        Command::Upgrade { timeout, target } => ctl::upgrade(&target, timeout),
        Command::Config { json: _, target } => {
            ctl::simple(&target, corral::control::Command::Config, true, |_| String::new())
        }
        Command::Logs { follow, slot, lines, target } => ctl::logs(&target, follow, slot, lines),
    }
}
