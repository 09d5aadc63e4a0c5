//! Kubernetes' probes on the metrics endpoint: `GET /healthz` (liveness) and `GET /readyz`
//! (readiness), so that a pod's `livenessProbe` and `readinessProbe` point at corral itself.
//!
//! * `/healthz`: 200 `ok` when the primary's cluster actor answers within [`LIVENESS_PATIENCE`]
//!   (its mailbox is moving), else 503. Workers restarting do not make it fail: the primary
//!   is alive and supervising, and a liveness failure would restart the whole pod.
//! * `/readyz`: 200 when at least `ready_min` workers are ready (default: every configured
//!   worker), else 503; the body is the status JSON (as `/status.json`) either way, so a
//!   failing probe's event says which slot is down.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::api::handle::ClusterHandle;
use crate::api::status::{WorkerState, WorkerStatus};

/// How long the cluster actor has to answer `/healthz`.
pub const LIVENESS_PATIENCE: Duration = Duration::from_secs(1);

/// Whether the cluster actor answers within [`LIVENESS_PATIENCE`].
pub(crate) async fn alive<M, R>(cluster: &ClusterHandle<M, R>) -> bool
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    matches!(tokio::time::timeout(LIVENESS_PATIENCE, cluster.config()).await, Ok(Ok(_)))
}

/// How many ready workers make the cluster ready: `ready_min` of its configuration as it is
/// now (a reload may change it), else every configured worker (as scaled); `None` when the
/// cluster does not answer in time.
pub(crate) async fn ready_needed<M, R>(cluster: &ClusterHandle<M, R>) -> Option<usize>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    match tokio::time::timeout(LIVENESS_PATIENCE, cluster.config()).await {
        Ok(Ok(config)) => Some(config.ready_min.unwrap_or(config.workers).max(1)),
        _ => None,
    }
}

/// The readiness verdict and the body: the status JSON, with `ready`, `ready_workers` and
/// `ready_min` added.
pub(crate) fn readiness(workers: &[WorkerStatus], needed: Option<usize>, mut status: Value) -> (bool, Value) {
    let ready = workers.iter().filter(|w| w.state == WorkerState::Ready).count();
    let verdict = needed.is_some_and(|n| ready >= n);
    if let Some(object) = status.as_object_mut() {
        object.insert("ready".into(), Value::Bool(verdict));
        object.insert("ready_workers".into(), Value::from(ready));
        object.insert("ready_min".into(), needed.map_or(Value::Null, Value::from));
    }
    (verdict, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(slot: usize, state: WorkerState) -> WorkerStatus {
        WorkerStatus::without_process(slot, state)
    }

    #[test]
    fn ready_once_enough_workers_are() {
        let two = [worker(0, WorkerState::Ready), worker(1, WorkerState::Restarting)];
        let (ok, body) = readiness(&two, Some(2), serde_json::json!({"workers": []}));
        assert!(!ok);
        assert_eq!(body["ready_workers"], 1);
        assert!(readiness(&two, Some(1), serde_json::json!({})).0);
        assert!(!readiness(&two, None, serde_json::json!({})).0, "no answer, not ready");
    }
}
