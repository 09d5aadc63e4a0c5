//! The guide's "combined example": the cluster for HTTP, a CPU pool for CPU-heavy work.
//!
//! ```text
//! cargo run --release --example 06_cpu_pool -- --port 3000
//! curl http://127.0.0.1:3000/           # OK, at once, even while…
//! curl http://127.0.0.1:3000/fib?n=42    # …this runs on the worker's CPU pool
//! ```
//!
//! Node needs `worker_threads` beside `cluster` for this, and a new `Worker` per request in
//! the guide's version; every corral worker has a pool of dedicated OS threads, reached with
//! `cx.cpu_pool()`. A full queue answers 503 instead of piling work up.

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use corral::cpu_pool::CpuPoolError;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::Deserialize;

#[derive(Parser)]
struct Args {
    /// Port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Workers (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// CPU pool threads per worker (default: the CPUs shared out among the workers).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    cpu_threads: Option<u16>,
}

#[derive(Deserialize)]
struct Fib {
    n: u32,
}

/// Deliberately slow: real CPU work.
fn fib(n: u32) -> u64 {
    if n < 2 { u64::from(n) } else { fib(n - 1) + fib(n - 2) }
}

struct Combined {
    addr: String,
}

impl Worker for Combined {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        let listener = cx.listen(&self.addr).await?;
        let pool = cx.cpu_pool().clone();
        let app = Router::new()
            .route("/", get(|| async { "OK\n" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .route(
                "/fib",
                get(move |query: Result<Query<Fib>, QueryRejection>| async move {
                    let Query(Fib { n }) =
                        query.map_err(|e| (StatusCode::BAD_REQUEST, format!("bad query: {}\n", e.body_text())))?;
                    if n > 50 {
                        return Err((StatusCode::BAD_REQUEST, "n must be at most 50\n".to_string()));
                    }
                    match pool.try_run(move || fib(n)) {
                        Ok(task) => match task.await {
                            Ok(value) => Ok(format!("fib({n}) = {value}\n")),
                            Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
                        },
                        Err(CpuPoolError::Busy) => Err((StatusCode::SERVICE_UNAVAILABLE, "busy, retry later\n".into())),
                        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
                    }
                }),
            );
        cx.spawn_tracked(corral::http::serve(listener, app, cx.shutdown_token(), Default::default()));
        println!("worker {} (pid {}) with {} CPU thread(s)", cx.slot(), std::process::id(), cx.cpu_pool().threads());
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let mut config = ClusterConfig::default().cpu_threads(args.cpu_threads.map(usize::from));
    if let Some(n) = args.workers {
        config = config.workers(usize::from(n));
    }
    corral::run(config, Combined { addr: format!("127.0.0.1:{}", args.port) }, |cluster, mut events| async move {
        let (mut ready, mut bound, mut announced) = (0, None, false);
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Listening { addr, .. } => bound = Some(addr),
                ClusterEvent::Ready { .. } => ready += 1,
                _ => {}
            }
            if !announced
                && ready >= cluster.workers()
                && let Some(addr) = bound
            {
                println!("listening on http://{addr}");
                announced = true;
            }
        }
        Ok(())
    })
}
