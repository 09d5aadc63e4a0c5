//! The pool's side of a task: the type-erased job, the thread loop, the counters the
//! threads keep, and the threads themselves, spawned on the first task.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{Semaphore, oneshot};

use super::error::CpuPoolError;
use super::spin::SpinPolicy;
use super::stats::CpuPoolStats;

/// What travels from a handle to the threads.
pub(super) enum Job {
    /// A caller's closure and the way back to its caller.
    Task(Box<dyn ErasedTask>),
    /// Sent once per thread when the pool stops, after every task: the thread that takes it
    /// exits.
    Exit,
}

/// A task with its result type erased, so one channel carries every kind of task.
pub(super) trait ErasedTask: Send {
    /// The caller dropped its [`CpuTask`](super::CpuTask) (or its `run` future): nobody
    /// wants the result any more.
    fn cancelled(&self) -> bool;
    /// Runs the closure (catching a panic), counts the outcome and sends it to the caller.
    fn run(self: Box<Self>, shared: &Shared);
}

/// A caller's closure and the sender of its result.
pub(super) struct TaskCell<F, T> {
    pub f: F,
    pub reply: oneshot::Sender<Result<T, CpuPoolError>>,
}

impl<F, T> ErasedTask for TaskCell<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(self: Box<Self>, shared: &Shared) {
        let TaskCell { f, reply } = *self;
        let counters = &shared.counters;
        counters.running.fetch_add(1, Ordering::Relaxed);
        let started = shared.spin.enabled().then(Instant::now);
        let outcome = catch_unwind(AssertUnwindSafe(f));
        if let Some(started) = started {
            shared.spin.record_task_time(started.elapsed());
        }
        counters.running.fetch_sub(1, Ordering::Relaxed);
        // The counters move before the result is sent, so a caller that has its result sees
        // its task counted.
        let result = match outcome {
            Ok(value) => {
                counters.done.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Err(payload) => {
                counters.panicked.fetch_add(1, Ordering::Relaxed);
                let message = panic_message(payload.as_ref());
                drop_quietly(payload);
                Err(CpuPoolError::Panicked(message))
            }
        };
        if let Err(unwanted) = reply.send(result) {
            // The caller left while the task ran: drop the value here, where a panicking
            // `Drop` of the caller's type cannot take the thread down.
            drop_quietly(unwanted);
        }
    }
}

/// The text of a panic: its message when it is a string, a placeholder otherwise.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "task panicked with a non-string payload".to_string()
    }
}

/// Drops `value`, catching a panic of its `Drop`. A panic payload whose own `Drop` panics
/// again is leaked rather than dropped: the thread must survive whatever the caller's types do.
fn drop_quietly<V>(value: V) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        std::mem::forget(payload);
    }
}

/// Live counters shared by the handles, the threads and the actor.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub accepted: AtomicU64,
    pub queued: AtomicU64,
    pub running: AtomicU64,
    pub done: AtomicU64,
    pub panicked: AtomicU64,
    pub rejected: AtomicU64,
    pub skipped: AtomicU64,
}

/// What the handles, the threads and the actor share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The submission channel. Unbounded in crossbeam terms: the room is counted by
    /// [`room`](Self::room), so the channel holds at most `capacity` tasks plus the exits.
    pub tx: Sender<Job>,
    /// One permit per free place in the queue. A submitter takes one (waiting or failing with
    /// `Busy` when there is none); the thread that takes the task out of the queue gives it
    /// back. Closed when the pool stops, which wakes the waiting submitters.
    pub room: Semaphore,
    pub counters: Counters,
    /// Set once when the pool stops accepting.
    pub closed: AtomicBool,
    /// Submitters between their check of `closed` and the end of their send (see
    /// [`Shared::send`] and [`Shared::close`]).
    pub submitting: AtomicUsize,
    pub threads: usize,
    pub capacity: usize,
    /// When awaited tasks spin ([`CpuPoolConfig::spin`](super::CpuPoolConfig::spin)).
    pub spin: SpinPolicy,
    /// How many threads have been spawned (over the pool's life: it does not go down when
    /// they end). Equal to `threads` once all are: the submitters' fast path.
    pub started: AtomicUsize,
    /// The threads spawned so far (what a stop sends exits to and joins), and what the
    /// missing ones are spawned with.
    pub spawned: Mutex<Threads>,
}

/// The pool's threads: none until the first task, then all of them (a worker that never uses
/// its pool stays single-threaded, and glibc keeps its single-thread fast paths).
#[derive(Debug)]
pub(super) struct Threads {
    /// The queue's receiving end, cloned into each new thread; dropped when the pool closes,
    /// so that nothing spawns after the stop.
    pub rx: Option<Receiver<Job>>,
    /// The thread-name prefix ([`CpuPoolConfig::thread_name`](super::CpuPoolConfig::thread_name)).
    pub name: String,
    /// [`CpuPoolConfig::stack_size`](super::CpuPoolConfig::stack_size).
    pub stack_size: Option<usize>,
    /// Join handles of the threads spawned, in index order.
    pub handles: Vec<std::thread::JoinHandle<()>>,
    /// One per spawned thread: completes when the thread has left its loop.
    pub exited: Vec<oneshot::Receiver<()>>,
}

