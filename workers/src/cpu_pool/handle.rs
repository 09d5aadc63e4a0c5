//! What callers hold: [`CpuPoolHandle`], which sends tasks straight to the threads, and
//! [`CpuPoolMsg`], the messages of the pool actor (which replies with handles). The two name
//! each other, so they share this module.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{TryAcquireError, oneshot};

use super::error::CpuPoolError;
use super::stats::CpuPoolStats;
use super::task::CpuTask;
use super::thread::{Shared, TaskCell};

/// Messages of the [`CpuPool`](crate::CpuPool) actor. Tasks do not go through it (see [`CpuPool`](crate::CpuPool)): get a [`CpuPoolHandle`] for that.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolMsg};
/// use ractor::Actor;
///
/// let (actor, join) = Actor::spawn(None, CpuPool, CpuPoolConfig::default().threads(1)).await?;
/// let stats = ractor::call!(actor, CpuPoolMsg::Stats)?;
/// assert_eq!(stats.threads, 1);
/// actor.stop(None);
/// join.await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum CpuPoolMsg {
    /// Replies with the pool's counters.
    Stats(RpcReplyPort<CpuPoolStats>),
    /// Replies with a handle to submit tasks ([`CpuPoolHandle::connect`]).
    Handle(RpcReplyPort<CpuPoolHandle>),
}

// With ractor's `cluster` feature ractor implements `Message` only for types that say how they
// cross nodes; the pool is local to its worker.
#[cfg(feature = "cluster")]
impl ractor::Message for CpuPoolMsg {}

/// A cheap, cloneable handle to a running [`CpuPool`](crate::CpuPool): what request handlers keep to run CPU
/// work. Tasks go straight from the handle to the threads (see [`CpuPool`](crate::CpuPool)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
/// use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolError};
///
/// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default()).await?;
/// let for_handler = pool.clone();
/// let total = for_handler.run(|| (1..=100u64).sum::<u64>()).await?;
/// assert_eq!(total, 5050);
/// match pool.try_run(|| "fast") {
///     Ok(task) => assert_eq!(task.await?, "fast"),
///     Err(CpuPoolError::Busy) => println!("overloaded: answer 503"),
///     Err(e) => return Err(e),
/// }
/// pool.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CpuPoolHandle {
    shared: Arc<Shared>,
    actor: ActorRef<CpuPoolMsg>,
}

impl std::fmt::Debug for CpuPoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPoolHandle").field("actor", &self.actor.get_id()).field("stats", &self.stats()).finish()
    }
}

impl CpuPoolHandle {
    /// The handle the pool actor `actor` gives out.
    pub(super) fn new(shared: Arc<Shared>, actor: ActorRef<CpuPoolMsg>) -> Self {
        CpuPoolHandle { shared, actor }
    }

