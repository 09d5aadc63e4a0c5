//! The runtime's error types: one enum per family (config, replace, reload, scale) and
//! [`ClusterError`], which wraps them for the cluster's own calls.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::{ListenRefusal, ProtocolError};

use crate::config::error::ConfigError;
#[cfg(feature = "cluster")]
use crate::node::error::NodeError;
use crate::routing::balance::targeted::TargetError;
use crate::supervision::exit::ExitStatus;
use crate::supervision::kill::KillReason;
use crate::upgrade::error::PreflightError;

/// Errors of the cluster and of calls made to it.
///
/// # Example
///
/// ```
/// use corral_runtime::{ClusterError, ScaleError};
///
/// let e = ClusterError::from(ScaleError::TooFew { wanted: 0 });
/// assert!(matches!(e, ClusterError::Scale(ScaleError::TooFew { wanted: 0 })));
/// assert_eq!(e.to_string(), "cannot scale to 0 workers: at least 1 (stop the cluster instead)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration was refused.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// let err = Cluster::<String, String>::spawn(ClusterConfig::default().workers(0)).await.unwrap_err();
    /// assert!(matches!(err, ClusterError::Config(_)));
    /// # Ok(()) }
    /// ```
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A slot exceeded its restart intensity and the escalation policy stopped the cluster.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// if let Err(ClusterError::GaveUp { slot, restarts, .. }) = cluster.wait().await {
    ///     eprintln!("slot {slot} crashed {restarts} times in a row; giving up");
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let err = cluster.send_to(7, "hi".into()).await.unwrap_err();
    /// assert!(matches!(err, ClusterError::NoSuchSlot { slot: 7, workers: 2 }));
    /// # Ok(()) }
    /// ```
    #[error("no worker slot {slot} (the cluster has {workers})")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// How many slots there are.
        workers: usize,
    },
    /// The slot exists but has no connected worker process right now (starting, restarting
    /// or gone).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// match cluster.send_to(0, "hi".into()).await {
    ///     Err(ClusterError::NotConnected { slot }) => eprintln!("slot {slot} is restarting; try later"),
    ///     other => other?,
    /// }
    /// # Ok(()) }
    /// ```
    #[error("worker slot {slot} has no connected process")]
    NotConnected {
        /// The slot.
        slot: usize,
    },
    /// No slot has a connected process (every worker is restarting, or gave up): a keyed
    /// message has no owner to go to.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// match cluster.send_keyed("user:7", "hi".into()).await {
    ///     Err(ClusterError::NoLiveWorker) => eprintln!("every worker is down; try later"),
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("no worker slot has a connected process")]
    NoLiveWorker,
    /// A worker asked to listen on an address the primary cannot bind (in use, not
    /// permitted, unresolvable); the cluster stopped instead of restarting into the same error.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// if let Err(ClusterError::Listen(refusal)) = cluster.wait().await {
    ///     eprintln!("{refusal}"); // e.g. cannot listen on 127.0.0.1:80: Permission denied (os error 13)
    /// }
    /// # Ok(()) }
    /// ```
    #[error(transparent)]
    Listen(#[from] ListenRefusal),
    /// The metrics endpoint ([`ClusterConfig::metrics`](crate::config::cluster::ClusterConfig::metrics))
    /// cannot listen on its address (in use, not permitted); the cluster does not start.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// let config = ClusterConfig::default().metrics(Some("127.0.0.1:9464".parse().unwrap()));
    /// if let Err(ClusterError::Metrics { addr, source }) = Cluster::<(), ()>::spawn(config).await {
    ///     eprintln!("metrics on {addr}: {source}");
    /// }
    /// # Ok(()) }
    /// ```
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it cannot be bound.
        source: std::io::Error,
    },
    /// The cluster stopped, but some workers did not drain within `kill_timeout` and were
    /// killed.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// if let Err(ClusterError::Killed { workers, timeout }) = cluster.stop().await {
    ///     eprintln!("{} workers outlived {timeout:?}", workers.len());
    /// }
    /// # Ok(()) }
    /// ```
    #[error("cluster stopped, but {} did not drain within {timeout:?} and had to be killed", KilledList(workers))]
    Killed {
        /// The workers killed, in slot order.
        workers: Vec<KilledWorker>,
        /// The `kill_timeout` they outlived.
        timeout: Duration,
    },
    /// One of the cluster's supervisor actors failed (a bug of corral's, not a worker crash).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// if let Err(e @ ClusterError::SupervisorFailed { .. }) = cluster.wait().await {
    ///     eprintln!("a corral bug: {e}");
    /// }
    /// # Ok(()) }
    /// ```
    #[error("the cluster failed: supervisor of slot {slot} failed: {reason}")]
    SupervisorFailed {
        /// The slot.
        slot: usize,
        /// The actor's failure.
        #[source]
        reason: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The cluster actor ended without saying how (it was killed from outside).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.actor().stop(None); // from outside, without a graceful stop
    /// assert!(matches!(cluster.wait().await, Err(ClusterError::Vanished) | Ok(())));
    /// # Ok(()) }
    /// ```
    #[error("the cluster actor ended without a result")]
    Vanished,
    /// A slot's replacement (`restart`) was refused or failed.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// if let Err(ClusterError::Replace(why)) = cluster.restart(0).await {
    ///     eprintln!("slot 0 keeps its process: {why}");
    /// }
    /// # Ok(()) }
    /// ```
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    /// A scale request was refused or failed.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let err = cluster.scale(corral_runtime::Scale::To(0)).await.unwrap_err();
    /// assert!(matches!(err, ClusterError::Scale(corral_runtime::ScaleError::TooFew { wanted: 0 })));
    /// # Ok(()) }
    /// ```
    #[error(transparent)]
    Scale(#[from] ScaleError),
    /// The cluster actor has stopped.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// # let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.stop().await?;
    /// assert!(matches!(cluster.status().await, Err(ClusterError::Stopped)));
    /// # Ok(()) }
    /// ```
    #[error("the cluster has stopped")]
    Stopped,
    /// Spawning the cluster actor failed.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// match Cluster::<String, String>::spawn(ClusterConfig::default()).await {
    ///     Err(ClusterError::Spawn(e)) => eprintln!("the actor system refused: {e}"),
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("cannot spawn the cluster actor: {0}")]
    Spawn(#[source] ractor::SpawnErr),
    /// The node set could not be joined (the node server's address in use…); the cluster
    /// was stopped.
    #[cfg(feature = "cluster")]
    #[error("node set: {0}")]
    Node(#[source] NodeError),
    /// A protocol error.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// let err = ClusterError::from(corral_runtime::ProtocolError::Closed);
    /// assert!(matches!(err, ClusterError::Protocol(_)));
    /// # Ok(()) }
    /// ```
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The primary's own setup failed (runtime, signal handlers).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterError};
    /// # async fn demo() -> Result<(), ClusterError> {
    /// let err = ClusterError::Setup(std::io::Error::other("no signal handlers"));
    /// assert!(err.to_string().starts_with("primary setup failed"));
    /// # Ok(()) }
    /// ```
    #[error("primary setup failed: {0}")]
    Setup(#[source] std::io::Error),
}

/// A worker killed at `kill_timeout` while the cluster stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KilledWorker {
    /// Its slot.
    pub slot: usize,
    /// Its pid.
    pub pid: u32,
}

/// `slot 1 (pid 42), slot 3 (pid 44)`.
struct KilledList<'a>(&'a [KilledWorker]);

impl fmt::Display for KilledList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "slot {} (pid {})", w.slot, w.pid)?;
        }
        Ok(())
    }
}

