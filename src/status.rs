//! A running cluster's state, as [`ClusterHandle::status`](crate::ClusterHandle::status)
//! answers it: one [`WorkerStatus`] per slot (its [`WorkerState`], and the [`WorkerStats`] and
//! [`PoolStats`] the worker reports in its heartbeats), shown as a [`StatusTable`]; the
//! per-listener connection counts ([`ListenerCounts`]); the [`HangReport`] taken of a worker
//! that stopped answering; and the process title of the primary ([`set_primary_title`]).
//!
//! # Example
//!
//! ```no_run
//! use corral::ClusterHandle;
//! use corral::status::{StatusTable, WorkerState};
//!
//! async fn show(cluster: &ClusterHandle<(), ()>) -> Result<(), corral::ClusterError> {
//!     let workers = cluster.status().await?;
//!     let ready = workers.iter().filter(|w| w.state == WorkerState::Ready).count();
//!     println!("{ready} of {} ready", workers.len());
//!     println!("{}", StatusTable(&workers));
//!     Ok(())
//! }
//! ```

pub use corral_protocol::{PoolStats, WorkerStats};
pub use corral_runtime::{
    AutoscaleStatus, HangReport, LastProbe, ListenerCounts, StatusTable, Steered, ThreadActivity, ThreadSample,
    WorkerState, WorkerStatus, set_primary_title, syscall_name,
};
