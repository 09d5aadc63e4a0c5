//! The runtime's error types.

use corral_protocol::ProtocolError;

/// A configuration value was refused.
///
/// ```
/// use corral_runtime::ConfigError;
/// let e = ConfigError::Invalid { field: "workers", reason: "must be at least 1".into() };
/// assert_eq!(e.to_string(), "invalid cluster config: workers: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `field` holds a bad value.
    #[error("invalid cluster config: {field}: {reason}")]
    Invalid {
        /// The field, as named in [`ClusterConfig`](crate::ClusterConfig) (dotted for nested
        /// fields, e.g. `backoff.max`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Errors of the cluster and of calls made to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A slot exceeded its restart intensity and the escalation policy stopped the cluster.
    #[error("worker slot {slot} gave up after {restarts} restarts within {period_ms} ms; cluster stopped")]
    GaveUp {
        /// The slot that gave up.
        slot: usize,
        /// Restarts counted in the window.
        restarts: usize,
        /// The window, in milliseconds.
        period_ms: u128,
    },
    /// No such worker slot.
    #[error("no worker slot {slot} (the cluster has {workers})")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// How many slots there are.
        workers: usize,
    },
    /// The slot exists but has no connected worker process right now (starting, restarting
    /// or gone).
    #[error("worker slot {slot} has no connected process")]
    NotConnected {
        /// The slot.
        slot: usize,
    },
    /// A worker asked to listen on an address the primary cannot bind (in use, not
    /// permitted, unresolvable); the cluster stopped instead of restarting into the same error.
    #[error("{0}")]
    Listen(String),
    /// The cluster stopped, but some workers did not drain within `kill_timeout` and were
    /// killed.
    #[error("cluster stopped, but {0}")]
    Killed(String),
    /// The cluster failed for another reason (e.g. one of its supervisors failed).
    #[error("the cluster failed: {0}")]
    Failed(String),
    /// A request was refused (the message says why).
    #[error("refused: {0}")]
    Refused(String),
    /// The cluster actor has stopped.
    #[error("the cluster has stopped")]
    Stopped,
    /// Spawning an actor failed.
    #[error("cannot spawn actor: {0}")]
    Spawn(String),
    /// Starting a worker process failed.
    #[error("cannot start worker process for slot {slot}: {source}")]
    Process {
        /// The slot.
        slot: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A protocol error.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The primary's own setup failed (runtime, signal handlers).
    #[error("primary setup failed: {0}")]
    Setup(#[source] std::io::Error),
}
