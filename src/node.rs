//! The node set: one corral primary per host, joined over ractor_cluster, for operations
//! across hosts — `corral status --all`, `reload --all`, `broadcast`. A primary joins one
//! with a [`NodeConfig`] (its name, listen address, seeds and shared [`Cookie`]) given to
//! `ClusterConfig::node`; the messages a broadcast carries are [`NodeMessage`]s. Running a node
//! needs the `cluster` feature, which adds [`NodeSet`] (from `ClusterHandle::node_set`), what
//! it answers ([`NodeStatus`], [`PeerState`], [`NodeReloaded`]), its errors, the version of the
//! JSON spoken between hosts ([`WIRE_VERSION`]), and `ractor_cluster` itself, for an
//! application's own actor messages (`#[derive(ractor_cluster::RactorMessage)]`).
//!
//! # Example
//!
//! ```
//! use corral::ClusterConfig;
//! use corral::node::{Cookie, NodeConfig};
//!
//! let cookie = Cookie::new("a shared secret of some length").unwrap();
//! let node = NodeConfig::new("web-a", "10.0.0.1:4370".parse().unwrap(), cookie)
//!     .seed("10.0.0.2:4370".parse().unwrap());
//! let config = ClusterConfig::default().node(node);
//! # let _ = config;
//! ```

#[cfg(feature = "cluster")]
pub use corral_runtime::node::{
    AgentMsg, NodeError, NodeReloaded, NodeSet, NodeStatus, PeerState, ReloadAllError, SessionEvent, WIRE_VERSION,
    WireError,
};
pub use corral_runtime::{COOKIE_ENV, Cookie, CookieError, NodeConfig, NodeMessage};
#[cfg(feature = "cluster")]
pub use ractor_cluster;
