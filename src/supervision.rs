//! How the primary supervises its workers, Erlang/OTP style: one supervisor per slot restarts
//! its worker as the [`Restart`] policy says, after a [`Backoff`], within a
//! [`RestartIntensity`]; a slot that exceeds it gives up and the cluster applies its
//! [`Escalation`]. A worker ends with an [`ExitStatus`], or is killed for a [`KillReason`];
//! [`StartFailure`] says how one that was starting ended, [`KilledWorker`] which were killed at
//! the stop deadline. [`ClusterMsg`] is the cluster actor's mailbox, for embedding a
//! [`Cluster`](crate::Cluster) in your own ractor supervision tree; [`ClusterSignal`],
//! [`ClusterArgs`] and [`ClusterState`] are the actor's message, arguments and state types,
//! opaque outside corral.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use corral::ClusterConfig;
//! use corral::supervision::{Backoff, Escalation, Restart};
//!
//! let config = ClusterConfig::default()
//!     .restart(Restart::Permanent)
//!     .backoff(Backoff { base: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(30), jitter: 0.1 })
//!     .max_restarts(5)
//!     .period(Duration::from_secs(60))
//!     .escalation(Escalation::Degraded);
//! assert!(config.validate().is_ok());
//! ```

pub use corral_runtime::{
    Backoff, ClusterArgs, ClusterMsg, ClusterSignal, ClusterState, Escalation, ExitStatus, KillReason, KilledWorker,
    PinsFull, ProbeError, Restart, RestartIntensity, StartFailure, TargetError,
};
