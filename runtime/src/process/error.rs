//! Why a worker's program could not be prepared for its launch (carried inside the
//! `io::Error` the launch fails with).

use std::path::PathBuf;

/// Why a worker's program could not be prepared for its launch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// The configured user or group does not exist.
    #[error("no {what} named {name}")]
    NoSuchAccount {
        /// `user` or `group`.
        what: &'static str,
        /// The name configured.
        name: String,
    },
    /// A program given by name is in no directory of `PATH`.
    #[error("{} not found in PATH", .0.display())]
    NotInPath(PathBuf),
}
