//! What a user may ask of a running cluster actor ([`ClusterMsg`]).

use ractor::RpcReplyPort;

use crate::api::error::{ClusterError, ScaleError};
use crate::api::reports::{ReloadReport, Replaced, Scale, ScaleReport};
use crate::api::status::WorkerStatus;
use crate::config::cluster::ClusterConfig;

/// The requests a cluster actor takes from its users.
///
/// [`ClusterHandle`](crate::api::handle::ClusterHandle) wraps each in a method; send them yourself when
/// you hold only the actor ([`ClusterHandle::actor`](crate::api::handle::ClusterHandle::actor)), e.g. from
/// another actor. The cluster's own notifications (from its slots, its reload task) are of a
/// private type: they cannot be forged from outside.
///
/// # Example
///
/// ```no_run
/// use corral_runtime::{Cluster, ClusterConfig, ClusterMsg};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
/// let status = ractor::call!(cluster.actor(), ClusterMsg::Status)?;
/// assert_eq!(status.len(), 2);
/// cluster.actor().send_message(ClusterMsg::Stop(None))?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum ClusterMsg {
    /// Every slot's status, in slot order.
    Status(RpcReplyPort<Vec<WorkerStatus>>),
    /// Stop gracefully: drain every worker, then stop the actor. The reply (if any) comes
    /// once every worker has exited.
    Stop(Option<RpcReplyPort<()>>),
    /// Rolling reload: replace the workers one slot at a time, each replacement ready before
    /// its old process drains. Refused (the report says why) while another reload runs or
    /// the cluster stops.
    Reload(Option<RpcReplyPort<ReloadReport>>),
    /// Add or remove workers. Refused below 1 worker, during a reload, while the cluster stops
    /// or while an earlier scale-down still drains; capped at [`MAX_WORKERS`](crate::config::limits::MAX_WORKERS).
    Scale(Scale, Option<RpcReplyPort<Result<ScaleReport, ScaleError>>>),
    /// The effective configuration (after scaling and reloads).
    Config(RpcReplyPort<std::sync::Arc<ClusterConfig>>),
    /// Replace one slot's process (replacement first, the same image), as `corral restart`.
    Restart(usize, RpcReplyPort<Result<Replaced, ClusterError>>),
    /// Send a signal to one slot's current process; the reply names its pid.
    Signal(usize, nix::sys::signal::Signal, RpcReplyPort<Result<u32, ClusterError>>),
    /// Upgrade the primary in place: check the executable now on disk, hand everything over
    /// and exec it (same pid). Answered only when refused (the primary and its workers go on
    /// untouched); on success this process image is replaced.
    Upgrade(Option<RpcReplyPort<crate::api::error::UpgradeError>>),
}
