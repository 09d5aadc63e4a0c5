//! A cluster's configuration: [`ClusterConfig`](crate::ClusterConfig) (at the crate root) and
//! the types its builder methods take — how workers are started ([`WorkerExec`],
//! [`ForeignWorker`]), where their output goes ([`WorkerOutput`], [`LogFiles`]), how
//! connections are spread ([`Scheduling`], [`StickyKey`]), what a foreign program listens on
//! ([`ListenSpec`]), how it says it is ready ([`Readiness`]) and how it is checked
//! ([`Check`], [`ProbeConfig`]) — with their errors, and
//! [`Reconfigure`], a change applied to a running cluster.
//!
//! Supervision settings (restart policy, backoff, restart intensity, escalation) are in
//! [`supervision`](crate::supervision); the node set's in [`node`](crate::node).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use corral::ClusterConfig;
//! use corral::config::{Scheduling, WorkerOutput};
//!
//! let config = ClusterConfig::default()
//!     .workers(4)
//!     .scheduling(Scheduling::RoundRobin)
//!     .output(WorkerOutput::Inherit)
//!     .kill_timeout(Duration::from_secs(10));
//! assert!(config.validate().is_ok());
//! ```

pub use corral_protocol::Scheduling;
pub use corral_runtime::{
    Autoscale, Check, CheckError, ConfigError, ConfigNumber, ConfigProblem, ForeignWorker, ListenAddr, ListenSpec,
    ListenSpecError, LogFiles, MAX_DURATION, MAX_WORKERS, ProbeConfig, Readiness, ReadinessError, Reconfigure,
    ReconfigureError, ScaleSignal, ScaleSignalError, StickyKey, StickyKeyError, Unchangeable, WorkerExec, WorkerOutput,
    WorkerRange, WorkerRangeError,
};
