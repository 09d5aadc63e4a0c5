//! The worker side's error types: [`WorkerError`], and [`BoxError`], what behaviours return.

use corral_protocol::{ListenRefusal, ProtocolError};

/// The error type behaviours return: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the worker side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The channel to the primary is closed (the primary is gone or the worker is stopping).
    #[error("the channel to the primary is closed")]
    Disconnected,
    /// The outgoing queue is full ([`WorkerContext::try_report`](crate::WorkerContext::try_report)).
    #[error("the outgoing queue to the primary is full")]
    Busy,
    /// The primary refused a listen request.
    #[error(transparent)]
    ListenRefused(#[from] ListenRefusal),
    /// A granted listener could not be set up in this worker.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A protocol error.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The worker could not set itself up (runtime, signal handlers, actor).
    #[error("worker setup failed: {0}")]
    Setup(String),
    /// The behaviour's `start` failed.
    #[error("worker start failed: {0}")]
    Start(String),
    /// The behaviour's `handle` or `stop` failed.
    #[error("worker behaviour failed: {0}")]
    Behaviour(String),
}