/// Why replacing one slot's process (rolling reload, recycling) did not happen.
///
/// In every case the slot's old process keeps serving.
///
/// ```
/// use corral_runtime::{ExitStatus, ReplaceError, StartFailure};
///
/// let e = ReplaceError::Failed { slot: 0, pid: 42, cause: StartFailure::Exited(ExitStatus { code: Some(1), signal: None }) };
/// assert_eq!(e.to_string(), "the replacement for slot 0 (pid 42) failed: it exited with code 1 before it was ready");
/// assert_eq!(e.slot(), 0);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplaceError {
    /// The slot is stopping.
    #[error("slot {slot} is stopping")]
    Stopping {
        /// The slot.
        slot: usize,
    },
    /// A replacement of this slot is already under way.
    #[error("slot {slot} is already being replaced")]
    Busy {
        /// The slot.
        slot: usize,
    },
    /// The slot has no ready process to replace (it is starting or restarting).
    #[error("slot {slot} has no ready worker to replace")]
    NoReadyWorker {
        /// The slot.
        slot: usize,
    },
    /// The replacement process could not be started.
    #[error("cannot start a replacement for slot {slot} from {}: {source}", program.display())]
    Spawn {
        /// The slot.
        slot: usize,
        /// The executable.
        program: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The replacement started but died or was killed before it was ready.
    #[error("the replacement for slot {slot} (pid {pid}) failed: {cause}")]
    Failed {
        /// The slot.
        slot: usize,
        /// The replacement's pid.
        pid: u32,
        /// How it ended.
        cause: StartFailure,
    },
}

