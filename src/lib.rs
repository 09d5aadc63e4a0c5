//! # corral
//!
//! Run a server as a cluster of OS worker processes under actor supervision: Node.js's
//! `cluster` rebuilt in Rust, with what PM2, gunicorn and Erlang/OTP supervisors add.
//!
//! One binary: [`main`] (or [`run`]) makes the process the **primary** when it was started
//! normally, and a **worker** when the primary started it (a marker in the environment, as
//! Node's `cluster.isPrimary`). The primary runs a [`Cluster`] actor with one supervisor per
//! worker slot (one-for-one restarts, exponential backoff with jitter, a restart-intensity
//! limit); each worker runs your [`Worker`] behaviour in a ractor actor and talks to the
//! primary in typed postcard frames over a socketpair.
//!
//! Linux only (it relies on `SCM_RIGHTS`, `PR_SET_PDEATHSIG` and `/proc`).
//!
//! ```no_run
//! use corral::{BoxError, ClusterConfig, Worker, WorkerContext};
//!
//! struct Web;
//!
//! impl Worker for Web {
//!     type Msg = ();
//!     type Report = ();
//!     type State = ();
//!
//!     async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
//!         tracing::info!(slot = cx.slot(), "worker up");
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), corral::Error> {
//!     corral::main(ClusterConfig::default().workers(4), Web)
//! }
//! ```
#![warn(missing_docs)]

mod error;
mod primary;

pub use corral_protocol as protocol;
pub use corral_runtime::{
    Backoff, Cluster, ClusterConfig, ClusterError, ClusterEvent, ClusterHandle, ClusterMsg, ConfigError, Escalation,
    EventStream, ExitStatus, OutputStream, PoolStats, ReloadReport, Replaced, Restart, RestartIntensity, Scale,
    ScaleReport, Scheduling, WorkerExec, WorkerOutput, WorkerState, WorkerStatus,
};
pub use corral_workers::http;
pub use corral_workers::{
    BoxError, Connection, CpuPool, CpuPoolConfig, CpuPoolError, CpuPoolHandle, CpuPoolStats, Listener, Worker,
    WorkerContext, WorkerError,
};
pub use error::Error;
pub use primary::{is_worker, main, run, run_if_worker};

/// Installs a `tracing` subscriber that prints to stderr, filtered by `RUST_LOG` (default
/// `info`). For examples and small programs; larger ones set up their own.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
