//! [`CpuPoolError`]: what submitting, running or starting a pool can fail with, and
//! [`CpuPoolConfigFault`], what is wrong with a config.

use std::io;
use std::sync::Arc;

/// Errors of a [`CpuPool`](crate::CpuPool).
///
/// Two errors are equal when they are the same variant with equal data; the start failures
/// ([`Thread`](Self::Thread), [`Start`](Self::Start)) only when they are clones of one failure.
///
/// ```
/// use corral_workers::CpuPoolError;
///
/// let e = CpuPoolError::Panicked("index out of bounds".into());
/// assert_eq!(e.to_string(), "the CPU task panicked: index out of bounds");
/// assert_eq!(CpuPoolError::Busy.to_string(), "the CPU pool's queue is full");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CpuPoolError {
    /// The queue is full ([`CpuPoolHandle::try_run`](crate::CpuPoolHandle::try_run) only; `run` waits instead).
    #[error("the CPU pool's queue is full")]
    Busy,
    /// The task panicked; the message is the panic's when it was a string. The pool goes on.
    #[error("the CPU task panicked: {0}")]
    Panicked(String),
    /// The pool is stopping or stopped: it takes no new task.
    #[error("the CPU pool is stopped")]
    Stopped,
    /// The config is invalid ([`CpuPoolConfig::validate`](crate::CpuPoolConfig::validate)).
    #[error("invalid CPU pool config: {0}")]
    Config(#[from] CpuPoolConfigFault),
    /// A pool thread could not be spawned. The threads start with the pool's first task, so
    /// the [`run`](crate::CpuPoolHandle::run), [`submit`](crate::CpuPoolHandle::submit) or
    /// [`try_run`](crate::CpuPoolHandle::try_run) that triggered the spawn fails with this
    /// (its task is not queued); the next task tries again.
    #[error("the CPU pool could not start: cannot spawn pool thread {index}: {source}")]
    Thread {
        /// The thread's index in the pool.
        index: usize,
        /// Why `std::thread::Builder::spawn` failed.
        #[source]
        source: Arc<io::Error>,
    },
    /// The pool actor could not start (its source says why).
    #[error("the CPU pool could not start: {0}")]
    Start(#[source] Arc<ractor::SpawnErr>),
}

impl PartialEq for CpuPoolError {
    fn eq(&self, other: &Self) -> bool {
        use CpuPoolError::{Busy, Config, Panicked, Start, Stopped, Thread};
        match (self, other) {
            (Busy, Busy) | (Stopped, Stopped) => true,
            (Panicked(a), Panicked(b)) => a == b,
            (Config(a), Config(b)) => a == b,
            (Thread { index: a, source: x }, Thread { index: b, source: y }) => a == b && Arc::ptr_eq(x, y),
            (Start(a), Start(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for CpuPoolError {}

/// What is wrong with a [`CpuPoolConfig`](crate::CpuPoolConfig) ([`CpuPoolError::Config`]).
///
/// ```
/// use corral_workers::{CpuPoolConfig, CpuPoolConfigFault, CpuPoolError};
///
/// let err = CpuPoolConfig::default().threads(0).validate().unwrap_err();
/// assert_eq!(err, CpuPoolError::Config(CpuPoolConfigFault::ZeroThreads));
/// assert_eq!(err.to_string(), "invalid CPU pool config: threads must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpuPoolConfigFault {
    /// [`threads`](crate::CpuPoolConfig::threads) is 0.
    #[error("threads must be at least 1")]
    ZeroThreads,
    /// [`queue_capacity`](crate::CpuPoolConfig::queue_capacity) is 0.
    #[error("queue_capacity must be at least 1")]
    ZeroQueueCapacity,
    /// [`queue_capacity`](crate::CpuPoolConfig::queue_capacity) is over what the queue's
    /// semaphore can count.
    #[error("queue_capacity must be at most {max}")]
    QueueCapacityTooLarge {
        /// The configured capacity.
        capacity: usize,
        /// The largest capacity allowed.
        max: usize,
    },
}