impl ReplaceError {
    /// The slot this error is about.
    pub fn slot(&self) -> usize {
        match self {
            ReplaceError::Stopping { slot }
            | ReplaceError::Busy { slot }
            | ReplaceError::NoReadyWorker { slot }
            | ReplaceError::Spawn { slot, .. }
            | ReplaceError::Failed { slot, .. } => *slot,
        }
    }
}

/// How a process that was starting ended before it was ready.
#[derive(Debug, Clone)]
pub enum StartFailure {
    /// It exited (or a signal killed it) on its own.
    Exited(ExitStatus),
    /// The primary killed it.
    Killed(KillReason),
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Exited(status) => write!(f, "it {status} before it was ready"),
            StartFailure::Killed(why) => why.fmt(f),
        }
    }
}

/// Why a rolling reload was refused or stopped early
/// ([`ReloadReport::error`](crate::api::reports::ReloadReport::error)).
///
/// ```
/// use corral_runtime::ReloadError;
/// assert_eq!(ReloadError::AlreadyRunning.to_string(), "a rolling reload is already running");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The cluster is stopping.
    #[error("the cluster is stopping")]
    Stopping,
    /// Another rolling reload is running. Requests through [`ClusterHandle::reload`] are
    /// queued behind it instead; this is what an internal start of a reload meets.
    ///
    /// [`ClusterHandle::reload`]: crate::api::handle::ClusterHandle::reload
    #[error("a rolling reload is already running")]
    AlreadyRunning,
    /// The configuration re-read for this reload ([`ClusterConfig::reconfigure`]) was
    /// refused; no worker was replaced.
    ///
    /// [`ClusterConfig::reconfigure`]: crate::config::cluster::ClusterConfig::reconfigure
    #[error("the new configuration was refused: {0}")]
    Reconfigure(Arc<dyn std::error::Error + Send + Sync>),
    /// A slot's replacement failed; that slot and the ones after it keep their processes.
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    /// A slot's supervisor did not answer within the time a replacement may take.
    #[error("slot {slot} did not answer the reload within {waited:?}")]
    NoAnswer {
        /// The slot.
        slot: usize,
        /// How long the reload waited.
        waited: Duration,
    },
}

