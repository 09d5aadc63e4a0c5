//! The worker side's error types: [`WorkerError`], the [`Stage`] of a behaviour that failed,
//! and [`BoxError`], what behaviours return.

use std::fmt;
use std::io;

use corral_protocol::{ListenRefusal, ProtocolError};

use crate::cpu_pool::CpuPoolError;

/// The error type behaviours return: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the worker side.
///
/// Failures keep their cause as the [`source`](std::error::Error::source): a behaviour's own
/// error, the `io::Error` of a setup step, the CPU pool's error.
///
/// ```
/// use corral_workers::{Stage, WorkerError};
///
/// let err = WorkerError::Behaviour { during: Stage::Handle, source: "disk full".into() };
/// assert_eq!(err.to_string(), "worker behaviour failed in handle: disk full");
/// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "disk full");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The channel to the primary is closed (the primary is gone or the worker is stopping).
    #[error("the channel to the primary is closed")]
    Disconnected,
    /// The outgoing queue is full ([`WorkerContext::try_report`](crate::WorkerContext::try_report),
    /// [`WorkerContext::try_send_to_worker`](crate::WorkerContext::try_send_to_worker),
    /// [`WorkerContext::try_broadcast_workers`](crate::WorkerContext::try_broadcast_workers)).
    #[error("the outgoing queue to the primary is full")]
    Busy,
    /// A message for another worker cannot be encoded
    /// ([`WorkerContext::send_to_worker`](crate::WorkerContext::send_to_worker)).
    #[error("the message cannot be encoded: {0}")]
    Encode(#[source] postcard::Error),
    /// No worker slot can have this number
    /// ([`WorkerContext::send_to_worker`](crate::WorkerContext::send_to_worker)).
    #[error("there is no worker slot {slot}")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
    },
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
        source: io::Error,
    },
    /// A protocol error (among them a bad worker environment,
    /// [`ProtocolError::Bootstrap`]).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Setup: the primary that started this worker is gone (it died before the worker armed
    /// its parent-death signal).
    #[error("worker setup failed: the primary that started this worker is gone")]
    PrimaryGone,
    /// Setup: the worker's tokio runtime cannot be built.
    #[error("worker setup failed: cannot build the tokio runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Setup: the inherited frame-stream socket cannot be registered with the runtime.
    #[error("worker setup failed: cannot set up the channel to the primary: {0}")]
    Channel(#[source] io::Error),
    /// Setup: the SIGTERM handler cannot be installed.
    #[error("worker setup failed: cannot handle SIGTERM: {0}")]
    Signal(#[source] io::Error),
    /// Setup: the worker's CPU pool cannot start.
    #[error("worker setup failed: {0}")]
    Pool(#[source] CpuPoolError),
    /// The behaviour's `start` failed.
    #[error("worker start failed: {0}")]
    Start(#[source] BoxError),
    /// The behaviour's `handle` or `stop` failed.
    #[error("worker behaviour failed in {during}: {source}")]
    Behaviour {
        /// Which of the behaviour's methods failed.
        during: Stage,
        /// The behaviour's error.
        #[source]
        source: BoxError,
    },
}

impl WorkerError {
    /// Whether this is (or, for a failed `start`, wraps) the primary's refusal of a listen
    /// request: the primary decided it and says why, so the worker need not say it again.
    ///
    /// ```
    /// use corral_workers::WorkerError;
    /// let refused = corral_protocol::ListenRefusal::NotAllowed { addr: "127.0.0.1:9".into() };
    /// assert!(WorkerError::Start(Box::new(WorkerError::from(refused))).is_listen_refusal());
    /// assert!(!WorkerError::Start("disk full".into()).is_listen_refusal());
    /// ```
    pub fn is_listen_refusal(&self) -> bool {
        match self {
            WorkerError::ListenRefused(_) => true,
            WorkerError::Start(source) => {
                source.downcast_ref::<WorkerError>().is_some_and(WorkerError::is_listen_refusal)
            }
            _ => false,
        }
    }
}

/// Which of a [`Worker`](crate::Worker)'s methods failed ([`WorkerError::Behaviour`]).
///
/// ```
/// assert_eq!(corral_workers::Stage::Stop.to_string(), "stop");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// [`Worker::handle`](crate::Worker::handle), handling a message from the primary.
    Handle,
    /// [`Worker::stop`](crate::Worker::stop), draining.
    Stop,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Handle => "handle",
            Stage::Stop => "stop",
        })
    }
}
