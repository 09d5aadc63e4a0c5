//! The `corral` command line: `corral run`, `corral init`, `corral check`, `corral schema`
//! and the control commands. `src/bin/corral.rs` calls [`main`].
//!
//! Exit codes (scripts rely on them): 0 after a clean stop, 1 when workers had to be killed,
//! a slot gave up, or the cluster could not start (an address in use), 2 for a usage or
//! configuration error.

mod ctl;
mod files;
mod heap;
mod run;
mod run_tree;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::settings::Settings;
use crate::settings::values::{parse_duration, parse_sig};

/// Exit code: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the cluster failed (killed workers, a slot gave up, a start that failed).
pub const EXIT_FAILED: i32 = 1;

/// Supervise any program as a cluster of worker processes on shared sockets.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run PROGRAM as supervised workers that share the listeners (socket activation).
    Run(Box<RunArgs>),
    /// Write a commented corral.toml with every option at its default.
    Init {
        /// Where to write it (`-`: print it).
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
    /// Print the JSON Schema of corral.toml (for editors: taplo, Even Better TOML).
    Schema,
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
    /// stopping at the first failure. A tree of programs: re-reads the file and adds, removes
    /// and rolls only the programs that changed; `reload NAME` rolls one program.
    Reload {
        /// A program of a tree.
        #[arg(value_name = "NAME")]
        program: Option<String>,
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
    /// Scale to N workers, or by +K / -K, or `auto` (back to autoscaling; a tree of programs:
    /// `scale NAME N`).
    Scale {
        /// N, +K, -K or auto; or, in a tree, the program's NAME.
        #[arg(allow_negative_numbers = true, value_name = "NAME|N|+K|-K|auto")]
        first: String,
        /// In a tree: N, +K, -K or auto.
        #[arg(allow_negative_numbers = true, value_name = "N|+K|-K|auto")]
        count: Option<String>,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Replace one slot's process (replacement first). A tree of programs: `restart NAME`
    /// replaces every process of the program, slot by slot (a rolling restart); `--slot N`
    /// only that slot.
    Restart {
        /// The slot; in a tree, the program's NAME.
        #[arg(value_name = "SLOT|NAME")]
        which: String,
        /// With a NAME: only this slot.
        #[arg(long, value_name = "N")]
        slot: Option<usize>,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Send a signal to one slot's process. A tree of programs: `signal NAME SIGNAL` sends it
    /// to every worker of the program; `--slot N` only to that slot's.
    Signal {
        /// The slot; in a tree, the program's NAME.
        #[arg(value_name = "SLOT|NAME")]
        which: String,
        /// The signal (TERM, SIGUSR1, 10, …).
        #[arg(value_parser = parse_sig)]
        signal: i32,
        /// With a NAME: only this slot.
        #[arg(long, value_name = "N")]
        slot: Option<usize>,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// Stop the cluster gracefully and wait until it has stopped. A tree of programs: `stop
    /// NAME` stops one program (it stays stopped until `corral start NAME`).
    Stop {
        /// A program of a tree.
        #[arg(value_name = "NAME")]
        program: Option<String>,
        /// How long to wait for it.
        #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        target: ctl::Target,
    },
    /// A tree of programs: start a stopped program (once what it depends on holds).
    Start {
        /// The program.
        #[arg(value_name = "NAME")]
        program: String,
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
    /// The workers' captured output, each line tagged with slot, pid and stream (and program,
    /// in a tree).
    Logs {
        /// Only this program's lines (a tree of programs).
        #[arg(value_name = "NAME")]
        program: Option<String>,
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

/// `corral run`: the settings (flags override the configuration file), the flags about the
/// invocation itself, and the program.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Every setting of `corral.toml`, as flags.
    #[command(flatten)]
    pub settings: Settings,
    /// A corral.toml to start from.
    #[arg(short, long, value_name = "FILE", help_heading = "Invocation")]
    pub config: Option<PathBuf>,
    /// The control socket (default: $XDG_RUNTIME_DIR/corral/NAME.sock, /run/corral for root).
    #[arg(long, value_name = "PATH", help_heading = "Invocation")]
    pub control: Option<PathBuf>,
    /// No control socket.
    #[arg(long, conflicts_with = "control", help_heading = "Invocation")]
    pub no_control: bool,
    /// The cluster's name (its default control socket is NAME.sock).
    #[arg(long, value_name = "NAME", help_heading = "Invocation")]
    pub name: Option<String>,
    /// The program and its arguments (or `program` and `args` in the file).
    #[arg(id = "program", last = true, value_name = "PROGRAM [ARGS]")]
    pub command: Vec<String>,
}

/// `corral run`'s command line, as clap sees it (without the defaults in its help).
pub fn run_command() -> clap::Command {
    RunArgs::augment_args(clap::Command::new("run"))
}

/// The book's reference page of every setting (`docs/src/reference/config.md`), with the
/// flags of `corral run` that are about the invocation only.
pub fn reference_page() -> String {
    crate::settings::reference_page(&invocation_flags())
}

/// The flags of `corral run` that are about the invocation, not a setting of the file:
/// each as `--flag VALUE`, with its help.
pub fn invocation_flags() -> Vec<(String, String)> {
    let settings = Settings::augment_args(clap::Command::new("settings"));
    run_command()
        .get_arguments()
        .filter(|a| a.get_long().is_some() && settings.get_arguments().all(|s| s.get_id() != a.get_id()))
        .map(|a| {
            let mut flag = format!("--{}", a.get_long().unwrap_or_default());
            if let Some(short) = a.get_short() {
                flag = format!("-{short}, {flag}");
            }
            if let Some(v) = a.get_value_names().and_then(|v| v.first()).filter(|_| a.get_action().takes_values()) {
                flag = format!("{flag} {v}");
            }
            (flag, a.get_help().map(ToString::to_string).unwrap_or_default())
        })
        .collect()
}

/// A `corral broadcast` message that is not JSON.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not JSON: {source}")]
struct NotJson {
    text: String,
    source: serde_json::Error,
}

fn parse_json(s: &str) -> Result<serde_json::Value, NotJson> {
    serde_json::from_str(s).map_err(|source| NotJson { text: s.to_string(), source })
}

/// Runs the command line; returns the process's exit code: 0 after a clean stop, 1 when
/// workers had to be killed, a slot gave up or the cluster could not start, 2 for a usage or
/// configuration error, 3 from `corral status` when a slot is not ready.
pub fn main() -> ExitCode {
    ExitCode::from(u8::try_from(code()).unwrap_or(1))
}

/// A command writing into a closed pipe (`corral status | head`) ends quietly, as Unix tools
/// do, instead of panicking in `println!`. Not for `run`: the primary keeps Rust's ignored
/// SIGPIPE, and a peer gone mid-write is an error it handles.
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called once at start, before any thread is spawned; SIG_DFL installs no handler
    // code, so nothing runs in signal context.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!(error = %e, "SIGPIPE left ignored");
    }
}

fn code() -> i32 {
    let command = Cli::command().mut_subcommand("run", crate::settings::with_defaults);
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Run(_)) {
        default_sigpipe();
    }
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Init { file, force } => files::init(&file, force),
        Command::Check { file } => files::check(&file),
        Command::Schema => files::schema(),
        Command::Status { json, watch, all, target } => ctl::status(&target, json, watch, all),
        Command::Reload { json, all: true, target, .. } => {
            ctl::simple(&target, crate::control::Command::ReloadAll, json, |d| {
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
            ctl::simple(&target, crate::control::Command::Broadcast { message }, json, |d| {
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
        Command::Reload { json, all: false, program: Some(program), target } => {
            ctl::simple(&target, crate::control::Command::ReloadProgram { program }, json, ctl::show_replaced)
        }
        Command::Reload { json, all: false, program: None, target } => {
            ctl::simple(&target, crate::control::Command::Reload, json, |d| {
                if d.get("added").is_some() {
                    return ctl::show_applied(d);
                }
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
        Command::Scale { first, count, target } => {
            let parsed = match count {
                None => ctl::parse_scale(&first),
                Some(n) => ctl::parse_scale(&n).map(|c| match c {
                    crate::control::Command::Scale { to, by, auto } => {
                        crate::control::Command::ScaleProgram { program: first, to, by, auto }
                    }
                    other => other,
                }),
            };
            match parsed {
                Ok(command) => ctl::simple(&target, command, false, ctl::scaled_line),
                Err(e) => ctl::usage(&e.to_string()),
            }
        }
        Command::Restart { which, slot, target } => match (which.parse::<usize>(), slot) {
            (Ok(slot), None) => ctl::simple(&target, crate::control::Command::Restart { slot }, false, |d| {
                format!("slot {}: pid {} -> {}\n", d["slot"], d["old_pid"], d["new_pid"])
            }),
            (_, slot) => ctl::simple(
                &target,
                crate::control::Command::RestartProgram { program: which, slot },
                false,
                ctl::show_replaced,
            ),
        },
        Command::Start { program, target } => {
            ctl::simple(&target, crate::control::Command::StartProgram { program }, false, |d| {
                format!("starting {}\n", d["program"].as_str().unwrap_or("?"))
            })
        }
        Command::Signal { which, signal, slot, target } => match (which.parse::<usize>(), slot) {
            (Ok(slot), None) => ctl::simple(&target, crate::control::Command::Signal { slot, signal }, false, |d| {
                format!("sent {} to slot {} (pid {})\n", d["signal"].as_str().unwrap_or("?"), d["slot"], d["pid"])
            }),
            (_, slot) => ctl::simple(
                &target,
                crate::control::Command::SignalProgram { program: which, slot, signal },
                false,
                ctl::show_signalled,
            ),
        },
        Command::Stop { program: Some(program), timeout, target } => ctl::stop_program(&target, program, timeout),
        Command::Stop { program: None, timeout, target } => ctl::stop(&target, timeout),
        Command::Upgrade { timeout, target } => ctl::upgrade(&target, timeout),
        Command::Config { json: _, target } => {
            ctl::simple(&target, crate::control::Command::Config, true, |_| String::new())
        }
        Command::Logs { program, follow, slot, lines, target } => ctl::logs(&target, follow, program, slot, lines),
    }
}
