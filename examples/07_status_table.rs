//! Every worker's health at a glance, like `pm2 ls`: an HTTP cluster whose primary prints
//! `Cluster::status()` as a table every second.
//!
//! ```text
//! cargo run --release --example 07_status_table -- --workers 4 --port 3000
//! curl http://127.0.0.1:3000/        # watch "handled" grow
//! kill -9 <a worker's pid>           # watch its row restart: new pid, gen + 1, restarts + 1
//! ```
//!
//! `--interval-ms` changes the period, `--count N` stops after N tables (0: until SIGINT /
//! SIGTERM). Each table starts with a `# <unix time in ms>` line.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use corral::status::StatusTable;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};

#[derive(Parser)]
struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// How often to print the table, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    /// Stop after this many tables (0: run until SIGINT / SIGTERM).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

struct Web {
    port: u16,
}

impl Worker for Web {
    type Msg = ();
    type Report = ();
    type State = tokio::task::JoinHandle<std::io::Result<()>>;

    async fn start(&self, cx: &WorkerContext<()>) -> Result<Self::State, BoxError> {
        let listener = cx.listen(&format!("127.0.0.1:{}", self.port)).await?;
        let slot = cx.slot();
        let app = Router::new().route("/", get(move || async move { format!("worker {slot}\n") }));
        Ok(tokio::spawn(corral::http::serve(listener, app, cx.shutdown_token(), Default::default())))
    }

    async fn stop(&self, _cx: &WorkerContext<()>, server: Self::State) -> Result<(), BoxError> {
        server.await??;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let config = ClusterConfig::default().workers(usize::from(args.workers));
    let (every, count) = (Duration::from_millis(args.interval_ms), args.count);
    corral::run(config, Web { port: args.port }, move |cluster, mut events| async move {
        let workers = cluster.workers();
        tokio::spawn(async move {
            let (mut ready, mut bound) = (0, None);
            while let Some(event) = events.recv().await {
                match event {
                    ClusterEvent::Listening { addr, .. } => bound = Some(addr),
                    ClusterEvent::Ready { .. } => ready += 1,
                    _ => {}
                }
                if ready >= workers
                    && let Some(addr) = bound
                {
                    println!("listening on http://{addr}");
                    break;
                }
            }
        });
        let mut tick = tokio::time::interval(every);
        let mut printed = 0;
        while count == 0 || printed < count {
            tick.tick().await;
            let rows = cluster.status().await?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            println!("# {}\n{}", now.as_millis(), StatusTable(&rows));
            printed += 1;
        }
        Ok(())
    })
}
