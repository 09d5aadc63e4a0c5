//! `CpuPool`: a fixed set of dedicated OS threads for CPU-heavy work inside a worker.
//!
//! A worker runs its event loop on one single-threaded tokio runtime, as a Node worker does:
//! a handler that hashes a password or renders a PDF for 50 ms stalls every connection of the
//! worker and makes it miss its heartbeats. [`CpuPoolHandle::run`] moves such a closure to a
//! pool thread and awaits its result; the event loop keeps serving meanwhile.
//!
//! The design, the stopping rules and an example are on [`CpuPool`] (this module is private;
//! the crate re-exports its items). The pool threads' side is in `thread`.

mod spin;
mod thread;

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, TryAcquireError, oneshot};
use tokio::task::JoinHandle;

use self::spin::SpinPolicy;
use self::thread::{Counters, Shared, TaskCell, thread_main};

/// The number of pool threads each of `workers` worker processes gets by default: the cores
/// this process may use (`std::thread::available_parallelism`, which honours CPU affinity and
/// cgroup quotas) shared out among the workers, at least 1.
///
/// ```
/// use corral_workers::default_threads;
///
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert_eq!(default_threads(1), cores);
/// assert_eq!(default_threads(cores * 8), 1);
/// assert!(default_threads(0) >= 1);
/// ```
pub fn default_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    (cores / workers.max(1)).max(1)
}

/// How a [`CpuPool`] is set up.
///
/// ```
/// use corral_workers::CpuPoolConfig;
///
/// let config = CpuPoolConfig::for_workers(2).queue_capacity(256).thread_name("resize");
/// assert!(config.threads >= 1);
/// assert_eq!(config.queue_capacity, 256);
/// assert!(config.validate().is_ok());
/// assert!(CpuPoolConfig::default().threads(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPoolConfig {
    /// Number of pool threads: at most this many tasks run at once. Default:
    /// [`default_threads(1)`](default_threads), every core this process may use.
    pub threads: usize,
    /// Tasks that may wait for a thread; past that, [`CpuPoolHandle::run`] waits for room
    /// and [`CpuPoolHandle::try_run`] fails with [`CpuPoolError::Busy`]. Default: 1024.
    pub queue_capacity: usize,
    /// Prefix of the threads' names (`{prefix}-{index}`; Linux shows the first 15 bytes).
    /// Default: `corral-cpu`.
    pub thread_name: String,
    /// Stack size of each thread in bytes. Default: `None`, Rust's default (2 MiB unless
    /// `RUST_MIN_STACK` says otherwise).
    pub stack_size: Option<usize>,
    /// How long an awaited [`CpuTask`] keeps its runtime awake (re-polling itself, between
    /// the event loop's other tasks) instead of parking until the pool thread wakes it, while
    /// the pool's recent tasks ran shorter than this and spinning kept paying off (see
    /// [`CpuPool`]). Waking a parked runtime costs a few µs (an `eventfd` write and an
    /// inter-processor interrupt, more in a VM): for short tasks, spinning cuts the round trip
    /// to about a microsecond. `Duration::ZERO` turns it off. Default: 20 µs.
    pub spin: Duration,
}

impl Default for CpuPoolConfig {
    fn default() -> Self {
        CpuPoolConfig {
            threads: default_threads(1),
            queue_capacity: 1024,
            thread_name: "corral-cpu".to_string(),
            stack_size: None,
            spin: Duration::from_micros(20),
        }
    }
}

impl CpuPoolConfig {
    /// The default config with [`default_threads(workers)`](default_threads) threads: what
    /// each of a cluster's `workers` processes should use.
    ///
    /// ```
    /// let config = corral_workers::CpuPoolConfig::for_workers(1_000_000);
    /// assert_eq!(config.threads, 1);
    /// ```
    pub fn for_workers(workers: usize) -> Self {
        CpuPoolConfig { threads: default_threads(workers), ..CpuPoolConfig::default() }
    }