/// Why a scale request was refused or failed.
///
/// ```
/// use corral_runtime::ScaleError;
/// assert_eq!(ScaleError::Reloading.to_string(), "a rolling reload is running; scale once it is done");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The cluster is stopping.
    #[error("the cluster is stopping")]
    Stopping,
    /// A rolling reload is running.
    #[error("a rolling reload is running; scale once it is done")]
    Reloading,
    /// The workers of an earlier scale-down are still draining.
    #[error("an earlier scale-down is still draining; try again once it is done")]
    Draining,
    /// An autoscaled cluster asked for a count outside its range.
    #[error(
        "cannot scale to {wanted} workers: outside the autoscaling range {min}..{max} (change `workers` and reload for another range)"
    )]
    OutsideRange {
        /// The number asked for.
        wanted: i64,
        /// The range's minimum.
        min: usize,
        /// The range's maximum.
        max: usize,
    },
    /// `Scale::Auto` for a cluster that does not autoscale.
    #[error("this cluster does not autoscale (its `workers` is a number, not a range like \"2..8\")")]
    NotAutoscaled,
    /// An autoscaler's step while an operator's scale pins the count.
    #[error("the worker count is pinned by a scale (`corral scale auto` resumes autoscaling)")]
    Pinned,
    /// Fewer than one worker was asked for.
    #[error("cannot scale to {wanted} workers: at least 1 (stop the cluster instead)")]
    TooFew {
        /// The number asked for.
        wanted: i64,
    },
    /// A new slot's supervisor could not be spawned.
    #[error("cannot start slot {slot}: {source}")]
    Spawn {
        /// The slot.
        slot: usize,
        /// Why.
        #[source]
        source: ractor::SpawnErr,
    },
}

/// Why an upgrade of the primary ([`ClusterHandle::upgrade`](crate::api::handle::ClusterHandle::upgrade),
/// SIGUSR2, `corral upgrade`) was refused. After a refusal the primary and its workers go on
/// untouched.
///
/// ```
/// use corral_runtime::UpgradeError;
/// assert_eq!(UpgradeError::AlreadyRunning.to_string(), "an upgrade is already running");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpgradeError {
    /// The cluster is stopping.
    #[error("the cluster is stopping")]
    Stopping,
    /// Another upgrade is running (this request was refused; that one goes on).
    #[error("an upgrade is already running")]
    AlreadyRunning,
    /// A rolling reload is running; upgrade once it is done.
    #[error("a rolling reload is running; upgrade once it is done")]
    Reloading,
    /// A slot is not in a state to be handed over (starting, restarting, being replaced).
    #[error("slot {slot} is {state:?}; upgrade once every slot is ready")]
    SlotBusy {
        /// The slot.
        slot: usize,
        /// What it is doing.
        state: crate::api::status::WorkerState,
    },
    /// The new executable failed its check: nothing was handed over.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The state for the new image could not be prepared (nothing was handed over).
    #[error("cannot prepare the handover: {0}")]
    Handover(Arc<std::io::Error>),
}

/// Why one health probe of a worker failed.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::ProbeError;
/// assert_eq!(ProbeError::Status(500).to_string(), "answered 500");
/// assert_eq!(ProbeError::Timeout(Duration::from_millis(500)).to_string(), "no answer within 500ms");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No connection to the worker could be made.
    #[error("cannot reach the worker: {0}")]
    Unreachable(#[from] TargetError),
    /// The probe took longer than its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP answer with a status other than 2xx or 3xx.
    #[error("answered {0}")]
    Status(u16),
    /// What came back is not an HTTP/1 status line.
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(String),
    /// The worker closed the connection before it answered.
    #[error("closed the connection without an answer")]
    Closed,
    /// Reading or writing the connection failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The exec check's command failed.
    #[error("the check {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Exec {
        /// How it ended.
        status: ExitStatus,
        /// The last line of its stderr.
        stderr: String,
    },
    /// The exec check's command could not be started.
    #[error("cannot run the check: {0}")]
    Spawn(std::io::Error),
}
