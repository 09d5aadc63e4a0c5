//! Why a configuration value was refused.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::foreign::ListenAddr;

/// A configuration value was refused.
///
/// ```
/// use corral_runtime::{ConfigError, ConfigProblem};
/// let e = ConfigError::Invalid { field: "workers", problem: ConfigProblem::AtLeastOne };
/// assert_eq!(e.to_string(), "invalid cluster config: workers: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `field` holds a bad value.
    #[error("invalid cluster config: {field}: {problem}")]
    Invalid {
        /// The field, as named in [`ClusterConfig`](crate::config::cluster::ClusterConfig) (dotted for nested
        /// fields, e.g. `backoff.max`).
        field: &'static str,
        /// What is wrong with it.
        problem: ConfigProblem,
    },
}

/// What is wrong with one configuration value ([`ConfigError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// A count of zero.
    #[error("must be at least 1")]
    AtLeastOne,
    /// More workers than [`MAX_WORKERS`](crate::config::cluster::MAX_WORKERS).
    #[error("{workers} is over the limit of {limit}")]
    TooManyWorkers {
        /// The count asked for.
        workers: usize,
        /// The limit.
        limit: usize,
    },
    /// A duration over [`MAX_DURATION`](crate::config::cluster::MAX_DURATION).
    #[error("{value:?} is over the limit of {limit:?} (100 years)")]
    TooLong {
        /// The duration.
        value: Duration,
        /// The limit.
        limit: Duration,
    },
    /// A zero duration, or another value that must be positive.
    #[error("must be greater than zero")]
    Zero,
    /// A duration below another that it must not be below.
    #[error("{value:?} is below {other} ({other_value:?})")]
    Below {
        /// The duration.
        value: Duration,
        /// The other field.
        other: &'static str,
        /// Its value.
        other_value: Duration,
    },
    /// `backoff.factor` below 1, or not finite.
    #[error("{0} must be a finite number ≥ 1")]
    BackoffFactor(ConfigNumber),
    /// `backoff.jitter` outside 0 – 1.
    #[error("{0} must be between 0 and 1")]
    Jitter(ConfigNumber),
    /// `max_restarts` 0 with a restarting type.
    #[error("must be at least 1 unless restart is Temporary")]
    NoRestarts,
    /// `cpu_threads` 0 or over 1024.
    #[error("must be between 1 and 1024 (or None for the default)")]
    CpuThreads,
    /// A sticky key's port prefix outside 1 – 16 bits.
    #[error("port prefix of {bits} bits must be 1 – 16")]
    PortPrefix {
        /// The bits asked for.
        bits: u8,
    },
    /// A limit of zero (`None` is no limit).
    #[error("must be greater than zero (or None for no limit)")]
    ZeroLimit,
    /// Spares with shared scheduling, where every worker accepts on the one socket.
    #[error(
        "a spare would take connections with shared scheduling (every worker accepts on the one socket); use round robin, least connections, sticky or reuse-port"
    )]
    SparesNeedDispatch,
    /// A range whose maximum is below its minimum.
    #[error("the maximum {max} is below the minimum {min}")]
    RangeInverted {
        /// The minimum.
        min: usize,
        /// The maximum.
        max: usize,
    },
    /// A worker count outside the autoscaling range.
    #[error("{workers} is outside the autoscaling range {min}..{max}")]
    OutsideRange {
        /// The count.
        workers: usize,
        /// The range's minimum.
        min: usize,
        /// The range's maximum.
        max: usize,
    },
    /// `recycle_concurrency` 0 or over the limit.
    #[error("must be between 1 and {limit}")]
    RecycleConcurrency {
        /// The limit.
        limit: usize,
    },
    /// `max_frame_length` under 64 bytes or over 4 GiB.
    #[error("{0} must be between 64 bytes and 4 GiB")]
    FrameLength(usize),
    /// An empty name or program.
    #[error("must not be empty")]
    Empty,
    /// Log files without captured output.
    #[error("needs output = capture (only captured output can be written)")]
    LogFilesNeedCapture,
    /// Client steering without reuse-port scheduling.
    #[error("needs scheduling = reuseport (only reuse-port groups are steered)")]
    SteerNeedsReusePort,
    /// An HTTP or TCP health check with `shared` scheduling, where no connection can be
    /// made to one chosen worker.
    #[error(
        "{check} cannot reach one worker with shared scheduling (every worker accepts on one socket): use reuseport (sticky and the primary-accept modes work too), or an exec: check"
    )]
    ProbeNeedsOwnSocket {
        /// The check.
        check: String,
    },
    /// A foreign program with a scheduling where the primary accepts.
    #[error("a foreign program's workers accept themselves: use reuseport, shared or sticky")]
    ForeignAccepts,
    /// A number that is not a signal.
    #[error("{0} is not a signal")]
    NotASignal(i32),
    /// A zero watchdog.
    #[error("must be greater than zero (or None for no watchdog)")]
    ZeroWatchdog,
    /// A listener given twice.
    #[error("{0} is listed twice")]
    ListedTwice(ListenAddr),
    /// A node name that is empty, too long, or has other characters.
    #[error("{0:?}: 1 to 64 letters, digits, '-', '_' or '.'")]
    NodeName(String),
    /// A node listening on port 0.
    #[error("needs a fixed port (peers reconnect to it)")]
    NodeFixedPort,
    /// A seed without a port.
    #[error("{0} has no port")]
    SeedWithoutPort(SocketAddr),
    /// A node heartbeat timeout under two intervals.
    #[error("{0:?} must be at least two heartbeat intervals")]
    NodeHeartbeatTimeout(Duration),
    /// A node set in a build without the `cluster` feature.
    #[error("this build has no node support: build corral with `--features cluster`")]
    NoNodeSupport,
}

/// A number of a [`ConfigProblem`], printed as given; equal when its bits are (NaN included).
#[derive(Debug, Clone, Copy)]
pub struct ConfigNumber(pub f64);

impl PartialEq for ConfigNumber {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for ConfigNumber {}

impl std::fmt::Display for ConfigNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}
