//! [`CpuTask`]: a queued task as its caller awaits it, spinning briefly before it lets the
//! runtime park (see [`SpinPolicy`](super::spin::SpinPolicy)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::oneshot;

use super::error::CpuPoolError;
use super::thread::Shared;

/// A task in the pool: a future of its result. Dropping it before a thread took the task
/// cancels the task (it is skipped and counted in [`CpuPoolStats::skipped`](crate::CpuPoolStats::skipped)); dropping it
/// later only discards the result.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
/// use corral_workers::{CpuPool, CpuPoolConfig, CpuTask};
///
/// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default()).await?;
/// let task: CpuTask<u64> = pool.submit(|| 40 + 2).await?;
/// assert_eq!(task.await?, 42);
/// # pool.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "dropping a CpuTask cancels it when it has not started"]
#[derive(Debug)]
pub struct CpuTask<T> {
    result: oneshot::Receiver<Result<T, CpuPoolError>>,
    /// Set while a pending poll re-schedules the task at once rather than wait to be woken.
    spinning: Option<Spinning>,
}

/// A task's spin: its deadline, and the pool's policy to tell how it went.
#[derive(Debug)]
struct Spinning {
    until: Instant,
    shared: Arc<Shared>,
}

impl<T> CpuTask<T> {
    /// The task whose result comes on `result`, spinning by the pool's policy.
    pub(super) fn new(result: oneshot::Receiver<Result<T, CpuPoolError>>, shared: &Arc<Shared>) -> Self {
        let spinning = shared.spin.deadline().map(|until| Spinning { until, shared: shared.clone() });
        CpuTask { result, spinning }
    }
}

impl<T> Future for CpuTask<T> {
    type Output = Result<T, CpuPoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.result).poll(cx) {
            Poll::Ready(result) => {
                if let Some(spinning) = self.spinning.take() {
                    spinning.shared.spin.succeeded();
                }
                // The sender only goes away unsent when the task never ran: the pool stopped.
                Poll::Ready(result.unwrap_or(Err(CpuPoolError::Stopped)))
            }
            Poll::Pending => {
                match self.spinning.as_ref().map(|s| Instant::now() < s.until) {
                    // Cooperative spinning: the runtime polls us again after its other ready
                    // tasks instead of parking. The receiver registered the waker as well, so
                    // a result after the deadline still wakes us.
                    Some(true) => cx.waker().wake_by_ref(),
                    Some(false) => {
                        if let Some(spinning) = self.spinning.take() {
                            spinning.shared.spin.failed();
                        }
                    }
                    None => {}
                }
                Poll::Pending
            }
        }
    }
}
