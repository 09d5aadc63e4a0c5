//! Why one probe failed.

use std::time::Duration;

use crate::routing::balance::targeted::TargetError;
use crate::supervision::exit::ExitStatus;

/// Why one health probe of a worker failed.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::ProbeError;
/// assert_eq!(ProbeError::Status(500).to_string(), "answered 500");
/// assert_eq!(ProbeError::Timeout(Duration::from_millis(500)).to_string(), "no answer within 500ms");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No connection to the worker could be made.
    #[error("cannot reach the worker: {0}")]
    Unreachable(#[from] TargetError),
    /// The probe took longer than its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP answer with a status other than 2xx or 3xx.
    #[error("answered {0}")]
    Status(u16),
    /// What came back is not an HTTP/1 status line.
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(String),
    /// The worker closed the connection before it answered.
    #[error("closed the connection without an answer")]
    Closed,
    /// Reading or writing the connection failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The exec check's command failed.
    #[error("the check {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Exec {
        /// How it ended.
        status: ExitStatus,
        /// The last line of its stderr.
        stderr: String,
    },
    /// The exec check's command could not be started.
    #[error("cannot run the check: {0}")]
    Spawn(std::io::Error),
}
