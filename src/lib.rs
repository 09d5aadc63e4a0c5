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
//! fn main() -> std::process::ExitCode {
//!     corral::main(ClusterConfig::default().workers(4), Web)
//! }
//! ```
//!
//! A primary that fails prints the cause once, as `error: <sentence>` on stderr, and exits
//! with [`EXIT_FAILURE`] (`1`), or [`EXIT_CONFIG`] (`2`) for a refused configuration; a clean
//! stop exits `0` (see [`main`]).
//!
//! # What is where
//!
//! The crate root holds the everyday names, 17 of them:
//!
//! | | |
//! |---|---|
//! | start a program | [`main`], [`run`], [`run_primary`], [`run_if_worker`], [`is_worker`], [`init_tracing`] |
//! | the primary | [`Cluster`], [`ClusterConfig`], [`ClusterHandle`], [`ClusterEvent`], [`ClusterError`] |
//! | a worker | [`Worker`], [`WorkerContext`], [`BoxError`] |
//! | the program's end | [`Error`], [`EXIT_FAILURE`], [`EXIT_CONFIG`] |
//!
//! Everything else is in one module, by subject, and reachable by that one path only:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | what [`ClusterConfig`]'s builder takes: worker program, output, scheduling, listen specs, readiness; reconfiguring a running cluster |
//! | [`supervision`] | restart policy, backoff, restart intensity, escalation, exit statuses; the cluster actor's mailbox |
//! | [`events`] | the event stream, output streams, the lifecycle tracing target |
//! | [`status`] | worker status and statistics, the status table, hang reports |
//! | [`control`] | reload, scale, restart a slot; the control socket and its wire format |
//! | [`upgrade`] | upgrading the primary in place |
//! | [`metrics`] | the primary's metrics endpoint |
//! | [`node`] | the node set across hosts (running one needs the `cluster` feature) |
//! | [`worker`] | a worker's messages, calls, listeners, errors and exit codes |
//! | [`http`] | serving an axum app on a worker's listener |
//! | [`cpu_pool`] | CPU-heavy work off the event loop |
//! | [`protocol`] | the wire between primary and workers |
//! | [`config_file`], [`settings`] | `corral.toml`, and the one declaration of every setting |
//! | [`cli`] | the `corral` program |
//! | [`logging`] | log lines as text or JSON (`--log-format`) |
//! | `telemetry` | OTLP traces and metrics (the `telemetry` feature) |
#![warn(missing_docs)]
#![deny(unnameable_types)]

pub mod cli;
pub mod config;
pub mod config_file;
pub mod control;
pub mod cpu_pool;
mod error;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod node;
mod primary;
pub mod protocol;
pub mod settings;
pub mod status;
pub mod supervision;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod tree;
pub mod upgrade;
pub mod worker;

/// Serving an axum app on a worker's [`Listener`](worker::Listener), with a drain that loses no
/// request.
///
/// ```no_run
/// use corral::{BoxError, WorkerContext};
///
/// async fn start(cx: &WorkerContext<()>) -> Result<(), BoxError> {
///     let listener = cx.listen("0.0.0.0:3000").await?;
///     let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
///     cx.spawn_tracked(corral::http::serve(listener, app, cx.shutdown_token(), Default::default()));
///     Ok(())
/// }
/// ```
pub mod http {
    pub use corral_workers::http::*;
}

pub use corral_runtime::{Cluster, ClusterConfig, ClusterError, ClusterEvent, ClusterHandle};
pub use corral_workers::{BoxError, Worker, WorkerContext};
pub use error::{EXIT_CONFIG, EXIT_FAILURE, Error};
pub use primary::{is_worker, main, run, run_if_worker, run_primary, run_tree};

/// Installs a `tracing` subscriber that prints to stderr, filtered by `RUST_LOG` (default
/// `info`), as text — in colour only when stderr is a terminal and `NO_COLOR` is unset or
/// empty — or as one JSON object per line when `CORRAL_LOG_FORMAT=json`
/// ([`logging`]), and — with the `telemetry` feature and `OTEL_EXPORTER_OTLP_ENDPOINT`
/// set — exports spans over OTLP as `corral::telemetry` describes. Call it first thing in `main`, in
/// primary and workers alike (they run the same `main`). A telemetry set-up that fails (say,
/// an unknown `OTEL_EXPORTER_OTLP_PROTOCOL`) is logged and the program runs without export.
/// Does nothing when a global subscriber is already installed. For examples and services
/// happy with this set-up; others compose their own (see `corral::telemetry::layer`).
///
/// ```no_run
/// corral::init_tracing();
/// tracing::info!("logged to stderr, and exported when OTEL_EXPORTER_OTLP_ENDPOINT is set");
/// ```
pub fn init_tracing() {
    logging::init(logging::LogFormat::from_env());
}

/// The README's Rust example, compiled by `cargo test --doc` so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// The library guide's Rust examples (docs/src/library.md), compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/src/library.md")]
pub struct LibraryGuideExamples;

/// The trees guide's Rust examples (docs/src/trees.md), compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/src/trees.md")]
pub struct TreesGuideExamples;
