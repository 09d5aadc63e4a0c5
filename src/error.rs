//! The facade's error type.

/// Why `corral::main` / `corral::run` returned an error.
///
/// Its `Debug` form is the message a person reads (with the causes the message does not
/// already say), because that is what Rust prints when `main` returns the error:
///
/// ```
/// let e = corral::Error::from(corral::ClusterError::Stopped);
/// assert_eq!(format!("{e:?}"), "the cluster has stopped");
/// ```
#[derive(thiserror::Error)]
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

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.to_string();
        f.write_str(&message)?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                write!(f, "\n\nCaused by:\n    {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}
