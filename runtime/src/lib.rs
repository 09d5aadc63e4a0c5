//! corral's primary side: the [`Cluster`] actor, one [`WorkerSupervisor`] per worker slot,
//! and the restart policy they apply.
//!
//! ```text
//! your supervision tree (optional)
//! └── Cluster                      config, events, API calls
//!     ├── WorkerSupervisor slot 0  owns process 0: spawn, IPC, heartbeat, restart policy
//!     ├── WorkerSupervisor slot 1
//!     └── …
//! ```
//!
//! Restarts are one-for-one, typed as Erlang's ([`Restart`]), delayed by an exponential
//! [`Backoff`] with jitter after early deaths, and limited by a [`RestartIntensity`] window;
//! a slot that exceeds it gives up and the cluster applies its [`Escalation`].
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
mod cluster;
mod config;
mod conn;
mod error;
mod event;
mod events;
mod exit;
mod handle;
mod intensity;
pub mod lifecycle;
mod listener;
mod output;
mod reload;
mod restart;
mod routes;
mod spawn;
mod status;
mod status_table;
mod supervisor;

pub use backoff::Backoff;
pub use cluster::{Cluster, ClusterArgs, ClusterMsg, ClusterState, Scale, SlotOutcome};
pub use config::{ClusterConfig, Escalation, MAX_WORKERS, WorkerExec, WorkerOutput};
pub use corral_protocol::{PoolStats, Scheduling, WorkerStats};
pub use error::{ClusterError, ConfigError};
pub use event::{ClusterEvent, OutputStream};
pub use events::EventStream;
pub use exit::ExitStatus;
pub use handle::ClusterHandle;
pub use intensity::RestartIntensity;
pub use reload::{ReloadReport, Replaced, ScaleReport};
pub use restart::Restart;
pub use status::{WorkerState, WorkerStatus};
pub use status_table::StatusTable;
pub use supervisor::{ReplaceReason, SlotState, SupervisorArgs, SupervisorMsg, WorkerSupervisor};
