//! Worker communication (Node guide: `03-worker-communication.js`): typed messages from the
//! primary to one worker, a broadcast to all, and workers reporting metrics back.
//!
//! ```text
//! cargo run --release --example 03_worker_communication -- --workers 3 --rounds 3
//! ```
//!
//! Unlike Node's `process.send({ cmd: ... })`, both directions are Rust enums: a typo in a
//! command name is a compile error, not a message nobody answers.

use std::time::Duration;

use clap::Parser;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Metrics rounds before the primary shuts the cluster down (0: run until Ctrl-C).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// Primary → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Command {
    /// Reply with the current metrics.
    ReportMetrics,
    /// Change the greeting every worker uses (broadcast).
    SetGreeting(String),
    /// Do some work.
    Work { units: u32 },
}

/// Worker → primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Report {
    Status(String),
    Metrics { requests: u64, uptime_ms: u64, rss_kib: u64 },
}

struct Communicating;

struct State {
    greeting: String,
    requests: u64,
    started: std::time::Instant,
}

impl Worker for Communicating {
    type Msg = Command;
    type Report = Report;
    type State = State;

    async fn start(&self, cx: &WorkerContext<Report>) -> Result<State, BoxError> {
        cx.report(Report::Status(format!("worker {} ready", std::process::id()))).await?;
        Ok(State { greeting: "hello".into(), requests: 0, started: std::time::Instant::now() })
    }

    async fn handle(&self, cx: &WorkerContext<Report>, cmd: Command, st: &mut State) -> Result<(), BoxError> {
        match cmd {
            Command::ReportMetrics => {
                let rss_kib = std::fs::read_to_string("/proc/self/statm")
                    .ok()
                    .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .map_or(0, |pages| pages * 4);
                let uptime_ms = st.started.elapsed().as_millis() as u64;
                cx.report(Report::Metrics { requests: st.requests, uptime_ms, rss_kib }).await?;
            }
            Command::SetGreeting(greeting) => {
                st.greeting = greeting;
                cx.report(Report::Status(format!("slot {} now says {:?}", cx.slot(), st.greeting))).await?;
            }
            Command::Work { units } => st.requests += u64::from(units),
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let config = ClusterConfig::default().workers(usize::from(args.workers));
    corral::run(config, Communicating, move |cluster, mut events| async move {
        // Everyone ready first.
        let mut ready = 0;
        while ready < cluster.workers() {
            match events.recv().await {
                Some(ClusterEvent::Ready { .. }) => ready += 1,
                Some(ClusterEvent::Message { slot, message, .. }) => {
                    println!("[primary] from worker {slot}: {message:?}")
                }
                Some(_) => {}
                None => return Ok(()),
            }
        }
        // Broadcast to all workers.
        let reached = cluster.broadcast(Command::SetGreeting("bonjour".into())).await;
        println!("[primary] broadcast reached {reached} workers");

        let mut round = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if args.rounds != 0 && round == args.rounds {
                        break;
                    }
                    round += 1;
                    // Primary → one worker: give each some work, then ask for its metrics.
                    for slot in 0..cluster.workers() {
                        cluster.send_to(slot, Command::Work { units: (slot as u32 + 1) * round }).await?;
                        cluster.send_to(slot, Command::ReportMetrics).await?;
                    }
                }
                event = events.recv() => match event {
                    Some(ClusterEvent::Message { slot, message: Report::Metrics { requests, uptime_ms, rss_kib }, .. }) => {
                        println!("[primary] worker {slot} metrics: requests={requests} uptime={uptime_ms}ms rss={rss_kib}KiB");
                    }
                    Some(ClusterEvent::Message { slot, message, .. }) => println!("[primary] from worker {slot}: {message:?}"),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        println!("[primary] done; shutting down");
        Ok(())
    })
}