impl Threads {
    /// No thread yet: they will take their tasks from `rx`.
    pub fn new(rx: Receiver<Job>, name: String, stack_size: Option<usize>, threads: usize) -> Self {
        Threads {
            rx: Some(rx),
            name,
            stack_size,
            handles: Vec::with_capacity(threads),
            exited: Vec::with_capacity(threads),
        }
    }
}

impl Shared {
    /// Queues a task whose permit the caller already holds (and gave up with `forget`).
    ///
    /// Together with [`close`](Self::close) this guarantees that no task is queued after the
    /// exits: either this sees `closed` set, or `close` sees this submitter and waits for its
    /// send to finish before it sends the exits (both sides use `SeqCst`, so one of the two
    /// orders holds).
    ///
    /// The first task spawns the threads (see [`start`](Self::start)); a spawn that fails
    /// fails this task with [`CpuPoolError::Thread`], and the next task tries again.
    pub fn send(self: &Arc<Self>, task: Box<dyn ErasedTask>) -> Result<(), CpuPoolError> {
        self.submitting.fetch_add(1, Ordering::SeqCst);
        let result = if self.closed.load(Ordering::SeqCst) {
            Err(CpuPoolError::Stopped)
        } else if let Err(e) = self.start() {
            Err(e)
        } else {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            self.tx.send(Job::Task(task)).map_err(|_| {
                // Every thread is gone (they exit only after `close`), so this is a stop race.
                self.counters.accepted.fetch_sub(1, Ordering::Relaxed);
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                CpuPoolError::Stopped
            })
        };
        self.submitting.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            self.room.add_permits(1);
        }
        result
    }

    /// Spawns the threads not spawned yet, unless all are. Called by a submitter between its
    /// check of `closed` and its send, so [`close`](Self::close) (which waits for such
    /// submitters) sees every thread spawned here.
    fn start(self: &Arc<Self>) -> Result<(), CpuPoolError> {
        if self.started.load(Ordering::Acquire) == self.threads {
            return Ok(());
        }
        let mut spawned = self.threads_spawned();
        let Some(rx) = spawned.rx.clone() else {
            // Closed meanwhile (the caller saw `closed` unset an instant before).
            return Err(CpuPoolError::Stopped);
        };
        while spawned.handles.len() < self.threads {
            let index = spawned.handles.len();
            let mut builder = std::thread::Builder::new().name(format!("{}-{index}", spawned.name));
            if let Some(bytes) = spawned.stack_size {
                builder = builder.stack_size(bytes);
            }
            let (exited_tx, exited_rx) = oneshot::channel();
            let (rx, shared) = (rx.clone(), self.clone());
            // On failure the threads spawned so far stay (a stop joins them); the next task
            // spawns the rest.
            let handle = builder
                .spawn(move || thread_main(rx, shared, exited_tx))
                .map_err(|e| CpuPoolError::Thread { index, source: Arc::new(e) })?;
            spawned.handles.push(handle);
            spawned.exited.push(exited_rx);
            self.started.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// The threads, locked. Nothing panics while holding the lock, but a poisoned lock is
    /// still usable: its data is a list of handles, consistent after every push.
    pub fn threads_spawned(&self) -> MutexGuard<'_, Threads> {
        self.spawned.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops accepting and tells every thread spawned to exit once the tasks already queued
    /// are done; no thread is spawned after this. Returns false when the pool was already
    /// closed.
    pub fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Submitters waiting for room get `Stopped`.
        self.room.close();
        // A submitter that saw `closed` unset is about to send (a few instructions, no
        // blocking): let it finish, so its task lands before the exits.
        while self.submitting.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // No submitter is spawning now, and none will (they all see `closed`).
        let mut spawned = self.threads_spawned();
        spawned.rx = None;
        for _ in 0..spawned.handles.len() {
            // Cannot fail: every thread holds a receiver until it takes its exit.
            let _ = self.tx.send(Job::Exit);
        }
        true
    }

    /// A snapshot of the counters (each read on its own: not one atomic snapshot).
    pub fn stats(&self) -> CpuPoolStats {
        let c = &self.counters;
        CpuPoolStats {
            threads: self.threads,
            queue_capacity: self.capacity,
            accepted: c.accepted.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        }
    }
}

/// The body of one pool thread: takes tasks until it takes an exit. `_exited` is dropped when
/// the thread ends (even by unwinding), which tells the actor the thread is gone.
pub(super) fn thread_main(rx: Receiver<Job>, shared: Arc<Shared>, _exited: oneshot::Sender<()>) {
    while let Ok(job) = rx.recv() {
        let task = match job {
            Job::Task(task) => task,
            Job::Exit => break,
        };
        shared.counters.queued.fetch_sub(1, Ordering::Relaxed);
        // The task left the queue: its place is free for the next submitter.
        shared.room.add_permits(1);
        if task.cancelled() {
            shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
            // The closure's captures may have a panicking `Drop`.
            drop_quietly(task);
            continue;
        }
        task.run(&shared);
    }
}
