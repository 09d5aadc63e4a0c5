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
//! is one pure function (`slot/policy.rs`), unit-tested case by case.
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

mod backoff;
mod balance;
mod cluster;
mod command;
mod config;
pub mod control;
mod control_socket;
mod credits;
mod error;
mod event;
mod events;
mod exit;
mod foreign;
mod handle;
pub mod hang;
mod intensity;
mod kill;
pub mod lifecycle;
#[cfg(feature = "cluster")]
mod local_messages;
mod logfile;
pub mod metrics;
#[cfg(feature = "cluster")]
pub mod node;
mod node_config;
mod outcome;
mod process;
mod rendezvous;
mod reports;
mod request;
mod restart;
mod routes;
mod slot;
mod status;
mod status_json;
mod status_table;
mod sticky_key;
mod systemd;
mod title;
mod upgrade;

pub use backoff::Backoff;
pub use balance::ListenerCounts;
pub use cluster::Cluster;
pub use config::{
    ClusterConfig, Escalation, LogFiles, MAX_DURATION, MAX_WORKERS, Reconfigure, ReconfigureError, Unchangeable,
    WorkerExec, WorkerOutput,
};
pub use control_socket::ControlSocket;
pub use corral_protocol::{
    CallError, ListenRefusal, PoolStats, ProtocolError, ReplyError, ReplyTo, Scheduling, WorkerStats,
};
pub use error::{
    ClusterError, ConfigError, KilledWorker, PreflightError, ReloadError, ReplaceError, ScaleError, StartFailure,
    UpgradeError,
};
pub use event::{ClusterEvent, OutputStream};
pub use events::EventStream;
pub use exit::ExitStatus;
pub use foreign::{ForeignWorker, ListenAddr, ListenSpec, ListenSpecError, Readiness, ReadinessError};
pub use handle::ClusterHandle;
pub use hang::{HangReport, ThreadActivity, ThreadSample, syscall_name};
pub use intensity::RestartIntensity;
pub use kill::KillReason;
pub use logfile::reopen_log_files;
pub use metrics::{MetricsAddrError, parse_metrics_addr};
pub use node_config::{COOKIE_ENV, Cookie, CookieError, NodeConfig, NodeMessage};
pub use reports::{ReloadReport, Replaced, Scale, ScaleReport};
pub use request::ClusterMsg;
pub use restart::Restart;
pub use status::{WorkerState, WorkerStatus};
pub use status_table::StatusTable;
pub use sticky_key::{StickyKey, StickyKeyError};
pub use title::set_primary_title;
pub use upgrade::{UPGRADE_CHECK_ENV, UPGRADE_FD_ENV};