    /// Sets [`threads`](Self::threads).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().threads(3).threads, 3);
    /// ```
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets [`queue_capacity`](Self::queue_capacity).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().queue_capacity(8).queue_capacity, 8);
    /// ```
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets [`thread_name`](Self::thread_name).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().thread_name("img").thread_name, "img");
    /// ```
    #[must_use]
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Sets [`stack_size`](Self::stack_size).
    ///
    /// ```
    /// let config = corral_workers::CpuPoolConfig::default().stack_size(8 << 20);
    /// assert_eq!(config.stack_size, Some(8 << 20));
    /// ```
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Sets [`spin`](Self::spin).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = corral_workers::CpuPoolConfig::default().spin(Duration::ZERO);
    /// assert_eq!(config.spin, Duration::ZERO);
    /// ```
    #[must_use]
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Checks the config: at least one thread and a queue of at least one place (a task
    /// waits in the queue before a thread takes it, so a queue of 0 could never take one).
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Config`] naming the wrong field.
    ///
    /// ```
    /// use corral_workers::CpuPoolConfig;
    ///
    /// let err = CpuPoolConfig::default().queue_capacity(0).validate().unwrap_err();
    /// assert!(err.to_string().contains("queue_capacity"));
    /// ```
    pub fn validate(&self) -> Result<(), CpuPoolError> {
        if self.threads == 0 {
            return Err(CpuPoolError::Config("threads must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(CpuPoolError::Config("queue_capacity must be at least 1".into()));
        }
        // The semaphore's limit; far beyond any sensible queue.
        if self.queue_capacity > Semaphore::MAX_PERMITS {
            return Err(CpuPoolError::Config(format!("queue_capacity must be at most {}", Semaphore::MAX_PERMITS)));
        }
        Ok(())
    }
}

/// Errors of a [`CpuPool`].
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
    /// The queue is full ([`CpuPoolHandle::try_run`] only; `run` waits instead).
    #[error("the CPU pool's queue is full")]
    Busy,
    /// The task panicked; the message is the panic's when it was a string. The pool goes on.
    #[error("the CPU task panicked: {0}")]
    Panicked(String),
    /// The pool is stopping or stopped: it takes no new task.
    #[error("the CPU pool is stopped")]
    Stopped,
    /// The config is invalid ([`CpuPoolConfig::validate`]).
    #[error("invalid CPU pool config: {0}")]
    Config(String),
    /// The pool could not start (a thread could not be spawned, or the actor failed to
    /// start).
    #[error("the CPU pool could not start: {0}")]
    Start(String),
}

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
    /// Tasks that panicked (their callers got [`CpuPoolError::Panicked`]).
    pub panicked: u64,
    /// Submissions refused because the queue was full ([`CpuPoolError::Busy`]).
    pub rejected: u64,
    /// Tasks not run because their caller had gone before a thread took them.
    pub skipped: u64,
}

/// Messages of the [`CpuPool`] actor. Tasks do not go through it (see [`CpuPool`]): get a [`CpuPoolHandle`] for that.
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

