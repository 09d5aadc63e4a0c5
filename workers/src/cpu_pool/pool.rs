//! The pool actor, [`CpuPool`]: it owns the threads' lifecycle (they are spawned by the
//! first task) and answers [`CpuPoolMsg`]s. Its docs hold the pool's design and stopping rules.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::config::CpuPoolConfig;
use super::error::CpuPoolError;
use super::handle::{CpuPoolHandle, CpuPoolMsg};
use super::spin::SpinPolicy;
use super::thread::{Counters, Shared, Threads};

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
///   [`CpuPoolConfig::threads`] of them, [`default_threads`](crate::default_threads) by default: the machine's cores
///   shared out among the cluster's workers, so `workers × threads` does not oversubscribe it.
/// - **The threads start with the first task**, not with the pool: the first
///   [`run`](CpuPoolHandle::run), [`submit`](CpuPoolHandle::submit) or
///   [`try_run`](CpuPoolHandle::try_run) spawns all of them before it queues its task
///   (about 50 µs per thread, once). A worker whose handlers never use the pool stays a
///   single-threaded process, which spares it glibc's multi-thread costs (cancellation points
///   around every system call, locked malloc arenas). If a spawn fails, the task that
///   triggered it fails with [`CpuPoolError::Thread`], the threads already spawned stay, and
///   the next task spawns the rest. [`CpuPoolHandle::started_threads`] says how many there are.
/// - **The actor** ([`CpuPool`]) owns the threads' lifecycle: it creates the queue in
///   `pre_start`, answers [`CpuPoolMsg`]s and, when it stops, closes the queue (no thread is
///   spawned after that), lets the queued tasks run and joins the threads that were spawned.
///   Link it under the worker's actor to have it stop with it.
/// - **The hot path does not go through the actor.** A task going through a ractor mailbox
///   would pay a hop through the event loop both ways. Instead a [`CpuPoolHandle`] (cheap to
///   clone, what handlers keep) sends the task straight to the threads over a
///   `crossbeam-channel` (lock-free, multi-consumer; an idle thread spins briefly before it
///   parks, so back-to-back tasks skip the futex wake-up), and the thread sends the result
///   back over a tokio `oneshot`. The actor only sees lifecycle and stats messages.
/// - **Spin, then park, on the caller's side.** Waking a parked runtime (an `eventfd` write
///   and an inter-processor interrupt, dearer in a VM) is most of a short task's round trip.
///   So an awaited [`CpuTask`](crate::CpuTask) re-polls itself for up to [`CpuPoolConfig::spin`] (20 µs by
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
/// - **Cancellation**: a caller that drops its [`CpuTask`](crate::CpuTask) (or its `run` future) closes the
///   result channel; the thread checks that before it starts a task, and skips (and counts)
///   a task nobody waits for. A task already running runs to the end (a thread cannot be
///   interrupted); its result is dropped.
/// - **Counters** are atomics shared by the handles and the threads: [`CpuPoolHandle::stats`]
///   reads them without a message, the actor answers [`CpuPoolMsg::Stats`] for those who only
///   have its `ActorRef`. [`CpuPoolStats`](crate::CpuPoolStats) is `Copy` and serde-serializable.
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
    /// Spawns the pool actor (unnamed, unlinked) and returns a handle and the actor's join
    /// handle. The pool's threads start with its first task.
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Config`] for an invalid config, [`CpuPoolError::Start`] when the actor
    /// cannot start.
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
        let (actor, join) = Actor::spawn(None, CpuPool, config).await.map_err(|e| CpuPoolError::Start(Arc::new(e)))?;
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
            .map_err(|e| CpuPoolError::Start(Arc::new(e)))?;
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
}

impl Drop for CpuPoolState {
    fn drop(&mut self) {
        // After `post_stop` this does nothing. When the actor was killed or failed (no
        // `post_stop`), the threads spawned still get their exits: they finish the queue and
        // end on their own.
        self.shared.close();
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
            // No thread yet: the first task spawns them.
            started: AtomicUsize::new(0),
            spawned: Mutex::new(Threads::new(rx, config.thread_name, config.stack_size, config.threads)),
        });
        Ok(CpuPoolState { shared })
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
                let _ = reply.send(CpuPoolHandle::new(state.shared.clone(), myself));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CpuPoolMsg>,
        state: &mut CpuPoolState,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.close();
        // Only the threads that were spawned (none if the pool never ran a task). No thread
        // is spawned after `close`, so this list is final.
        let (exited, threads) = {
            let mut spawned = state.shared.threads_spawned();
            (std::mem::take(&mut spawned.exited), std::mem::take(&mut spawned.handles))
        };
        // Await (without blocking the event loop) each thread leaving its loop, which it does
        // after the queued tasks; then `join` only waits for the thread's teardown.
        for exited in exited {
            let _ = exited.await;
        }
        for thread in threads {
            // A pool thread cannot panic (every call into the caller's code is under
            // `catch_unwind`); were it to, there would be nothing more to clean up.
            let _ = thread.join();
        }
        Ok(())
    }
}
