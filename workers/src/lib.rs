//! corral's worker side: what runs inside each worker process.
//!
//! A worker's behaviour is a [`Worker`]: `start`, `handle` a message from the primary,
//! `stop`. A ractor actor drives it, one message at a time, on the worker's own
//! single-threaded tokio runtime. [`run`] does the rest: it finds the socket ends the primary
//! left at fixed fds, says hello, answers heartbeats from the event loop, delivers the
//! primary's messages to the actor (with backpressure), sends the behaviour's reports, and
//! drains on shutdown, SIGTERM or the primary's death.
//!
//! Most users go through the `corral` facade (`corral::main`), which calls [`run`] when the
//! process was started as a worker. Linux only.
//!
//! What it holds:
//!
//! * [`Worker`], the trait a behaviour implements, and [`WorkerContext`], what the behaviour
//!   can reach: its slot, reports to the primary, messages to other workers (and the
//!   [`Origin`] of the message it handles), readiness, listening, the drain signal;
//! * [`Listener`] and [`Connection`]: listening through the primary, whatever the cluster's
//!   scheduling; [`http`] serves an axum app on a listener with a drain that loses no request;
//! * [`CpuPool`] and [`CpuPoolHandle`]: dedicated OS threads for CPU-heavy work, so that it
//!   never stalls the worker's event loop;
//! * [`run`] and the process's exit codes ([`EXIT_OK`] …); [`WorkerError`], [`Stage`] and
//!   [`BoxError`], the errors.
//!
//! # Example
//!
//! ```no_run
//! use corral_workers::{BoxError, Worker, WorkerContext};
//!
//! struct Hello;
//!
//! impl Worker for Hello {
//!     type Msg = String;
//!     type Report = String;
//!     type State = ();
//!
//!     async fn start(&self, cx: &WorkerContext<String>) -> Result<(), BoxError> {
//!         cx.report(format!("slot {} up", cx.slot())).await?;
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     let boot = corral_protocol::bootstrap::WorkerBootstrap::from_env().unwrap().expect("started by a corral primary");
//!     let code = corral_workers::run(Hello, boot).unwrap_or(corral_workers::EXIT_BOOTSTRAP);
//!     std::process::exit(code);
//! }
//! ```
#![warn(missing_docs)]
#![deny(unnameable_types)]

mod actor;
mod behaviour;
mod context;
mod counters;
mod cpu_pool;
mod error;
mod hang_dump;
#[cfg(feature = "axum")]
pub mod http;
mod listen;
mod origin;
mod process_name;
mod run;

pub use behaviour::Worker;
pub use context::WorkerContext;
pub use cpu_pool::{
    CpuPool, CpuPoolConfig, CpuPoolConfigFault, CpuPoolError, CpuPoolHandle, CpuPoolMsg, CpuPoolState, CpuPoolStats,
    CpuTask, default_threads,
};
pub use error::{BoxError, Stage, WorkerError};
pub use listen::{Connection, Listener};
pub use origin::Origin;
pub use run::{EXIT_BEHAVIOUR, EXIT_BOOTSTRAP, EXIT_DRAIN_TIMEOUT, EXIT_OK, EXIT_PROTOCOL, WORKER_SPAN_TARGET, run};
