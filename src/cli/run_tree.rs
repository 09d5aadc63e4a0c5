//! `corral run -c FILE` for a file with `[programs.NAME]` tables: a supervision tree of
//! programs. The flags about the invocation (`--control`, `--no-control`, `--name`) apply;
//! the settings are each program's, in the file.

use std::collections::HashSet;

use corral_runtime::tree::{TreeConfig, TreeError, TreeEvent, TreeEvents, TreeHandle, TreeReconfigure};
use corral_runtime::{ClusterEvent, ListenAddr};

use crate::config_file::{ConfigFileError, TreeFile};
use crate::control::ControlSocket;
use crate::error::Error;
use crate::logging::{LogFormat, last_word};
use crate::settings::Settings;

use super::{EXIT_FAILED, EXIT_USAGE, RunArgs};

/// Why a tree cannot start (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeRunError {
    /// The file is refused.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// Settings on the command line, which a tree's programs take from their tables.
    #[error(
        "{0} has [programs]: each program's settings are in its [programs.NAME] table, not on the command line (only --control, --no-control and --name apply)"
    )]
    Flags(String),
}

/// Runs the tree of `file` until it stops; returns the exit code.
pub(crate) fn run(args: RunArgs) -> i32 {
    let path = args.config.clone().unwrap_or_default();
    let file_format = TreeFile::read(&path).ok().and_then(|f| f.log.format);
    let format = args.settings.log.format.clone().or(file_format);
    let format: LogFormat = format.and_then(|f| f.parse().ok()).unwrap_or_default();
    let config = match tree_config(&args) {
        Ok(config) => config,
        Err(e) => {
            last_word(format, "corral", &e.to_string());
            return EXIT_USAGE;
        }
    };
    crate::logging::init(format);
    match crate::primary::run_tree::<(), (), _, _>(config, primary) {
        Ok(()) => 0,
        Err(e) => {
            last_word(format, "corral", &e.sentence());
            match e {
                Error::Tree(TreeError::Config(_)) => EXIT_USAGE,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// The tree of the file, with the invocation's flags; every reload re-reads it the same way.
fn tree_config(args: &RunArgs) -> Result<TreeConfig, TreeRunError> {
    let path = args.config.clone().unwrap_or_default();
    let mut flags = args.settings.clone();
    flags.log = Default::default();
    if flags != Settings::default() || !args.command.is_empty() {
        return Err(TreeRunError::Flags(path.display().to_string()));
    }
    let mut config = TreeFile::read(&path)?.tree_config()?;
    if let Some(name) = &args.name {
        config.name = name.clone();
    }
    if args.no_control {
        config.control = ControlSocket::Off;
    } else if let Some(path) = &args.control {
        config.control = ControlSocket::Path(path.clone());
    }
    let again = args.clone();
    config.reconfigure = Some(TreeReconfigure::new(move || tree_config(&again).map_err(Into::into)));
    Ok(config)
}

/// The primary: once every program is up, one `NAME: listening on HOST:PORT` line per
/// listener on stdout (a program added later: once it is ready); then the tree's events,
/// logged, until it stops.
async fn primary(tree: TreeHandle<(), ()>, mut events: TreeEvents<()>) -> Result<(), corral_workers::BoxError> {
    let trim = tokio::spawn(super::heap::trim_forever());
    let mut announced: Option<HashSet<String>> = None;
    while let Some(event) = events.recv().await {
        match &event {
            TreeEvent::Up => announced = Some(announce(&tree, &HashSet::new()).await),
            TreeEvent::Ready { program } => {
                if let Some(done) = &mut announced
                    && !done.contains(&**program)
                {
                    let new = announce(&tree, done).await;
                    done.extend(new);
                }
            }
            TreeEvent::Program {
                program,
                event: ClusterEvent::Exit { slot, pid, status, exited_after_disconnect },
            } => {
                tracing::info!(program = &**program, slot, pid, %status, exited_after_disconnect, "worker exited");
            }
            TreeEvent::Program { .. } => {}
            other => tracing::debug!(event = ?other, "tree event"),
        }
    }
    trim.abort();
    Ok(())
}

/// Prints the listeners of every running program not in `done`; returns the programs
/// printed.
async fn announce(tree: &TreeHandle<(), ()>, done: &HashSet<String>) -> HashSet<String> {
    use std::io::Write;
    let mut printed = HashSet::new();
    let Ok(programs) = tree.status().await else { return printed };
    let mut out = std::io::stdout().lock();
    for p in programs {
        let Some(cluster) = &p.cluster else { continue };
        if done.contains(&p.name) {
            continue;
        }
        for (_, addr) in cluster.activated_listeners() {
            let _ = match addr {
                ListenAddr::Tcp(tcp) => writeln!(out, "{}: listening on {tcp}", p.name),
                ListenAddr::Unix(path) => writeln!(out, "{}: listening on unix:{}", p.name, path.display()),
            };
        }
        if let Some(addr) = cluster.metrics_addr() {
            let _ = writeln!(out, "{}: metrics on http://{addr}/metrics", p.name);
        }
        printed.insert(p.name);
    }
    let _ = out.flush();
    printed
}
