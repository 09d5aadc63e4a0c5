//! What a running cluster reports: [`ClusterEvent`](crate::ClusterEvent) (at the crate root),
//! read from an [`EventStream`] — the one [`Cluster::spawn`](crate::Cluster::spawn) returns,
//! or another from [`ClusterHandle::subscribe`](crate::ClusterHandle::subscribe) — with
//! [`OutputStream`], which of a worker's streams a captured line came from, and [`lifecycle`],
//! the `tracing` target of the primary's lifecycle spans.
//!
//! # Example
//!
//! ```no_run
//! use corral::events::EventStream;
//! use corral::{ClusterError, ClusterEvent, ClusterHandle};
//!
//! async fn watch(cluster: &ClusterHandle<String, String>) -> Result<(), ClusterError> {
//!     let mut events: EventStream<String> = cluster.subscribe();
//!     while let Some(event) = events.recv().await {
//!         if let ClusterEvent::Exit { slot, status, .. } = event {
//!             eprintln!("worker {slot} {status}");
//!         }
//!     }
//!     Ok(())
//! }
//! ```

pub use corral_runtime::lifecycle;
pub use corral_runtime::{EventStream, OutputStream};
