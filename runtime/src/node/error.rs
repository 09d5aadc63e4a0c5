//! Why the node set could not start, a question across it failed, or a peer's payload was not understood.

/// Why the node set could not start, or a question across it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node server or the host agent could not be spawned (the listen address in use…).
    #[error("cannot start the node server on {listen}: {reason}")]
    Start {
        /// The node server's address.
        listen: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// A peer did not answer in time, or its session closed meanwhile.
    #[error("node {node}: no answer ({reason})")]
    Unreachable {
        /// The node (or the group member, when its name is not known yet).
        node: String,
        /// Why.
        reason: String,
    },
    /// A peer answered with an error.
    #[error("node {node}: {reason}")]
    Failed {
        /// The node.
        node: String,
        /// Its error.
        reason: String,
    },
    /// A peer's answer was not understood.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why a payload from a peer was not understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not JSON, or not the expected shape.
    #[error("malformed node payload: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another version of the payloads (a peer of another build).
    #[error("node payload version {got} (this build speaks {ours})")]
    Version {
        /// The peer's version.
        got: u64,
        /// This build's.
        ours: u32,
    },
}
