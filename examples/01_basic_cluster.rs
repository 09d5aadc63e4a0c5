//! The basic cluster (Node guide: `01-basic-cluster.js`): a primary forks one worker per CPU,
//! each worker says it started, and every worker is restarted if it dies. Runs until SIGINT
//! or SIGTERM, then drains every worker and exits 0.
//!
//! ```text
//! cargo run --release --example 01_basic_cluster -- --workers 4
//! ```

use clap::Parser;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};

#[derive(Parser)]
struct Args {
    /// Number of workers (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

struct Basic;

impl Worker for Basic {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        println!("Worker {} started (slot {}, generation {})", std::process::id(), cx.slot(), cx.generation());
        Ok(())
    }

    async fn stop(&self, cx: &WorkerContext<()>, _state: ()) -> Result<(), BoxError> {
        println!("Worker {} (slot {}) stopping", std::process::id(), cx.slot());
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let mut config = ClusterConfig::default();
    if let Some(n) = args.workers {
        config = config.workers(usize::from(n));
    }
    if !corral::is_worker() {
        println!("Primary {} is running with {} workers", std::process::id(), config.workers);
    }
    corral::run(config, Basic, |_cluster, mut events| async move {
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Online { slot, pid, .. } => {
                    println!("Worker {pid} (slot {slot}) is online")
                }
                ClusterEvent::Exit { slot, pid, status, exited_after_disconnect: false } => {
                    println!("Worker {pid} (slot {slot}) died ({status}); restarting")
                }
                ClusterEvent::GaveUp { slot, restarts } => {
                    println!("Slot {slot} gave up after {restarts} restarts")
                }
                _ => {}
            }
        }
        Ok(())
    })
}