/// The pool actor: a fixed set of dedicated OS threads for CPU-heavy work inside a worker.
///
/// A worker runs its event loop on one single-threaded tokio runtime, as a Node worker does:
/// a handler that hashes a password or renders a PDF for 50 ms stalls every connection of the
/// worker and makes it miss its heartbeats. [`CpuPoolHandle::run`] moves such a closure to a
/// pool thread and awaits its result; the event loop keeps serving meanwhile.
///
/// Spawn it with [`CpuPool::start`], [`CpuPool::start_linked`] or ractor's
/// `Actor::spawn(name, CpuPool, config)` (its argument is a [`CpuPoolConfig`]) and keep the
/// [`CpuPoolHandle`].
///
/// # Design
///
/// - **The threads** are plain `std::thread`s (never tokio's workers, never `spawn_blocking`,
///   whose threads come and go and are shared with tokio's own blocking I/O). There are
///   [`CpuPoolConfig::threads`] of them, [`default_threads`] by default: the machine's cores
///   shared out among the cluster's workers, so `workers × threads` does not oversubscribe it.
/// - **The actor** ([`CpuPool`]) owns the threads' lifecycle: it spawns them in `pre_start`,
///   holds their join handles, answers [`CpuPoolMsg`]s and, when it stops, closes the queue,
///   lets the queued tasks run and joins the threads. Link it under the worker's actor to
///   have it stop with it.
/// - **The hot path does not go through the actor.** A task going through a ractor mailbox
///   would pay a hop through the event loop both ways. Instead a [`CpuPoolHandle`] (cheap to
///   clone, what handlers keep) sends the task straight to the threads over a
///   `crossbeam-channel` (lock-free, multi-consumer; an idle thread spins briefly before it
///   parks, so back-to-back tasks skip the futex wake-up), and the thread sends the result
///   back over a tokio `oneshot`. The actor only sees lifecycle and stats messages.
/// - **Spin, then park, on the caller's side.** Waking a parked runtime (an `eventfd` write
///   and an inter-processor interrupt, dearer in a VM) is most of a short task's round trip.
///   So an awaited [`CpuTask`] re-polls itself for up to [`CpuPoolConfig::spin`] (20 µs by
///   default) before it lets the runtime park: cooperatively (the event loop runs its other
///   ready tasks between two polls and still polls I/O). It spins only when that pays: while
///   the pool's recent tasks ran shorter than the budget (a moving average kept by the
///   threads), and not after spins that ran out without a result — which is what happens when
///   no core is free and the woken pool thread waits behind the spinning caller; the next
///   1, 2, 4 … 1024 tasks then do not spin, and the first spin that succeeds resets that.
///   With a free core, an empty task's round trip from a current-thread runtime is about
///   1 µs at the median with spinning and about 5 µs without (`cargo bench --bench
///   cpu_pool`, 2-core VM), against about 17 µs for a Node `worker_threads` `postMessage`
///   round trip. The price is up to `spin` of the event loop's otherwise idle time per short
///   task; `spin(Duration::ZERO)` turns it off.
/// - **Tasks run outside tokio**: on a pool thread there is no runtime context, so a task
///   cannot `tokio::spawn` (it would panic, which the caller gets as
///   [`CpuPoolError::Panicked`]); it is plain synchronous code.
/// - **The bound** is a tokio semaphore with one permit per place in the queue, not the
///   channel's own capacity: [`run`](CpuPoolHandle::run) and
///   [`submit`](CpuPoolHandle::submit) wait for a permit asynchronously (backpressure without
///   blocking the event loop), [`try_run`](CpuPoolHandle::try_run) fails at once with
///   [`CpuPoolError::Busy`]. The thread that takes a task out of the queue gives its permit
///   back, so the capacity counts waiting tasks, not running ones: at most `threads` run and
///   at most `queue_capacity` wait.
/// - **Panics** are caught on the thread (`catch_unwind` around the closure, and around every
///   drop of a caller's value or panic payload), reported to the caller as
///   [`CpuPoolError::Panicked`] and counted; the thread goes on with the next task, so the
///   pool keeps its size without respawning anything.
/// - **Cancellation**: a caller that drops its [`CpuTask`] (or its `run` future) closes the
///   result channel; the thread checks that before it starts a task, and skips (and counts)
///   a task nobody waits for. A task already running runs to the end (a thread cannot be
///   interrupted); its result is dropped.
/// - **Counters** are atomics shared by the handles and the threads: [`CpuPoolHandle::stats`]
///   reads them without a message, the actor answers [`CpuPoolMsg::Stats`] for those who only
///   have its `ActorRef`. [`CpuPoolStats`] is `Copy` and serde-serializable.
///
/// # Stopping
///
/// Stopping the actor (`actor.stop(..)`, [`CpuPoolHandle::stop`], or its supervisor stopping)
/// stops accepting at once (new submissions and those waiting for room get
/// [`CpuPoolError::Stopped`]), lets every task already queued run (or be skipped when its
/// caller left), then joins the threads; the actor's `post_stop` awaits that without blocking
/// its event loop, so put a timeout around the join if your tasks may be long. If the actor
/// is killed instead (no `post_stop`), the threads still finish the queue and exit on their
/// own, unjoined. Tasks never run on a pool that stopped, and no submission is lost: a task is
/// either queued before the stop (and runs) or refused with `Stopped`.
///
/// # Example
///
/// ```
/// use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), CpuPoolError> {
/// let (pool, actor) = CpuPool::start(CpuPoolConfig::for_workers(4).queue_capacity(64)).await?;
/// let digest = pool.run(|| (0..1_000_000u64).fold(0u64, |h, i| h.rotate_left(5) ^ i)).await?;
/// println!("{digest:x}, {:?}", pool.stats());
/// pool.stop().await;
/// actor.await.expect("the pool actor ended cleanly");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPool;

impl CpuPool {
    /// Spawns the pool actor (unnamed, unlinked) and its threads, and returns a handle and
    /// the actor's join handle.
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Config`] for an invalid config, [`CpuPoolError::Start`] when a thread
    /// or the actor cannot start.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), corral_workers::CpuPoolError> {
    /// let (pool, _actor) = corral_workers::CpuPool::start(Default::default()).await?;
    /// assert_eq!(pool.run(|| "done").await?, "done");
    /// # pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: CpuPoolConfig) -> Result<(CpuPoolHandle, JoinHandle<()>), CpuPoolError> {
        config.validate()?;
        let (actor, join) =
            Actor::spawn(None, CpuPool, config).await.map_err(|e| CpuPoolError::Start(e.to_string()))?;
        Ok((CpuPoolHandle::connect(&actor).await?, join))
    }

    /// As [`start`](Self::start), linked to `supervisor`: the pool stops (joining its
    /// threads) when the supervisor stops, and the supervisor hears when the pool ends. (A
    /// supervisor that keeps ractor's default `handle_supervisor_evt` stops when the pool
    /// does: handle `SupervisionEvent::ActorTerminated` to outlive it.)
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use corral_workers::{CpuPool, CpuPoolConfig};
    /// use ractor::{Actor, ActorProcessingErr, ActorRef};
    ///
    /// struct Parent;
    /// impl Actor for Parent {
    ///     type Msg = ();
    ///     type State = ();
    ///     type Arguments = ();
    ///     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let (parent, parent_join) = Actor::spawn(None, Parent, ()).await?;
    /// let (pool, pool_join) = CpuPool::start_linked(CpuPoolConfig::default(), parent.get_cell()).await?;
    /// assert_eq!(pool.run(|| 1 + 1).await?, 2);
    /// parent.stop(None);
    /// parent_join.await?;
    /// pool_join.await?; // the pool stops with its parent
    /// # Ok(()) }
    /// ```
    pub async fn start_linked(
        config: CpuPoolConfig,
        supervisor: ActorCell,
    ) -> Result<(CpuPoolHandle, JoinHandle<()>), CpuPoolError> {
        config.validate()?;
        let (actor, join) = Actor::spawn_linked(None, CpuPool, config, supervisor)
            .await
            .map_err(|e| CpuPoolError::Start(e.to_string()))?;
        Ok((CpuPoolHandle::connect(&actor).await?, join))
    }
}

