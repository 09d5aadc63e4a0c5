//! `corral run`: any program as a supervised cluster on shared sockets.

use std::collections::HashSet;
use std::path::PathBuf;

use corral::config_file::ConfigFile;
use corral::{
    ClusterConfig, ClusterError, ClusterEvent, ClusterHandle, ControlSocket, Error, EventStream, ListenAddr,
    Reconfigure,
};

use super::{EXIT_FAILED, EXIT_USAGE, RunArgs};

/// `corral run`'s workers get their sockets from the primary; none may ask it to listen
/// anywhere else.
fn allow_only_configured_listeners(config: &mut corral::ClusterConfig) {
    let listeners =
        config.exec.foreign().map(|f| f.listen.iter().map(|spec| spec.addr.to_string()).collect()).unwrap_or_default();
    config.listen_allow.get_or_insert(listeners);
}

/// Runs the cluster until it stops; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    let mut config = match config(args.clone()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("corral: {message}");
            return EXIT_USAGE;
        }
    };
    if args.config.is_some() {
        // Every rolling reload (SIGHUP, `corral reload`) re-reads the file, the flags over it:
        // a new program, environment or worker count reaches the new workers; a bad file is
        // refused and the old workers serve on.
        config.reconfigure = Some(Reconfigure::new(move || config_of(args.clone()).map_err(Into::into)));
    }
    corral::init_tracing();
    let outcome = corral::run_primary::<(), (), _, _>(config, primary);
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("corral: {e}");
            match e {
                Error::Cluster(ClusterError::Config(_)) => EXIT_USAGE,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// The configuration: the file (if any), then the flags over it.
fn config(args: RunArgs) -> Result<ClusterConfig, String> {
    config_of(args)
}

fn config_of(args: RunArgs) -> Result<ClusterConfig, String> {
    let mut file = match &args.config {
        Some(path) => ConfigFile::read(path).map_err(|e| e.to_string())?,
        None => ConfigFile::empty("command line"),
    };
    if let Some((program, rest)) = args.program.split_first() {
        file.program = Some(PathBuf::from(program));
        file.args = Some(rest.to_vec());
    }
    if file.program.is_none() {
        return Err("no program to run: corral run [OPTIONS] -- PROGRAM [ARGS...] (or `program` in the file)".into());
    }
    if args.workers.is_some() {
        file.workers = args.workers;
    }
    if !args.listen.is_empty() {
        file.listen = Some(args.listen.iter().map(ToString::to_string).collect());
    }
    override_with(&mut file.sched, args.sched);
    override_with(&mut file.ready, args.ready.map(|r| r.to_string()));
    override_with(&mut file.stop_signal, args.stop_signal.map(|s| s.to_string()));
    override_with(&mut file.kill_timeout, args.kill_timeout);
    override_with(&mut file.listen_timeout, args.listen_timeout);
    override_with(&mut file.max_memory, args.max_memory);
    override_with(&mut file.watchdog, args.watchdog);
    override_with(&mut file.restart, args.restart);
    override_with(&mut file.max_restarts, args.max_restarts);
    override_with(&mut file.period, args.period);
    override_with(&mut file.min_uptime, args.min_uptime);
    override_with(&mut file.output, args.output);
    override_with(&mut file.cwd, args.cwd);
    override_with(&mut file.user, args.user);
    override_with(&mut file.group, args.group);
    if args.node.is_some() || args.node_listen.is_some() || !args.join.is_empty() || args.cookie_file.is_some() {
        let node = file.node.get_or_insert_default();
        override_with(&mut node.name, args.node);
        override_with(&mut node.listen, args.node_listen);
        override_with(&mut node.cookie_file, args.cookie_file);
        if !args.join.is_empty() {
            node.seeds = Some(args.join);
        }
    }
    if !args.env.is_empty() {
        file.env.get_or_insert_default().extend(args.env);
    }
    let mut config = file.cluster_config().map_err(|e| e.to_string())?;
    if let Some(name) = args.name {
        config.name = name;
    }
    if args.no_control {
        config.control = ControlSocket::Off;
    } else if let Some(path) = args.control {
        config.control = ControlSocket::Path(path);
    }
    if args.metrics.is_some() {
        config.metrics = args.metrics;
    }
    allow_only_configured_listeners(&mut config);
    Ok(config)
}

fn override_with<T>(field: &mut Option<T>, flag: Option<T>) {
    if flag.is_some() {
        *field = flag;
    }
}

/// The primary: once every worker is ready, one `listening on HOST:PORT` line per listener
/// on stdout (and `metrics on http://ADDR/metrics` with `--metrics`); then the cluster's events, logged, until it stops.
async fn primary(cluster: ClusterHandle<(), ()>, mut events: EventStream<()>) -> Result<(), corral::BoxError> {
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
