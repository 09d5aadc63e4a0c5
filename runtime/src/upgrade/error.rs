//! How a new executable failed its upgrade check.

use std::sync::Arc;
use std::time::Duration;

use crate::supervision::exit::ExitStatus;

/// How the new executable failed its check (run as `PROGRAM ARGS…` with `CORRAL_UPGRADE_CHECK`
/// set: it loads and validates its configuration, says so, and exits).
///
/// ```
/// use corral_runtime::PreflightError;
/// let e = PreflightError::Missing { path: "/srv/app".into() };
/// assert_eq!(e.to_string(), "the new executable /srv/app does not exist");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreflightError {
    /// No file at the path.
    #[error("the new executable {} does not exist", path.display())]
    Missing {
        /// The executable's path.
        path: std::path::PathBuf,
    },
    /// The file cannot be executed (mode, format, interpreter).
    #[error("the new executable {} cannot be run: {source}", path.display())]
    NotExecutable {
        /// The executable's path.
        path: std::path::PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// It exited with a failure (refused its configuration, crashed).
    #[error("the new executable {} failed its check ({status}){}", path.display(), tail(stderr))]
    Failed {
        /// The executable's path.
        path: std::path::PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// It exited cleanly without saying it can take over (not a corral primary, or one too
    /// old to be upgraded to).
    #[error("the new executable {} exited without taking the upgrade check (is it a corral primary?)", path.display())]
    NoAnswer {
        /// The executable's path.
        path: std::path::PathBuf,
    },
    /// It did not finish within the check's time limit (it was killed).
    #[error("the new executable {} did not finish its check within {after:?}", path.display())]
    TimedOut {
        /// The executable's path.
        path: std::path::PathBuf,
        /// The limit.
        after: Duration,
    },
}

fn tail(stderr: &str) -> String {
    match stderr.trim() {
        "" => String::new(),
        text => format!(": {text}"),
    }
}

/// A handover block of another version than this primary reads (carried inside the
/// `io::Error` its decoding fails with).
#[derive(Debug, thiserror::Error)]
#[error("handover block version {got} (this primary reads {ours})")]
pub(crate) struct HandoverVersion {
    /// The block's version.
    pub(crate) got: u32,
    /// This primary's.
    pub(crate) ours: u32,
}
