//! Production patterns (Node guide: `05-production-patterns.js`): every production option of
//! a corral cluster, from a `corral.toml` (the format `corral run` reads, as PM2's ecosystem
//! file), plus a `pm2 ls`-style status table.
//!
//! ```text
//! cargo run --release --example 05_production_patterns -- --print-default > corral.toml
//! cargo run --release --example 05_production_patterns -- --config corral.toml --listen 127.0.0.1:3000
//! ```
//!
//! Signals: SIGINT/SIGTERM drain and exit, SIGHUP rolling reload, SIGTTIN / SIGTTOU one worker
//! more / fewer. Workers are restarted with backoff, recycled over `max_memory` or after
//! `max_requests`, and killed when their event loop stops answering heartbeats.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use corral::config_file::{ConfigFile, parse_duration, template};
use corral::status::{StatusTable, WorkerStatus};
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};

#[derive(Parser)]
struct Args {
    /// A corral.toml with the cluster's options (see --print-default); without one, the
    /// defaults below.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print a commented corral.toml with every option at its default and exit (`workers = 0`
    /// in it: one worker per CPU).
    #[arg(long)]
    print_default: bool,
    /// Where the app listens.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Print the status table this often (0s: never).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    status_every: Duration,
}

/// This app's production defaults, before the file: recycled at 512 MiB or after 100,000
/// requests (± 10,000, so that workers do not recycle together).
fn production_defaults() -> ClusterConfig {
    ClusterConfig::default().max_memory(Some(512 << 20)).max_requests(Some(100_000)).max_requests_jitter(10_000)
}

struct Web {
    listen: String,
}

impl Worker for Web {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        let listener = cx.listen(&self.listen).await?;
        let slot = cx.slot();
        let app = Router::new()
            .route("/", get(move || async move { format!("worker {slot} (pid {})\n", std::process::id()) }));
        cx.spawn_tracked(corral::http::serve(listener, app, cx.shutdown_token(), Default::default()));
        Ok(())
    }
}

/// The first version's JSON file: `{"listen": "127.0.0.1:3000", "workers": 4,
/// "status_every_ms": 5000, "max_memory_mib": 512, "max_requests": 100000}`, every key optional
/// (an absent or null limit: none); unknown keys are refused.
fn legacy_json(path: &std::path::Path, args: &Args) -> Result<(ClusterConfig, String, Duration), BoxError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Legacy {
        listen: Option<String>,
        workers: Option<usize>,
        status_every_ms: Option<u64>,
        max_memory_mib: Option<u64>,
        max_requests: Option<u64>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let legacy: Legacy = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config = ClusterConfig::default()
        .max_memory(legacy.max_memory_mib.map(|m| m << 20))
        .max_requests(legacy.max_requests)
        .max_requests_jitter(legacy.max_requests.map_or(0, |r| r / 10));
    if let Some(n) = legacy.workers {
        config = config.workers(n);
    }
    let every = legacy.status_every_ms.map_or(args.status_every, Duration::from_millis);
    Ok((config, legacy.listen.unwrap_or_else(|| args.listen.clone()), every))
}

/// A `pm2 ls`-style table.
fn print_table(rows: &[WorkerStatus]) {
    print!("{}", StatusTable(rows));
}

fn main() -> ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    if args.print_default {
        // Every option commented out at its default; `workers = 0` there means one per CPU.
        print!("{}", template());
        return ExitCode::SUCCESS;
    }
    let loaded = match &args.config {
        // The JSON file of this example's first version (kept for the scripts that use it).
        Some(path) if path.extension().is_some_and(|e| e == "json") => legacy_json(path, &args),
        Some(path) => ConfigFile::read(path)
            .and_then(|file| file.cluster_config_from(production_defaults()))
            .map(|config| (config, args.listen.clone(), args.status_every))
            .map_err(Into::into),
        None => Ok((production_defaults(), args.listen.clone(), args.status_every)),
    };
    // Every address is checked before any worker is forked.
    let checked = loaded.and_then(|(config, listen, every)| Ok((config, resolve(&listen)?, every)));
    let (config, listen, every) = match checked {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(corral::EXIT_CONFIG);
        }
    };
    corral::run(config, Web { listen }, move |cluster, mut events| async move {
        let mut tick = tokio::time::interval(if every.is_zero() { Duration::from_secs(3600) } else { every });
        let (mut ready, mut bound, mut announced) = (0, None, false);
        loop {
            tokio::select! {
                _ = tick.tick(), if !every.is_zero() => print_table(&cluster.status().await?),
                event = events.recv() => match event {
                    None => return Ok(()),
                    Some(ClusterEvent::Listening { addr, .. }) => bound = Some(addr),
                    Some(ClusterEvent::Ready { .. }) => ready += 1,
                    Some(ClusterEvent::Restarting { slot, delay, attempt }) => {
                        tracing::warn!(slot, ?delay, attempt, "worker restarting")
                    }
                    Some(ClusterEvent::GaveUp { slot, restarts }) => tracing::error!(slot, restarts, "worker gave up"),
                    Some(_) => {}
                },
            }
            if !announced
                && ready >= cluster.workers()
                && let Some(addr) = bound
            {
                println!("listening on http://{addr}");
                announced = true;
            }
        }
    })
}

/// `listen` as the one socket address it names (`127.0.0.1:70000` or an unknown host is
/// refused here, before any fork, not by the first worker that asks for it).
fn resolve(listen: &str) -> Result<String, BoxError> {
    use std::net::ToSocketAddrs;
    let mut addrs = listen.to_socket_addrs().map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = addrs.next().ok_or_else(|| format!("cannot listen on {listen}: it names no address"))?;
    Ok(addr.to_string())
}
