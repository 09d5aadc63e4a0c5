//! Production patterns (Node guide: `05-production-patterns.js`): every production option of
//! a corral cluster, from a JSON config file (as PM2's ecosystem file), plus a `pm2 ls`-style
//! status table.
//!
//! ```text
//! cargo run --release --example 05_production_patterns -- --print-default > corral.json
//! cargo run --release --example 05_production_patterns -- --config corral.json
//! ```
//!
//! Signals: SIGINT/SIGTERM drain and exit, SIGHUP rolling reload, SIGTTIN / SIGTTOU one worker
//! more / fewer. Workers are restarted with backoff, recycled over `max_memory_mib` or after
//! `max_requests`, and killed when their event loop stops answering heartbeats.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use corral::{
    Backoff, BoxError, ClusterConfig, ClusterEvent, Escalation, Restart, Scheduling, StatusTable, Worker,
    WorkerContext, WorkerStatus,
};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// JSON config file (see --print-default).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print the default config as JSON and exit.
    #[arg(long)]
    print_default: bool,
}

/// The config file: every production option, with units in the names.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Production {
    listen: String,
    /// 0: one per CPU.
    workers: usize,
    /// "round_robin", "least_connections", "shared" or "reuse_port".
    scheduling: String,
    /// "permanent", "transient" or "temporary".
    restart: String,
    backoff_base_ms: u64,
    backoff_factor: f64,
    backoff_max_ms: u64,
    backoff_jitter: f64,
    min_uptime_ms: u64,
    max_restarts: u32,
    period_ms: u64,
    /// "stop" or "degraded".
    escalation: String,
    kill_timeout_ms: u64,
    listen_timeout_ms: u64,
    heartbeat_interval_ms: u64,
    heartbeat_timeout_ms: u64,
    max_memory_mib: Option<u64>,
    max_requests: Option<u64>,
    max_requests_jitter: u64,
    /// Print the status table this often (0: never).
    status_every_ms: u64,
}

impl Default for Production {
    fn default() -> Self {
        let d = ClusterConfig::default();
        Production {
            listen: "127.0.0.1:3000".into(),
            workers: 0,
            scheduling: "round_robin".into(),
            restart: "permanent".into(),
            backoff_base_ms: d.backoff.base.as_millis() as u64,
            backoff_factor: d.backoff.factor,
            backoff_max_ms: d.backoff.max.as_millis() as u64,
            backoff_jitter: d.backoff.jitter,
            min_uptime_ms: d.min_uptime.as_millis() as u64,
            max_restarts: d.max_restarts,
            period_ms: d.period.as_millis() as u64,
            escalation: "stop".into(),
            kill_timeout_ms: d.kill_timeout.as_millis() as u64,
            listen_timeout_ms: d.listen_timeout.as_millis() as u64,
            heartbeat_interval_ms: d.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: d.heartbeat_timeout.as_millis() as u64,
            max_memory_mib: Some(512),
            max_requests: Some(100_000),
            max_requests_jitter: 10_000,
            status_every_ms: 5_000,
        }
    }
}

impl Production {
    fn cluster_config(&self) -> Result<ClusterConfig, String> {
        let ms = Duration::from_millis;
        let mut c = ClusterConfig::default()
            .scheduling(match self.scheduling.as_str() {
                "round_robin" => Scheduling::RoundRobin,
                "least_connections" => Scheduling::LeastConnections,
                "shared" => Scheduling::Shared,
                "reuse_port" => Scheduling::ReusePort,
                other => return Err(format!("scheduling: unknown value {other:?}")),
            })
            .restart(match self.restart.as_str() {
                "permanent" => Restart::Permanent,
                "transient" => Restart::Transient,
                "temporary" => Restart::Temporary,
                other => return Err(format!("restart: unknown value {other:?}")),
            })
            .escalation(match self.escalation.as_str() {
                "stop" => Escalation::Stop,
                "degraded" => Escalation::Degraded,
                other => return Err(format!("escalation: unknown value {other:?}")),
            })
            .backoff(Backoff {
                base: ms(self.backoff_base_ms),
                factor: self.backoff_factor,
                max: ms(self.backoff_max_ms),
                jitter: self.backoff_jitter,
            })
            .min_uptime(ms(self.min_uptime_ms))
            .max_restarts(self.max_restarts)
            .period(ms(self.period_ms))
            .kill_timeout(ms(self.kill_timeout_ms))
            .listen_timeout(ms(self.listen_timeout_ms))
            .heartbeat_interval(ms(self.heartbeat_interval_ms))
            .heartbeat_timeout(ms(self.heartbeat_timeout_ms))
            .max_memory(self.max_memory_mib.map(|m| m << 20))
            .max_requests(self.max_requests)
            .max_requests_jitter(self.max_requests_jitter);
        if self.workers != 0 {
            c = c.workers(self.workers);
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
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

/// A `pm2 ls`-style table.
fn print_table(rows: &[WorkerStatus]) {
    print!("{}", StatusTable(rows));
}

fn main() -> Result<(), BoxError> {
    corral::init_tracing();
    let args = Args::parse();
    if args.print_default {
        println!("{}", serde_json::to_string_pretty(&Production::default())?);
        return Ok(());
    }
    let production: Production = match &args.config {
        Some(path) => {
            serde_json::from_str(&std::fs::read_to_string(path)?).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Production::default(),
    };
    let config = production.cluster_config().map_err(|e| format!("bad config: {e}"))?;
    let every = Duration::from_millis(production.status_every_ms);
    corral::run(config, Web { listen: production.listen.clone() }, move |cluster, mut events| async move {
        let mut tick = tokio::time::interval(if every.is_zero() { Duration::from_secs(3600) } else { every });
        loop {
            tokio::select! {
                _ = tick.tick(), if !every.is_zero() => print_table(&cluster.status().await?),
                event = events.recv() => match event {
                    None => return Ok(()),
                    Some(ClusterEvent::Restarting { slot, delay, attempt }) => {
                        tracing::warn!(slot, ?delay, attempt, "worker restarting")
                    }
                    Some(ClusterEvent::GaveUp { slot, restarts }) => tracing::error!(slot, restarts, "worker gave up"),
                    Some(_) => {}
                },
            }
        }
    })?;
    Ok(())
}
