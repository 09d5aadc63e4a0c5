//! The handle's door to the node set (`cluster` feature): which set this primary joined, and
//! the node set's events to the handle's subscribers.

use serde::Serialize;

use crate::api::events::ClusterEvent;
use crate::api::handle::ClusterHandle;
use crate::node::NodeSet;

impl<M, R> ClusterHandle<M, R>
where
    M: Serialize + Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    /// The node set this primary joined ([`ClusterConfig::node`](crate::config::cluster::ClusterConfig::node)),
    /// for `status_all`, `reload_all` and `broadcast` across hosts.
    ///
    /// ```no_run
    /// # async fn demo(cluster: corral_runtime::ClusterHandle<String, String>) {
    /// if let Some(nodes) = cluster.node_set() {
    ///     let all = nodes.status_all().await;
    ///     println!("{} workers on {} nodes", all.workers.len(), all.nodes.len());
    ///     nodes.broadcast(&"flush".to_string()).await.ok();
    /// }
    /// # }
    /// ```
    pub fn node_set(&self) -> Option<&NodeSet> {
        self.node_set.get()
    }

    /// Emits `event` to every subscriber (the node set's up / down).
    pub(crate) fn emit(&self, event: ClusterEvent<R>) {
        self.bus.emit(event);
    }

    pub(crate) fn set_node_set(&self, set: NodeSet) {
        let _ = self.node_set.set(set);
    }
}
