//! [`CpuPoolStats`]: a snapshot of a pool's counters, as handles, the actor and pongs report it.

use serde::{Deserialize, Serialize};

/// A snapshot of a pool's counters. `Copy` and serde-serializable, to travel in reports.
///
/// The gauges (`queued`, `running`) are what is true now; the others count since the start.
/// Each field is read on its own, so a snapshot taken while tasks move may be off by a task
/// or two between fields. Once the pool is idle,
/// `accepted == done + panicked + skipped`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
/// use corral_workers::{CpuPool, CpuPoolConfig};
///
/// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default().threads(1)).await?;
/// pool.run(|| ()).await?;
/// let stats = pool.stats();
/// assert_eq!((stats.threads, stats.accepted, stats.done, stats.queued), (1, 1, 1, 0));
/// # pool.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPoolStats {
    /// Pool threads (the configured size; the pool keeps it whatever its tasks do).
    pub threads: usize,
    /// Places in the queue.
    pub queue_capacity: usize,
    /// Tasks taken into the queue so far.
    pub accepted: u64,
    /// Tasks waiting in the queue now.
    pub queued: u64,
    /// Tasks running now (at most `threads`).
    pub running: u64,
    /// Tasks that returned.
    pub done: u64,
    /// Tasks that panicked (their callers got [`CpuPoolError::Panicked`](crate::CpuPoolError::Panicked)).
    pub panicked: u64,
    /// Submissions refused because the queue was full ([`CpuPoolError::Busy`](crate::CpuPoolError::Busy)).
    pub rejected: u64,
    /// Tasks not run because their caller had gone before a thread took them.
    pub skipped: u64,
}
