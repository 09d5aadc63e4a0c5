//! How a cluster answers the node set's questions ([`LocalNode`]): the same operations as its
//! control socket, on this primary's own workers.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::events::ClusterEvent;
use crate::api::handle::ClusterHandle;
use crate::node::error::AnswerError;
use crate::node::{BoxFuture, LocalNode, PeerChange, Request};

impl<M, R> LocalNode for ClusterHandle<M, R>
where
    M: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    fn peer_changed(&self, node: &str, change: PeerChange) {
        let node = node.to_string();
        self.emit(match change {
            PeerChange::Up(listen) => ClusterEvent::NodeUp { node, listen },
            PeerChange::Down(silent) => ClusterEvent::NodeDown { node, silent },
        });
    }

    fn answer(&self, request: Request) -> BoxFuture<'_, Result<Value, AnswerError>> {
        Box::pin(async move {
            match request {
                Request::Status => {
                    let workers = self.status().await.map_err(|e| AnswerError::Cluster(Box::new(e)))?;
                    let rows: Vec<Value> =
                        workers.iter().map(|w| crate::operator::status_json::status_row(w, None)).collect();
                    Ok(json!({ "workers": rows }))
                }
                Request::Reload => {
                    let report = self.reload().await.map_err(|e| AnswerError::Cluster(Box::new(e)))?;
                    let replaced: Vec<Value> = report
                        .replaced
                        .iter()
                        .map(|r| json!({"slot": r.slot, "old_pid": r.old_pid, "new_pid": r.new_pid, "generation": r.generation}))
                        .collect();
                    match report.error {
                        None => Ok(json!({ "replaced": replaced })),
                        Some(e) => Err(AnswerError::ReloadStopped { source: Box::new(e), replaced: replaced.len() }),
                    }
                }
                Request::Lease { .. } | Request::Release { .. } => Err(AnswerError::LeaseNotHere),
                Request::Broadcast { message } => {
                    let message: M = serde_json::from_value(message).map_err(AnswerError::NotOurMessage)?;
                    let workers = self.workers();
                    let reached = self.broadcast(message).await;
                    Ok(json!({ "reached": reached, "workers": workers }))
                }
            }
        })
    }
}
