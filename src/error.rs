//! The facade's error type, and the exit codes of programs built on `corral::main` / `corral::run`.

/// Exit code of a primary whose cluster failed: it could not start (an address in use or
/// not assignable), a slot gave up under `Escalation::Stop`, workers had to be killed at the
/// stop, the primary's own code failed, or the primary could not set itself up. The same
/// code as `corral run`'s.
pub const EXIT_FAILURE: u8 = 1;

/// Exit code of a primary whose configuration was refused before anything started (a bad
/// [`ClusterConfig`](crate::ClusterConfig) value). The same code as `corral run`'s usage and
/// configuration errors.
pub const EXIT_CONFIG: u8 = 2;

/// Why `corral::run_primary` returned an error (`corral::main` and `corral::run` print it
/// and return an exit code).
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
    /// A tree of programs refused its configuration or gave up.
    #[error(transparent)]
    Tree(#[from] corral_runtime::tree::TreeError),
    /// The primary's own setup failed (tokio runtime, signal handlers).
    #[error("primary setup failed: {0}")]
    Setup(#[source] std::io::Error),
    /// The primary closure given to `corral::run` failed.
    #[error("primary failed: {0}")]
    Primary(#[source] corral_workers::BoxError),
}

impl Error {
    /// The process exit code this error stands for: [`EXIT_CONFIG`] for a refused
    /// configuration, [`EXIT_FAILURE`] for everything else.
    ///
    /// ```
    /// use corral::{ClusterError, Error};
    /// use corral::config::{ConfigError, ConfigProblem};
    /// let bad = ConfigError::Invalid { field: "workers", problem: ConfigProblem::AtLeastOne };
    /// assert_eq!(Error::from(ClusterError::from(bad)).exit_code(), corral::EXIT_CONFIG);
    /// assert_eq!(Error::from(ClusterError::Stopped).exit_code(), corral::EXIT_FAILURE);
    /// ```
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Cluster(corral_runtime::ClusterError::Config(_)) => EXIT_CONFIG,
            Error::Tree(corral_runtime::tree::TreeError::Config(_)) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    }

    /// The message, then each cause it does not already say, joined by `: `: one line.
    ///
    /// ```
    /// let e = corral::Error::Setup(std::io::Error::other("no signal handlers"));
    /// assert_eq!(e.sentence(), "primary setup failed: no signal handlers");
    /// ```
    pub fn sentence(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }
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
