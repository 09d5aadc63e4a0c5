//! `corral run`: any program as a supervised cluster on shared sockets.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::config::{ListenAddr, Reconfigure};
use crate::config_file::{ConfigFile, ConfigFileError};
use crate::control::ControlSocket;
use crate::error::Error;
use crate::events::EventStream;
use crate::logging::{LogFormat, last_word};
use crate::settings::OverlayError;
use corral_runtime::{ClusterConfig, ClusterError, ClusterEvent, ClusterHandle};

use super::{EXIT_FAILED, EXIT_USAGE, RunArgs};

/// `corral run`'s workers get their sockets from the primary; none may ask it to listen
/// anywhere else.
fn allow_only_configured_listeners(config: &mut ClusterConfig) {
    let listeners =
        config.exec.foreign().map(|f| f.listen.iter().map(|spec| spec.addr.to_string()).collect()).unwrap_or_default();
    config.listen_allow.get_or_insert(listeners);
}

/// Runs the cluster until it stops; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    // A SIGTERM (`docker stop`) while corral starts waits for its handler: a clean stop.
    crate::primary::Signals::hold();
    super::heap::one_arena();
    if args.config.as_deref().is_some_and(crate::config_file::CorralFile::is_tree) {
        return super::run_tree::run(args);
    }
    let format = log_format(&args);
    let mut config = match config(args.clone()) {
        Ok(config) => config,
        Err(message) => {
            last_word(format, "corral", &message.to_string());
            return EXIT_USAGE;
        }
    };
    if args.config.is_some() || args.settings.program.env_files.is_some() {
        // Every rolling reload (SIGHUP, `corral reload`) re-reads the file and the env files,
        // the flags over them: a new program, environment or worker count reaches the new
        // workers; a bad file is refused and the old workers serve on.
        config.reconfigure = Some(Reconfigure::new(move || config_of(args.clone()).map_err(Into::into)));
    }
    crate::logging::init(format);
    let outcome = crate::primary::run_primary::<(), (), _, _>(config, primary);
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            last_word(format, "corral", &e.to_string());
            match e {
                Error::Cluster(ClusterError::Config(_)) => EXIT_USAGE,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// The log format: `--log-format` or `$CORRAL_LOG_FORMAT` (clap reads both), else `[log]
/// format` of the file, else text.
fn log_format(args: &RunArgs) -> LogFormat {
    let named = args.settings.log.format.clone().or_else(|| {
        let file = ConfigFile::read(args.config.as_deref()?).ok()?;
        file.settings.log.format
    });
    named.and_then(|f| f.parse().ok()).unwrap_or_default()
}

/// Why `corral run` cannot start (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunConfigError {
    /// The file, or the file with the flags over it, is refused.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// The flags cannot be laid over the file.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Neither the command line nor the file names a program.
    #[error("no program to run: corral run [OPTIONS] -- PROGRAM [ARGS...] (or `program` in the file)")]
    NoProgram,
}

/// The configuration: the file (if any), then the flags over it.
fn config(args: RunArgs) -> Result<ClusterConfig, RunConfigError> {
    config_of(args)
}

fn config_of(args: RunArgs) -> Result<ClusterConfig, RunConfigError> {
    let mut file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::empty("command line"),
    };
    let mut flags = args.settings;
    if let Some((program, rest)) = args.command.split_first() {
        flags.program.program = Some(PathBuf::from(program));
        flags.program.args = Some(rest.to_vec());
    }
    file.settings.overlay(&flags)?;
    if file.settings.program.program.is_none() {
        return Err(RunConfigError::NoProgram);
    }
    let mut config = file.cluster_config()?;
    if let Some(name) = args.name {
        config.name = name;
    }
    if args.no_control {
        config.control = ControlSocket::Off;
    } else if let Some(path) = args.control {
        config.control = ControlSocket::Path(path);
    }
    allow_only_configured_listeners(&mut config);
    Ok(config)
}

/// The primary: once every worker is ready, one `listening on HOST:PORT` line per listener
/// on stdout (and `metrics on http://ADDR/metrics` with `--metrics`); then the cluster's events, logged, until it stops.
async fn primary(cluster: ClusterHandle<(), ()>, mut events: EventStream<()>) -> Result<(), corral_workers::BoxError> {
    let trim = tokio::spawn(super::heap::trim_forever());
    let mut ready = HashSet::new();
    let mut announced = false;
    while let Some(event) = events.recv().await {
        match &event {
            ClusterEvent::Ready { slot, .. } if !announced => {
                ready.insert(*slot);
                if ready.len() >= cluster.workers() {
                    announced = true;
                    announce(&cluster);
                }
            }
            ClusterEvent::Exit { slot, pid, status, exited_after_disconnect } => {
                tracing::info!(slot, pid, %status, exited_after_disconnect, "worker exited");
            }
            ClusterEvent::Reloaded { replaced, error: None } => tracing::info!(replaced, "reloaded"),
            other => tracing::debug!(event = ?other, "cluster event"),
        }
    }
    // The events end once the cluster has stopped; how it ended is `run_primary`'s answer.
    trim.abort();
    Ok(())
}

fn announce(cluster: &ClusterHandle<(), ()>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (_, addr) in cluster.activated_listeners() {
        let _ = match addr {
            ListenAddr::Tcp(tcp) => writeln!(out, "listening on {tcp}"),
            ListenAddr::Unix(path) => writeln!(out, "listening on unix:{}", path.display()),
        };
    }
    if let Some(addr) = cluster.metrics_addr() {
        let _ = writeln!(out, "metrics on http://{addr}/metrics");
    }
    let _ = out.flush();
}
