//! [`CpuPoolError`]: what submitting, running or starting a pool can fail with.

/// Errors of a [`CpuPool`](crate::CpuPool).
///
/// ```
/// use corral_workers::CpuPoolError;
///
/// let e = CpuPoolError::Panicked("index out of bounds".into());
/// assert_eq!(e.to_string(), "the CPU task panicked: index out of bounds");
/// assert_eq!(CpuPoolError::Busy.to_string(), "the CPU pool's queue is full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    Config(String),
    /// The pool could not start (a thread could not be spawned, or the actor failed to
    /// start).
    #[error("the CPU pool could not start: {0}")]
    Start(String),
}
