//! corral's primary side: the [`Cluster`] actor, one slot supervisor per worker slot, and the
//! restart policy they apply.
//!
//! ```text
//! your supervision tree (optional)
//! └── Cluster                      config, events, API calls        cluster/
//!     ├── WorkerSupervisor slot 0  owns process 0: restart policy   slot/
//!     │     └── process I/O tasks  spawn, reader, writer, waiter    process/
//!     ├── WorkerSupervisor slot 1
//!     └── …
//! listeners + balancing            accept loop, strategy, bind      balance/
//! metrics endpoint                 /metrics, /status.json, /        metrics/
//! upgrading the primary in place   preflight, state block, exec     upgrade/
//! the node set (`cluster` feature) host agent, links, heartbeats     node/
//! ```
//!
//! Restarts are one-for-one, typed as Erlang's ([`Restart`]), delayed by an exponential
//! [`Backoff`] with jitter after early deaths, and limited by a [`RestartIntensity`] window;
//! a slot that exceeds it gives up and the cluster applies its [`Escalation`]. The decision
//! (`supervision/decision.rs`) is clock-free, randomness passed in, unit-tested case by case;
//! a slot's state is one `Life`, changed only through its `transition` (`slot/state/transition.rs`).
//!
//! Modules import downward only: `cluster` → `slot` → `process` → `balance`, `events`;
//! a slot talks to its cluster and its processes talk to their slot through message
//! vocabularies (`slot/msg.rs`, `process/event.rs`) and derived actor references, never by
//! naming the other actor.
//!
//! Most users go through the `corral` facade (`corral::main`); this crate is for embedding a
//! cluster in an existing ractor application. Linux only.
//!
//! # Example
//!
//! ```no_run
//! use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
//!
//! # async fn demo() -> Result<(), corral_runtime::ClusterError> {
//! let config = ClusterConfig::default().workers(4);
//! let (cluster, mut events) = Cluster::<String, String>::spawn(config).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClusterEvent::Message { slot, message, .. } => println!("worker {slot} says {message}"),
//!         ClusterEvent::Exit { slot, status, .. } => println!("worker {slot} {status}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unnameable_types)]

mod api;
mod cluster;
mod config;
#[cfg(feature = "cluster")]
pub mod node;
mod operator;
mod process;
mod routing;
mod slot;
mod supervision;
mod sys;
mod upgrade;

pub use api::events::lifecycle;
pub use cluster::tree;
pub use operator::{control, metrics};
pub use sys::hang;

pub use api::autoscale::AutoscaleStatus;
pub use api::error::{
    ClusterError, KilledWorker, ProbeError, ReloadError, ReplaceError, ScaleError, StartFailure, UpgradeError,
};
pub use api::events::bus::EventStream;
pub use api::events::{ClusterEvent, OutputStream};
pub use api::handle::ClusterHandle;
pub use api::msg::ClusterMsg;
pub use api::reports::{Load, ReloadReport, Replaced, Scale, ScaleReason, ScaleReport};
pub use api::status::{LastProbe, Steered, WorkerState, WorkerStatus};
pub use cluster::{Cluster, ClusterArgs, ClusterSignal, ClusterState};
pub use config::autoscale::{Autoscale, ScaleSignal, ScaleSignalError, WorkerRange, WorkerRangeError};
pub use config::cluster::reconfigure::{Reconfigure, ReconfigureError, Unchangeable};
pub use config::cluster::{ClusterConfig, LogFiles, MAX_DURATION, MAX_WORKERS, WorkerExec, WorkerOutput};
pub use config::control_socket::ControlSocket;
pub use config::error::{ConfigError, ConfigNumber, ConfigProblem};
pub use config::foreign::{ForeignWorker, ListenAddr, ListenSpec, ListenSpecError, Readiness, ReadinessError};
pub use config::node::{COOKIE_ENV, Cookie, CookieError, NodeConfig, NodeMessage};
pub use config::probe::{Check, CheckError, ProbeConfig};
pub use config::sticky_key::{StickyKey, StickyKeyError};
pub use corral_protocol::{
    CallError, ListenRefusal, PoolStats, ProtocolError, ReplyError, ReplyTo, Scheduling, WorkerStats,
};
pub use operator::logfile::reopen_log_files;
pub use operator::metrics::{MetricsAddrError, parse_metrics_addr};
pub use operator::status_table::StatusTable;

pub use process::reaper::{Reaper, ReaperRole, orphans_adopted};
pub use routing::balance::ListenerCounts;
pub use routing::balance::targeted::TargetError;
pub use routing::steer::pins::PinsFull;
pub use supervision::backoff::Backoff;
pub use supervision::escalation::Escalation;
pub use supervision::exit::ExitStatus;
pub use supervision::intensity::RestartIntensity;
pub use supervision::kill::KillReason;
pub use supervision::restart::Restart;
pub use sys::hang::{HangReport, ThreadActivity, ThreadSample, syscall_name};
pub use sys::title::set_primary_title;
pub use upgrade::error::PreflightError;
pub use upgrade::{UPGRADE_CHECK_ENV, UPGRADE_FD_ENV};
