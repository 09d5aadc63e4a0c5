//! Why the node set could not start, a question across it failed, or a peer's payload was not understood.

/// Why the node set could not start, or a question across it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node server or the host agent could not be spawned (the listen address in use…).
    #[error("cannot start the node server on {listen}: {source}")]
    Start {
        /// The node server's address.
        listen: std::net::SocketAddr,
        /// Why.
        #[source]
        source: NodeStartError,
    },
    /// A peer did not answer in time, or its session closed meanwhile.
    #[error("node {node}: no answer ({silence})")]
    Unreachable {
        /// The node (or the group member, when its name is not known yet).
        node: String,
        /// Why no answer came.
        silence: Silence,
    },
    /// A peer answered with an error.
    #[error("node {node}: {said}")]
    Failed {
        /// The node.
        node: String,
        /// What it said: the Display of its error ([`AnswerError`] on its side), as the
        /// wire carries it.
        said: String,
    },
    /// A peer's reply carried neither data nor an error.
    #[error("node {node}: no answer")]
    Empty {
        /// The node.
        node: String,
    },
    /// A peer's answer was not understood.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why the node server or the host agent did not start ([`NodeError::Start`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeStartError {
    /// An actor could not be spawned (the node server's listener could not bind…).
    #[error(transparent)]
    Spawn(#[from] ractor::SpawnErr),
    /// The node server stopped before the host agent could subscribe to its events.
    #[error("the node server stopped before the host agent subscribed to it")]
    Subscribe,
}

/// Why a peer gave no answer ([`NodeError::Unreachable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Silence {
    /// Its session closed (or its agent stopped) before it answered.
    #[error("its session closed")]
    SessionClosed,
    /// No answer within the question's timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The task asking it failed.
    #[error("the question's task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// It is up (heard from within the heartbeat timeout) but has no session now: the
    /// session closed and is being redialled (the peer restarted or was upgraded in place).
    #[error("no session now: it closed and is being redialled")]
    NoSession,
}

/// Why this node could not answer a peer's question (its Display is the wire's `error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The question did not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The local cluster failed the operation (it has stopped…).
    #[error(transparent)]
    Cluster(Box<dyn std::error::Error + Send + Sync>),
    /// The local rolling reload stopped partway.
    #[error("{source} (replaced {replaced} before it stopped)")]
    ReloadStopped {
        /// Why it stopped.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// How many workers it replaced before.
        replaced: usize,
    },
    /// A broadcast's message is not of this cluster's message type.
    #[error("the message is not one of this cluster's: {0}")]
    NotOurMessage(#[source] serde_json::Error),
    /// A lease question reached the cluster: the host agent answers those.
    #[error("the reload lease is the host agent's to answer")]
    LeaseNotHere,
}

/// Where a `reload_all` stopped, and why ([`ReloadAllError`](crate::node::ReloadAllError)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadAllFailure {
    /// The node did not answer, or failed its reload (the [`NodeError`]'s Display).
    #[error("{0}")]
    Node(std::sync::Arc<NodeError>),
    /// The node's workers were not all ready after its reload, in time.
    #[error("not healthy after its reload: {}", .0.join(", "))]
    NotReady(Vec<String>),
    /// Its status could not be had after its reload.
    #[error("not healthy after its reload: {0}")]
    NoStatus(std::sync::Arc<NodeError>),
    /// This node reaches only a minority of the node set (a partition): nothing reloaded.
    #[error(
        "refused: this node reaches {reached} of the {known} nodes of the set, not a majority (a partition?); nothing was reloaded"
    )]
    Minority {
        /// Nodes reached, this one included.
        reached: usize,
        /// Nodes the set knows, up or down.
        known: usize,
    },
    /// Another `reload --all` held the node set's lease for longer than this one would wait.
    #[error("another reload --all (from {holder}) held the node set for {waited:?}; nothing was reloaded")]
    LeaseBusy {
        /// The node whose reload --all holds it.
        holder: String,
        /// How long this one waited.
        waited: std::time::Duration,
    },
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
