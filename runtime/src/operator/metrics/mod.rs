//! The primary's metrics endpoint ([`ClusterConfig::metrics`](crate::config::cluster::ClusterConfig::metrics)):
//! an HTTP server of the primary itself (never of a worker, so it answers while workers
//! restart) with three pages:
//!
//! * `GET /metrics`: Prometheus text exposition (OpenMetrics when the scraper asks for it);
//!   every name is listed in README.md ("Metrics").
//! * `GET /status.json`: the status snapshot, as `corral status --json` prints it.
//! * `GET /`: a status page that refreshes itself, one row per worker with inline SVG
//!   sparklines of RSS and requests per second over the last five minutes.
//! * `GET /healthz` and `GET /readyz`: Kubernetes' liveness and readiness probes.
//!
//! | file            | what                                                        |
//! |-----------------|-------------------------------------------------------------|
//! | `addr.rs`       | `--metrics ADDR`: a bare port means 127.0.0.1               |
//! | `recorder.rs`   | counters fed by events: exits by reason, reloads, hangs     |
//! | `history.rs`    | the ring of samples behind the sparklines                   |
//! | `exposition.rs` | `/metrics`, encoded by `prometheus-client`                  |
//! | `page.rs`       | `/`, server-rendered HTML and SVG                           |
//! | `health.rs`     | `/healthz` and `/readyz`, the probes                        |
//! | `server.rs`     | the bounded hyper server and its routes                     |
//!
//! Cost: nothing on the request path. The figures already exist (the status snapshot, the
//! workers' heartbeat counters, relaxed atomics in the acceptor); the endpoint reads them
//! when scraped and samples the status every five seconds (BENCHMARKS.md).

mod addr;
mod exposition;
mod health;
mod history;
mod page;
mod recorder;
mod server;

pub use addr::{MetricsAddrError, parse_metrics_addr};
pub use health::LIVENESS_PATIENCE;
pub(crate) use recorder::Recorder;
pub use recorder::exit_reason;
pub use server::{CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES};
pub(crate) use server::{bind, serve};

/// User and system CPU time of process `pid`, in seconds, read from `/proc`; `None` when it
/// is gone.
///
/// ```
/// let me = corral_runtime::metrics::process_cpu_seconds(std::process::id());
/// assert!(me.is_some_and(|s| s >= 0.0));
/// ```
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    crate::sys::procfs::cpu_ticks(pid).map(|ticks| ticks as f64 / crate::sys::procfs::ticks_per_second())
}