    /// Asks the pool actor `actor` for a handle (for a pool spawned with ractor's
    /// `Actor::spawn`).
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Stopped`] when the actor is gone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolHandle};
    /// use ractor::Actor;
    ///
    /// let (actor, _join) = Actor::spawn(None, CpuPool, CpuPoolConfig::default()).await?;
    /// let pool = CpuPoolHandle::connect(&actor).await?;
    /// assert_eq!(pool.run(|| 2 + 2).await?, 4);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn connect(actor: &ActorRef<CpuPoolMsg>) -> Result<CpuPoolHandle, CpuPoolError> {
        match actor.call(CpuPoolMsg::Handle, None).await {
            Ok(ractor::rpc::CallResult::Success(handle)) => Ok(handle),
            _ => Err(CpuPoolError::Stopped),
        }
    }

    /// Runs `f` on a pool thread and returns its result, waiting first for room in the queue
    /// when it is full (backpressure). Dropping the returned future before a thread took the
    /// task cancels it: the task is skipped.
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Panicked`] when `f` panicked, [`CpuPoolError::Stopped`] when the pool
    /// stopped before taking the task, [`CpuPoolError::Thread`] when this was the pool's first
    /// task and a thread could not be spawned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolError};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default()).await?;
    /// let data = vec![3u32, 1, 2];
    /// let sorted = pool.run(move || { let mut d = data; d.sort(); d }).await?;
    /// assert_eq!(sorted, [1, 2, 3]);
    /// let err = pool.run(|| -> u32 { panic!("bad input") }).await.unwrap_err();
    /// assert_eq!(err, CpuPoolError::Panicked("bad input".into()));
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn run<F, T>(&self, f: F) -> Result<T, CpuPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit(f).await?.await
    }

    /// Queues `f`, waiting for room when the queue is full, and returns the task to await
    /// for its result: this lets a caller queue several tasks before awaiting any.
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Stopped`] when the pool stopped, [`CpuPoolError::Thread`] when this
    /// was the pool's first task and a thread could not be spawned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default()).await?;
    /// let a = pool.submit(|| 1).await?;
    /// let b = pool.submit(|| 2).await?;
    /// assert_eq!(a.await? + b.await?, 3);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn submit<F, T>(&self, f: F) -> Result<CpuTask<T>, CpuPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.shared.room.acquire().await {
            // The permit goes back when a thread takes the task out of the queue.
            Ok(permit) => permit.forget(),
            Err(_closed) => return Err(CpuPoolError::Stopped),
        }
        self.enqueue(f)
    }

    /// Queues `f` if the queue has room, and returns the task to await for its result; never
    /// waits. Use it to shed load: a full queue means the pool is behind.
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Busy`] at once when the queue is full (counted in
    /// [`CpuPoolStats::rejected`]), [`CpuPoolError::Stopped`] when the pool stopped,
    /// [`CpuPoolError::Thread`] when this was the pool's first task and a thread could not be
    /// spawned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default()).await?;
    /// let answer = pool.try_run(|| 6 * 7)?.await?;
    /// assert_eq!(answer, 42);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn try_run<F, T>(&self, f: F) -> Result<CpuTask<T>, CpuPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.shared.room.try_acquire() {
            // The permit goes back when a thread takes the task out of the queue.
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => {
                self.shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(CpuPoolError::Busy);
            }
            Err(TryAcquireError::Closed) => return Err(CpuPoolError::Stopped),
        }
        self.enqueue(f)
    }

    /// Sends a task whose place in the queue is already taken.
    fn enqueue<F, T>(&self, f: F) -> Result<CpuTask<T>, CpuPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.shared.send(Box::new(TaskCell { f, reply }))?;
        Ok(CpuTask::new(result, &self.shared))
    }

    /// The pool's counters, read directly (no message to the actor).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// let (pool, _actor) = corral_workers::CpuPool::start(Default::default()).await?;
    /// let stats = pool.stats();
    /// assert_eq!((stats.queued, stats.running, stats.done), (0, 0, 0));
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> CpuPoolStats {
        self.shared.stats()
    }

    /// The number of pool threads.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default().threads(3)).await?;
    /// assert_eq!(pool.threads(), 3);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// How many pool threads have been spawned: 0 until the pool's first task, then
    /// [`threads`](Self::threads) (it counts threads spawned over the pool's life, so it does
    /// not go down when the pool stops).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default().threads(2)).await?;
    /// assert_eq!(pool.started_threads(), 0);
    /// pool.run(|| ()).await?;
    /// assert_eq!(pool.started_threads(), 2);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn started_threads(&self) -> usize {
        self.shared.started.load(Ordering::Acquire)
    }

    /// The number of places in the queue.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    ///
    /// let (pool, _actor) = CpuPool::start(CpuPoolConfig::default().queue_capacity(5)).await?;
    /// assert_eq!(pool.queue_capacity(), 5);
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn queue_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Whether the pool has stopped accepting tasks (it is stopping or stopped).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// let (pool, _actor) = corral_workers::CpuPool::start(Default::default()).await?;
    /// assert!(!pool.is_stopped());
    /// pool.stop().await;
    /// assert!(pool.is_stopped());
    /// # Ok(()) }
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// The pool actor, e.g. to link it or to monitor it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// let (pool, _actor) = corral_workers::CpuPool::start(Default::default()).await?;
    /// println!("pool actor {}", pool.actor().get_id());
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn actor(&self) -> &ActorRef<CpuPoolMsg> {
        &self.actor
    }

    /// Stops the pool and waits until it stopped: new tasks are refused at once, the queued
    /// ones run, then the threads are joined. Does nothing more if it already stopped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// use corral_workers::{CpuPool, CpuPoolError};
    ///
    /// let (pool, _actor) = CpuPool::start(Default::default()).await?;
    /// let queued = pool.submit(|| 7).await?;
    /// pool.stop().await;
    /// assert_eq!(queued.await?, 7); // queued before the stop: it ran
    /// assert_eq!(pool.run(|| 8).await, Err(CpuPoolError::Stopped));
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self) {
        // An error means the actor was already gone: stopped is what the caller wants.
        let _ = self.actor.stop_and_wait(Some("stopped by its handle".into()), None).await;
    }
}