/// The [`CpuPool`] actor's state: the shared queue and counters, and the threads.
///
/// ```
/// // The actor's state type; nothing to do with it directly.
/// fn _state_of(_: <corral_workers::CpuPool as ractor::Actor>::State) {}
/// ```
#[derive(Debug)]
pub struct CpuPoolState {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// One per thread: completes when the thread has left its loop.
    exited: Vec<oneshot::Receiver<()>>,
}

impl Drop for CpuPoolState {
    fn drop(&mut self) {
        // After `post_stop` this does nothing. When the actor was killed or failed (no
        // `post_stop`), or did not finish starting, the threads still get their exits: they
        // finish the queue and end on their own.
        self.shared.close(self.threads.len());
    }
}

impl Actor for CpuPool {
    type Msg = CpuPoolMsg;
    type State = CpuPoolState;
    type Arguments = CpuPoolConfig;

    async fn pre_start(
        &self,
        _myself: ActorRef<CpuPoolMsg>,
        config: CpuPoolConfig,
    ) -> Result<CpuPoolState, ActorProcessingErr> {
        config.validate()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            tx,
            room: Semaphore::new(config.queue_capacity),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            submitting: AtomicUsize::new(0),
            threads: config.threads,
            capacity: config.queue_capacity,
            spin: SpinPolicy::new(config.spin),
        });
        let mut state = CpuPoolState {
            shared,
            threads: Vec::with_capacity(config.threads),
            exited: Vec::with_capacity(config.threads),
        };
        for index in 0..config.threads {
            let mut builder = std::thread::Builder::new().name(format!("{}-{index}", config.thread_name));
            if let Some(bytes) = config.stack_size {
                builder = builder.stack_size(bytes);
            }
            let (exited_tx, exited_rx) = oneshot::channel();
            let (rx, shared) = (rx.clone(), state.shared.clone());
            // On failure `state` drops here and its `Drop` stops the threads already spawned.
            let thread = builder
                .spawn(move || thread_main(rx, shared, exited_tx))
                .map_err(|e| CpuPoolError::Start(format!("cannot spawn pool thread {index}: {e}")))?;
            state.threads.push(thread);
            state.exited.push(exited_rx);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<CpuPoolMsg>,
        message: CpuPoolMsg,
        state: &mut CpuPoolState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // A caller that gave up on its reply is no error of ours.
            CpuPoolMsg::Stats(reply) => {
                let _ = reply.send(state.shared.stats());
            }
            CpuPoolMsg::Handle(reply) => {
                let _ = reply.send(CpuPoolHandle { shared: state.shared.clone(), actor: myself });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CpuPoolMsg>,
        state: &mut CpuPoolState,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.close(state.threads.len());
        // Await (without blocking the event loop) each thread leaving its loop, which it does
        // after the queued tasks; then `join` only waits for the thread's teardown.
        for exited in state.exited.drain(..) {
            let _ = exited.await;
        }
        for thread in state.threads.drain(..) {
            // A pool thread cannot panic (every call into the caller's code is under
            // `catch_unwind`); were it to, there would be nothing more to clean up.
            let _ = thread.join();
        }
        Ok(())
    }
}

/// A cheap, cloneable handle to a running [`CpuPool`]: what request handlers keep to run CPU
/// work. Tasks go straight from the handle to the threads (see [`CpuPool`]).
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
    /// stopped before taking the task.
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
    /// [`CpuPoolError::Stopped`] when the pool stopped.
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
    /// [`CpuPoolStats::rejected`]), [`CpuPoolError::Stopped`] when the pool stopped.
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
        let spinning = self.shared.spin.deadline().map(|until| Spinning { until, shared: self.shared.clone() });
        Ok(CpuTask { result, spinning })
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

/// A task in the pool: a future of its result. Dropping it before a thread took the task
/// cancels the task (it is skipped and counted in [`CpuPoolStats::skipped`]); dropping it
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
