//! What a node does when a peer (or its own control socket) asks it through the node set:
//! the same operations as its control socket, on its own cluster (implemented for the
//! cluster's handle in `cluster/node_answers.rs`).

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::error::AnswerError;
use super::wire::Request;

/// A boxed future, for the object-safe [`LocalNode`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The local cluster, as the host agent sees it (the message type erased).
pub(crate) trait LocalNode: Send + Sync + 'static {
    /// Answers one request: its data, or why it failed.
    fn answer(&self, request: Request) -> BoxFuture<'_, Result<Value, AnswerError>>;

    /// A peer came up (`Some(listen)`) or went down after `silent`: a cluster event.
    fn peer_changed(&self, node: &str, change: PeerChange);
}

/// What changed about a peer.
pub(crate) enum PeerChange {
    /// Up, with its node server's address.
    Up(String),
    /// Down, after this long without a heartbeat.
    Down(std::time::Duration),
}
