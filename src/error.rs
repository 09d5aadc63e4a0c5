//! The facade's error type.

/// Why `corral::main` / `corral::run` returned an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster failed (bad config, a slot gave up under `Escalation::Stop`, …).
    #[error(transparent)]
    Cluster(#[from] corral_runtime::ClusterError),
    /// This process was started as a worker but could not run as one.
    #[error(transparent)]
    Worker(#[from] corral_workers::WorkerError),
    /// The primary's own setup failed (tokio runtime, signal handlers).
    #[error("primary setup failed: {0}")]
    Setup(#[source] std::io::Error),
    /// The primary closure given to `corral::run` failed.
    #[error("primary failed: {0}")]
    Primary(#[source] corral_workers::BoxError),
}
