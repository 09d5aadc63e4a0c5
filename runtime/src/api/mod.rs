//! What a cluster's users hold: the [`ClusterHandle`](handle::ClusterHandle) and the
//! [`ClusterMsg`](msg::ClusterMsg) vocabulary it sends to the cluster actor, the reports and
//! status snapshots it gets back, the outcome of a run, and the stream of
//! [`ClusterEvent`](events::ClusterEvent)s every subscriber receives.

pub(crate) mod autoscale;
pub(crate) mod error;
pub mod events;
pub(crate) mod handle;
pub(crate) mod msg;
#[cfg(feature = "cluster")]
mod node_set;
pub(crate) mod outcome;
pub(crate) mod reports;
pub(crate) mod status;
