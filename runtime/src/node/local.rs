//! What a node does when a peer (or its own control socket) asks it through the node set:
//! the same operations as its control socket, on its own cluster.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::wire::Request;
use crate::ClusterHandle;

/// A boxed future, for the object-safe [`LocalNode`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The local cluster, as the host agent sees it (the message type erased).
pub(crate) trait LocalNode: Send + Sync + 'static {
    /// Answers one request: its data, or why it failed.
    fn answer(&self, request: Request) -> BoxFuture<'_, Result<Value, String>>;
}

impl<M, R> LocalNode for ClusterHandle<M, R>
where
    M: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    fn answer(&self, request: Request) -> BoxFuture<'_, Result<Value, String>> {
        Box::pin(async move {
            match request {
                Request::Status => {
                    let workers = self.status().await.map_err(|e| e.to_string())?;
                    let rows: Vec<Value> = workers.iter().map(|w| crate::control::status_row(w, None)).collect();
                    Ok(json!({ "workers": rows }))
                }
                Request::Reload => {
                    let report = self.reload().await.map_err(|e| e.to_string())?;
                    let replaced: Vec<Value> = report
                        .replaced
                        .iter()
                        .map(|r| json!({"slot": r.slot, "old_pid": r.old_pid, "new_pid": r.new_pid, "generation": r.generation}))
                        .collect();
                    match report.error {
                        None => Ok(json!({ "replaced": replaced })),
                        Some(e) => Err(format!("{e} (replaced {} before it stopped)", replaced.len())),
                    }
                }
                Request::Broadcast { message } => {
                    let message: M = serde_json::from_value(message)
                        .map_err(|e| format!("the message is not one of this cluster's: {e}"))?;
                    let workers = self.workers();
                    let reached = self.broadcast(message).await;
                    Ok(json!({ "reached": reached, "workers": workers }))
                }
            }
        })
    }
}
