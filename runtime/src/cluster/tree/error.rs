//! Why a tree refuses its configuration ([`TreeConfigError`]) or a request ([`TreeError`]).

use std::sync::Arc;

use crate::api::error::ClusterError;
use crate::config::error::ConfigError;

/// A tree configuration that is refused before anything starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeConfigError {
    /// No program at all.
    #[error("no program: a tree needs at least one [programs.NAME]")]
    Empty,
    /// A name that is not `[a-z0-9_-]+`.
    #[error("program name {0:?} is not [a-z0-9_-]+")]
    BadName(String),
    /// Two programs of one name.
    #[error("two programs named {0:?}")]
    Duplicate(String),
    /// A dependency on a program that does not exist.
    #[error("program {program:?} depends on {unknown:?}, which is not a program of the file")]
    Unknown {
        /// The program.
        program: String,
        /// The name it depends on.
        unknown: String,
    },
    /// Programs that depend on each other in a circle (the names in order, the first again
    /// at the end).
    #[error("depends_on cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// `completed` of a service, which never completes.
    #[error(
        "program {program:?} waits for {service:?} to complete, but {service:?} is a service (only a oneshot completes)"
    )]
    NeverCompletes {
        /// The program.
        program: String,
        /// The service.
        service: String,
    },
    /// A program's cluster is refused.
    #[error("program {program:?}: {source}")]
    Program {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: ConfigError,
    },
}

/// Why a tree refused or failed a request, or stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] TreeConfigError),
    /// No program of that name.
    #[error("no program {0:?} in the tree")]
    NoSuchProgram(String),
    /// The program is not running (stopped, completed, waiting for its dependencies).
    #[error("program {program:?} is not running ({state})")]
    NotRunning {
        /// The program.
        program: String,
        /// Its state.
        state: String,
    },
    /// The program is running already.
    #[error("program {0:?} is running already")]
    AlreadyRunning(String),
    /// The tree is stopping.
    #[error("the tree is stopping")]
    Stopping,
    /// The program's cluster refused or failed the request.
    #[error("program {program:?}: {source}")]
    Program {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: Arc<ClusterError>,
    },
    /// More program deaths than the tree's intensity allows: the tree gave up and stopped.
    #[error(
        "program {program:?} died ({cause}) and the tree gave up: {restarts} program restarts within {period_ms} ms"
    )]
    GaveUp {
        /// The program whose death was one too many.
        program: String,
        /// How it died.
        cause: Arc<str>,
        /// Restarts counted in the window.
        restarts: usize,
        /// The window.
        period_ms: u128,
    },
    /// A reload without a way to re-read the configuration.
    #[error("this tree has no configuration to re-read (no file)")]
    NoReconfigure,
    /// The re-read configuration is refused; nothing changed.
    #[error("the new configuration is refused, nothing changed: {0}")]
    Reconfigure(Arc<str>),
    /// The tree actor is gone.
    #[error("the tree has stopped")]
    Gone,
}
