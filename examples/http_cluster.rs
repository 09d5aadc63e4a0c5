//! The flagship: an axum HTTP server run as a corral cluster on one shared port.
//!
//! ```text
//! cargo run --release --example http_cluster -- --workers 4 --port 3000 --sched rr
//! # --spares 1: a warm spare takes a dead worker's place at once
//! # --workers 2..8: autoscaled between 2 and 8 workers by load (corral scale N pins, auto resumes)
//! # or --sched lc | shared | reuseport | sticky (one worker per client IP)
//! curl http://127.0.0.1:3000/            # Handled by worker 2 (pid 12345)
//! curl http://127.0.0.1:3000/slow?ms=200 # answers after 200 ms
//! curl http://127.0.0.1:3000/heavy?ms=50 # burns about 50 ms of CPU on the worker's CPU pool
//! ```
//!
//! The primary prints `listening on http://HOST:PORT` once every worker is ready (and, with
//! `--metrics ADDR`, `metrics on http://ADDR/metrics`: Prometheus metrics, `/status.json` and
//! a status page at `/`). SIGINT or
//! SIGTERM drains the workers (in-flight requests finish) and exits 0.
//!
//! Built with `--features telemetry` (as README's command does), it exports its traces over
//! OTLP whenever `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc`
//! or `http/protobuf`): per request, the primary's `dispatch` span, the worker's `connection`
//! span and the request's `GET` span form one trace.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use corral::config::{Autoscale, Scheduling};
use corral::settings::Workers;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::Deserialize;

#[derive(Parser, Clone)]
struct Args {
    /// Number of workers (default: the number of CPUs), or MIN..MAX to autoscale by load.
    #[arg(long, value_name = "N|MIN..MAX", value_parser = workers)]
    workers: Option<Workers>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Warm spares: started, ready, idle workers; one takes a worker's place at once when it
    /// dies or is recycled.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    spares: u16,
    /// How connections are shared out among the workers.
    #[arg(long, value_enum, default_value_t = Sched::Rr)]
    sched: Sched,
    /// Serve /metrics, /status.json and a status page on ADDR (IP:PORT, or a bare PORT for
    /// 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = corral::metrics::parse_metrics_addr)]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sched {
    /// Round robin: the primary accepts and passes connections in turn.
    Rr,
    /// Least connections: to the worker with the fewest open connections.
    Lc,
    /// The listening socket is shared; workers accept.
    Shared,
    /// Each worker has its own SO_REUSEPORT socket.
    Reuseport,
    /// Sticky: every connection from one client IP to the same worker.
    Sticky,
}

impl From<Sched> for Scheduling {
    fn from(s: Sched) -> Self {
        match s {
            Sched::Rr => Scheduling::RoundRobin,
            Sched::Lc => Scheduling::LeastConnections,
            Sched::Shared => Scheduling::Shared,
            Sched::Reuseport => Scheduling::ReusePort,
            Sched::Sticky => Scheduling::Sticky,
        }
    }
}

/// The longest `/slow` or `/heavy` accepts, in milliseconds.
const MAX_MS: u64 = 60_000;

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

fn millis(query: Result<Query<Millis>, QueryRejection>) -> Result<Duration, (StatusCode, String)> {
    let Query(Millis { ms }) =
        query.map_err(|e| (StatusCode::BAD_REQUEST, format!("bad query: {}\n", e.body_text())))?;
    if ms > MAX_MS {
        return Err((StatusCode::BAD_REQUEST, format!("bad query: ms must be at most {MAX_MS}\n")));
    }
    Ok(Duration::from_millis(ms))
}

/// Real CPU work for about `budget`: hashing, not sleeping.
fn burn(budget: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rounds = 0u64;
    while start.elapsed() < budget {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        rounds += 1;
    }
    x.wrapping_add(rounds)
}

fn router(slot: usize, pool: corral::cpu_pool::CpuPoolHandle) -> Router {
    // The answer to `/` never changes in this process: built once, not formatted per request
    // (a `format!` per request was 4 % of a worker's time under a keep-alive load). Leaked
    // once per process, so every request borrows the same bytes.
    let hello: &'static str = format!("Handled by worker {slot} (pid {})\n", std::process::id()).leak();
    Router::new()
        .route("/", get(move || async move { hello }))
        .route(
            "/slow",
            get(|q: Result<Query<Millis>, QueryRejection>| async move {
                let wait = millis(q)?;
                tokio::time::sleep(wait).await;
                Ok::<_, (StatusCode, String)>(format!("slept {} ms\n", wait.as_millis()))
            }),
        )
        .route(
            "/heavy",
            get(move |q: Result<Query<Millis>, QueryRejection>| async move {
                let budget = millis(q)?;
                // On the worker's CPU pool: the event loop keeps answering other requests.
                let result = pool
                    .run(move || burn(budget))
                    .await
                    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("cpu pool: {e}\n")))?;
                Ok::<_, (StatusCode, String)>(format!("burned {} ms of CPU ({result:x})\n", budget.as_millis()))
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

struct Http {
    addr: String,
}

impl Worker for Http {
    type Msg = ();
    type Report = ();
    type State = tokio::task::JoinHandle<std::io::Result<()>>;

    async fn start(&self, cx: &WorkerContext<()>) -> Result<Self::State, BoxError> {
        let listener = cx.listen(&self.addr).await?;
        // corral's serve drains without breaking keep-alive clients (see corral::http).
        let server = corral::http::serve(
            listener,
            router(cx.slot(), cx.cpu_pool().clone()),
            cx.shutdown_token(),
            Default::default(),
        );
        Ok(tokio::spawn(server))
    }

    async fn stop(&self, _cx: &WorkerContext<()>, server: Self::State) -> Result<(), BoxError> {
        // The shutdown token is cancelled: serve stops accepting, answers `Connection: close`,
        // and returns once every connection has finished.
        server.await??;
        Ok(())
    }
}

/// `--workers`: 1 to 1024 workers, or a range of them.
fn workers(s: &str) -> Result<Workers, String> {
    let within = |n: usize| (1..=corral::config::MAX_WORKERS).contains(&n);
    match s.parse::<Workers>().map_err(|e| e.to_string())? {
        Workers::Count(n) if !within(n) => Err(format!("{n} is not in 1..=1024")),
        Workers::Range(r) if !within(r.max) => Err(format!("{r}: at most 1024 workers")),
        ok => Ok(ok),
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let addr = std::net::SocketAddr::new(args.host, args.port).to_string();
    let mut config =
        ClusterConfig::default().scheduling(args.sched.into()).metrics(args.metrics).spares(usize::from(args.spares));
    match args.workers {
        None => {}
        Some(Workers::Count(n)) => config = config.workers(n),
        Some(Workers::Range(range)) => config = config.autoscale(Some(Autoscale::range(range))),
    }
    corral::run(config, Http { addr }, |cluster, mut events| async move {
        let mut ready = 0;
        let mut bound = None;
        let mut announced = false;
        let mut stopping = false;
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Listening { addr, .. } => bound = Some(addr),
                ClusterEvent::Ready { .. } => ready += 1,
                ClusterEvent::Stopping => stopping = true,
                ClusterEvent::Exit { slot, status, exited_after_disconnect: false, .. } if !stopping => {
                    tracing::warn!(slot, %status, "worker died; restarting it");
                }
                _ => {}
            }
            if !announced
                && ready >= cluster.workers()
                && let Some(addr) = bound
            {
                println!("listening on http://{addr}");
                if let Some(metrics) = cluster.metrics_addr() {
                    println!("metrics on http://{metrics}/metrics");
                }
                announced = true;
            }
        }
        Ok(())
    })
}
