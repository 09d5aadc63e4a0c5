//! How a cluster ended, as its actor tells its handles.

use std::sync::Arc;
use std::time::Duration;

use corral_protocol::ListenRefusal;

use crate::api::error::{ClusterError, KilledWorker};

/// How a cluster ended (cloneable, for the watch channel its handles wait on).
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Clean,
    GaveUp { slot: usize, restarts: usize, period_ms: u128 },
    Listen(ListenRefusal),
    Killed { workers: Vec<KilledWorker>, timeout: Duration },
    SupervisorFailed { slot: usize, reason: Arc<dyn std::error::Error + Send + Sync> },
    Vanished,
}

impl Outcome {
    pub(crate) fn into_result(self) -> Result<(), ClusterError> {
        match self {
            Outcome::Clean => Ok(()),
            Outcome::GaveUp { slot, restarts, period_ms } => Err(ClusterError::GaveUp { slot, restarts, period_ms }),
            Outcome::Listen(refusal) => Err(ClusterError::Listen(refusal)),
            Outcome::Killed { workers, timeout } => Err(ClusterError::Killed { workers, timeout }),
            Outcome::SupervisorFailed { slot, reason } => Err(ClusterError::SupervisorFailed { slot, reason }),
            Outcome::Vanished => Err(ClusterError::Vanished),
        }
    }
}
