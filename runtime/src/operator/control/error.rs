//! Why the control server refused or failed a request: [`ControlFailure`], typed, and sent
//! to the client as a [`ControlError`] (its kind and its Display, the wire's text).

use crate::api::error::{ClusterError, ReloadError, UpgradeError};
#[cfg(feature = "cluster")]
use crate::node::ReloadAllError;
use crate::operator::control::protocol::{CONTROL_VERSION, ControlError, ErrorKind, FrameError};

/// Why the control server refused or failed a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ControlFailure {
    /// Every client place is taken.
    #[error("too many control clients")]
    TooManyClients,
    /// Every `logs --follow` place is taken.
    #[error("too many `logs --follow` clients")]
    TooManyFollowers,
    /// The client is neither the cluster's user nor root.
    #[error("not permitted")]
    NotPermitted,
    /// The client speaks another protocol version.
    #[error("protocol version {0} (we speak {CONTROL_VERSION})")]
    Version(u32),
    /// The request did not arrive whole in time.
    #[error("request not complete in time")]
    Incomplete,
    /// The request could not be read (too large, not JSON).
    #[error(transparent)]
    Frame(FrameError),
    /// `scale` without exactly one of `to` and `by`.
    #[error("scale takes one of `to` or `by`")]
    ScaleArgs,
    /// A number that is not a signal.
    #[error("{0} is not a signal")]
    NotASignal(i32),
    /// A rolling reload stopped (or did not start).
    #[error("{source} (replaced {replaced} before it stopped)")]
    Reload {
        /// Why.
        #[source]
        source: ReloadError,
        /// How many workers it replaced before.
        replaced: usize,
    },
    /// The cluster failed the request (it has stopped…).
    #[error(transparent)]
    Failed(ClusterError),
    /// The cluster refused the request (no such slot, a scale out of bounds…).
    #[error(transparent)]
    Refused(ClusterError),
    /// The upgrade was refused or failed.
    #[error(transparent)]
    Upgrade(UpgradeError),
    /// A node-set command to a build without the `cluster` feature.
    #[error("this corral has no node support (built without the `cluster` feature)")]
    #[cfg_attr(feature = "cluster", allow(dead_code))]
    NoNodeSupport,
    /// A node-set command to a cluster in no node set.
    #[error("this cluster is not in a node set (no [node] configured)")]
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    NoNodeSet,
    /// A node-set command that is not one.
    #[error("not a node-set command")]
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    NotNodeSetCommand,
    /// A program command to a single cluster.
    #[error("this is not a tree of programs (its file has no [programs]): name no program")]
    NotATree,
    /// A command that needs a program, to a tree.
    #[error("this is a tree of programs: {0}")]
    IsATree(&'static str),
    /// A tree of programs refused or failed the request (its own error, and the kind it
    /// makes on the wire).
    #[error("{error}")]
    Tree {
        /// The wire's kind.
        kind: ErrorKind,
        /// Why.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `reload --all` stopped.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    ReloadAll(ReloadAllError),
}

impl ControlFailure {
    /// Its kind on the wire.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ControlFailure::TooManyClients | ControlFailure::TooManyFollowers => ErrorKind::Busy,
            ControlFailure::NotPermitted => ErrorKind::NotPermitted,
            ControlFailure::Version(_) => ErrorKind::Version,
            ControlFailure::Frame(FrameError::TooLarge { .. }) => ErrorKind::TooLarge,
            ControlFailure::Incomplete
            | ControlFailure::Frame(_)
            | ControlFailure::ScaleArgs
            | ControlFailure::NotASignal(_)
            | ControlFailure::NotNodeSetCommand => ErrorKind::BadRequest,
            ControlFailure::Reload { source: ReloadError::Stopping | ReloadError::AlreadyRunning, .. } => {
                ErrorKind::Refused
            }
            ControlFailure::Reload { .. } | ControlFailure::Failed(_) => ErrorKind::Failed,
            ControlFailure::Refused(ClusterError::NoSuchSlot { .. }) => ErrorKind::NoSuchSlot,
            ControlFailure::Refused(_) | ControlFailure::NoNodeSupport | ControlFailure::NoNodeSet => {
                ErrorKind::Refused
            }
            ControlFailure::NotATree | ControlFailure::IsATree(_) => ErrorKind::BadRequest,
            ControlFailure::Tree { kind, .. } => *kind,
            ControlFailure::Upgrade(UpgradeError::Preflight(_) | UpgradeError::Handover(_)) => ErrorKind::Failed,
            ControlFailure::Upgrade(_) => ErrorKind::Refused,
            #[cfg(feature = "cluster")]
            ControlFailure::ReloadAll(_) => ErrorKind::Failed,
        }
    }
}

impl From<ControlFailure> for ControlError {
    /// The wire form: the kind, and the Display as the text.
    fn from(failure: ControlFailure) -> Self {
        ControlError::new(failure.kind(), &failure)
    }
}
