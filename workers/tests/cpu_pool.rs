//! `CpuPool` tests on real threads. Tasks block on gates the test opens; the test waits on
//! counters with a deadline (never a fixed sleep). Every wait is bounded by `LIMIT`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use corral_workers::{
    CpuPool, CpuPoolConfig, CpuPoolConfigFault, CpuPoolError, CpuPoolHandle, CpuPoolMsg, CpuPoolStats, default_threads,
};
use ractor::Actor;

/// The bound of every wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// A gate tasks block on until the test opens it (a task gives up after `LIMIT`).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Blocks until the gate opens; false if it did not within `LIMIT`.
    fn wait(&self) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self.cv.wait_timeout_while(open, LIMIT, |open| !*open).unwrap();
        *open
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// A counter one can wait on.
#[derive(Default)]
struct Count {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Count {
    fn new() -> Arc<Count> {
        Arc::new(Count::default())
    }

    fn add(&self) {
        *self.n.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Blocks until the count reaches `n`; false if it did not within `LIMIT`.
    fn wait_for(&self, n: usize) -> bool {
        let count = self.n.lock().unwrap();
        let (count, _) = self.cv.wait_timeout_while(count, LIMIT, |c| *c < n).unwrap();
        *count >= n
    }
}

/// Waits (yielding to the runtime) until `cond` holds; panics after `LIMIT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

/// Polls `f` exactly once.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// Bounds a test body.
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT * 3, body).await.expect("test timed out")
}

async fn start(config: CpuPoolConfig) -> (CpuPoolHandle, tokio::task::JoinHandle<()>) {
    CpuPool::start(config).await.expect("pool starts")
}

/// Threads of this process whose name starts with `prefix` (Linux: /proc/self/task/*/comm).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

/// A task that counts itself in, tracks the peak of tasks inside at once, and blocks on `gate`.
fn tracked(
    active: &Arc<AtomicUsize>,
    peak: &Arc<AtomicUsize>,
    entered: &Arc<Count>,
    gate: &Arc<Gate>,
) -> impl FnOnce() -> bool + Send + 'static {
    let (active, peak, entered, gate) = (active.clone(), peak.clone(), entered.clone(), gate.clone());
    move || {
        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        entered.add();
        let opened = gate.wait();
        active.fetch_sub(1, Ordering::SeqCst);
        opened
    }
}

#[tokio::test]
async fn runs_tasks_and_returns_results() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(2)).await;
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        assert_eq!(pool.try_run(|| "fast").expect("room").await, Ok("fast"));
        let tasks: Vec<_> = {
            let mut v = Vec::new();
            for i in 0..10u64 {
                v.push(pool.submit(move || i * i).await.expect("queued"));
            }
            v
        };
        let mut sum = 0;
        for t in tasks {
            sum += t.await.expect("ran");
        }
        assert_eq!(sum, (0..10u64).map(|i| i * i).sum::<u64>());
        // Runs on a pool thread, not on the runtime's.
        let name = pool.run(|| std::thread::current().name().map(str::to_string)).await.unwrap();
        assert_eq!(name.as_deref().map(|n| n.starts_with("corral-cpu-")), Some(true));
        pool.stop().await;
        actor.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn never_more_tasks_running_than_threads() {
    bounded(async {
        for threads in [1, 2, 4] {
            let (pool, _actor) = start(CpuPoolConfig::default().threads(threads).queue_capacity(64)).await;
            let (active, peak, entered, gate) =
                (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Count::new(), Gate::new());
            let total = threads * 4;
            let mut tasks = Vec::new();
            for _ in 0..total {
                tasks.push(pool.submit(tracked(&active, &peak, &entered, &gate)).await.unwrap());
            }
            // The pool fills up: `threads` tasks inside, the rest queued behind them.
            assert!(entered.wait_for(threads), "{threads} tasks should start");
            eventually("the queue to settle", || {
                let s = pool.stats();
                s.running == threads as u64 && s.queued == (total - threads) as u64
            })
            .await;
            assert_eq!(peak.load(Ordering::SeqCst), threads);
            gate.open();
            for t in tasks {
                assert_eq!(t.await, Ok(true));
            }
            assert_eq!(peak.load(Ordering::SeqCst), threads, "at most {threads} at once");
            let s = pool.stats();
            assert_eq!((s.running, s.queued, s.done), (0, 0, total as u64));
            pool.stop().await;
        }
    })
    .await;
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked too");
    }
}

#[tokio::test]
async fn a_panicking_task_gives_an_error_and_the_pool_keeps_its_threads() {
    bounded(async {
        let (pool, _actor) = start(CpuPoolConfig::default().threads(2).thread_name("cp-panic")).await;
        let err = pool.run(|| -> u32 { panic!("boom {}", 7) }).await.unwrap_err();
        assert_eq!(err, CpuPoolError::Panicked("boom 7".into()));
        let err = pool.run(|| std::panic::panic_any(42u8)).await.unwrap_err();
        assert!(matches!(err, CpuPoolError::Panicked(ref m) if m.contains("non-string")), "{err:?}");
        let err = pool.run(|| std::panic::panic_any(Bomb)).await.unwrap_err();
        assert!(matches!(err, CpuPoolError::Panicked(_)), "{err:?}");
        for i in 0..5 {
            assert!(pool.run(move || -> () { panic!("again {i}") }).await.is_err());
        }
        let s = pool.stats();
        assert_eq!((s.panicked, s.done, s.threads), (8, 0, 2));
        assert_eq!(threads_named("cp-panic-"), 2, "no thread lost");

        // Both threads are alive: two tasks that each wait for the other run at once.
        let met = Count::new();
        let meet = |met: Arc<Count>| {
            move || {
                met.add();
                met.wait_for(2)
            }
        };
        let a = pool.submit(meet(met.clone())).await.unwrap();
        let b = pool.submit(meet(met.clone())).await.unwrap();
        assert_eq!((a.await, b.await), (Ok(true), Ok(true)));
        assert_eq!(pool.run(|| 1).await, Ok(1));
        assert_eq!(pool.stats().done, 3);
        pool.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_refuses_try_run_and_makes_run_wait() {
    bounded(async {
        let (pool, _actor) = start(CpuPoolConfig::default().threads(1).queue_capacity(2)).await;
        let (gate, entered) = (Gate::new(), Count::new());
        let first = {
            let (gate, entered) = (gate.clone(), entered.clone());
            pool.submit(move || {
                entered.add();
                gate.wait()
            })
            .await
            .unwrap()
        };
        assert!(entered.wait_for(1), "the first task runs");
        // Two more fill the queue.
        let queued: Vec<_> = vec![pool.try_run(|| 2).unwrap(), pool.try_run(|| 3).unwrap()];
        assert_eq!((pool.stats().running, pool.stats().queued), (1, 2));

        assert_eq!(pool.try_run(|| 4).unwrap_err(), CpuPoolError::Busy);
        assert_eq!(pool.try_run(|| 4).unwrap_err(), CpuPoolError::Busy);
        assert_eq!(pool.stats().rejected, 2);

        // `run` waits for room instead: not queued, not refused.
        let mut waiting = Box::pin(pool.run(|| 5));
        assert!(poll_once(&mut waiting).await.is_pending());
        assert_eq!(pool.stats().queued, 2);
        let mut waiting_submit = Box::pin(pool.submit(|| 6));
        assert!(poll_once(&mut waiting_submit).await.is_pending());

        gate.open();
        assert_eq!(waiting.await, Ok(5));
        assert_eq!(waiting_submit.await.unwrap().await, Ok(6));
        assert_eq!(first.await, Ok(true));
        let mut results = Vec::new();
        for t in queued {
            results.push(t.await.unwrap());
        }
        assert_eq!(results, [2, 3]);
        let s = pool.stats();
        assert_eq!((s.accepted, s.done, s.rejected, s.queued), (5, 5, 2, 0));
        pool.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_task_whose_caller_left_before_it_started_is_skipped() {
    bounded(async {
        let (pool, _actor) = start(CpuPoolConfig::default().threads(1)).await;
        let (gate, entered) = (Gate::new(), Count::new());
        let blocker = {
            let (gate, entered) = (gate.clone(), entered.clone());
            pool.submit(move || {
                entered.add();
                gate.wait()
            })
            .await
            .unwrap()
        };
        assert!(entered.wait_for(1));

        // Left after `submit`: the task is dropped.
        let ran_a = Arc::new(AtomicBool::new(false));
        let task = {
            let ran = ran_a.clone();
            pool.submit(move || ran.store(true, Ordering::SeqCst)).await.unwrap()
        };
        drop(task);
        // Left a `run` future once it had queued its task.
        let ran_b = Arc::new(AtomicBool::new(false));
        let mut run = {
            let ran = ran_b.clone();
            Box::pin(pool.run(move || ran.store(true, Ordering::SeqCst)))
        };
        assert!(poll_once(&mut run).await.is_pending());
        assert_eq!(pool.stats().queued, 2);
        drop(run);

        gate.open();
        assert_eq!(blocker.await, Ok(true));
        // One thread, FIFO: once this ran, the two before it were dealt with.
        assert_eq!(pool.run(|| "after").await, Ok("after"));
        assert!(!ran_a.load(Ordering::SeqCst), "the dropped task must not run");
        assert!(!ran_b.load(Ordering::SeqCst), "the dropped run must not run");
        let s = pool.stats();
        assert_eq!((s.skipped, s.done, s.accepted, s.queued), (2, 2, 4, 0));
        pool.stop().await;
    })
    .await;
}

#[tokio::test]
async fn counters_add_up_and_travel() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(2).queue_capacity(4)).await;
        assert_eq!(pool.stats(), CpuPoolStats { threads: 2, queue_capacity: 4, ..CpuPoolStats::default() });

        let (gate, entered) = (Gate::new(), Count::new());
        let mut blockers = Vec::new();
        for _ in 0..2 {
            let (gate, entered) = (gate.clone(), entered.clone());
            blockers.push(
                pool.submit(move || {
                    entered.add();
                    gate.wait()
                })
                .await
                .unwrap(),
            );
        }
        assert!(entered.wait_for(2));
        let during = pool.stats();
        assert_eq!((during.running, during.queued), (2, 0));
        let kept = pool.try_run(|| -> u8 { panic!("counted") }).unwrap();
        drop(pool.try_run(|| 0u8).unwrap()); // skipped
        let ok = pool.try_run(|| 1u8).unwrap();
        let ok2 = pool.try_run(|| 2u8).unwrap();
        assert_eq!(pool.try_run(|| 3u8).unwrap_err(), CpuPoolError::Busy);
        let during = pool.stats();
        assert_eq!((during.running, during.queued, during.accepted, during.rejected), (2, 4, 6, 1));

        gate.open();
        for b in blockers {
            assert_eq!(b.await, Ok(true));
        }
        assert!(matches!(kept.await, Err(CpuPoolError::Panicked(_))));
        assert_eq!((ok.await, ok2.await), (Ok(1), Ok(2)));
        eventually("the skipped task to be counted", || pool.stats().skipped == 1).await;

        let s = pool.stats();
        let expected = CpuPoolStats {
            threads: 2,
            queue_capacity: 4,
            accepted: 6,
            queued: 0,
            running: 0,
            done: 4,
            panicked: 1,
            rejected: 1,
            skipped: 1,
        };
        assert_eq!(s, expected);
        assert_eq!(s.accepted, s.done + s.panicked + s.skipped);
        // The actor answers the same numbers.
        let via_actor = ractor::call!(pool.actor(), CpuPoolMsg::Stats).unwrap();
        assert_eq!(via_actor, expected);
        // And they travel (postcard, as in the heartbeats).
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<CpuPoolStats>(&bytes).unwrap(), expected);
        pool.stop().await;
        actor.await.unwrap();
    })
    .await;
}

/// Counts in `exits` when the current thread ends (once per thread).
fn count_thread_exit(exits: &Arc<AtomicUsize>) {
    struct OnExit(Arc<AtomicUsize>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    ON_EXIT.with(|slot| {
        slot.borrow_mut().get_or_insert_with(|| OnExit(exits.clone()));
    });
}

#[tokio::test]
async fn stopping_refuses_new_tasks_runs_the_queued_ones_and_joins_the_threads() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(2).queue_capacity(3).thread_name("cp-stop")).await;
        // The threads start with the first task; a thread names itself once it runs.
        assert_eq!(pool.run(|| ()).await, Ok(()));
        eventually("the threads to be named", || threads_named("cp-stop-") == 2).await;
        let (gate, entered) = (Gate::new(), Count::new());
        let exits = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..5u32 {
            let (gate, entered, exits) = (gate.clone(), entered.clone(), exits.clone());
            tasks.push(
                pool.submit(move || {
                    count_thread_exit(&exits);
                    entered.add();
                    gate.wait().then_some(i)
                })
                .await
                .unwrap(),
            );
        }
        assert!(entered.wait_for(2));
        // The queue is full: this one waits for room.
        let mut waiting = Box::pin(pool.run(|| Some(99)));
        assert!(poll_once(&mut waiting).await.is_pending());

        let stopper = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.stop().await })
        };
        eventually("the pool to stop accepting", || pool.is_stopped()).await;
        assert_eq!(waiting.await, Err(CpuPoolError::Stopped), "a waiting submitter is refused");
        assert_eq!(pool.try_run(|| None::<u32>).unwrap_err(), CpuPoolError::Stopped);
        assert_eq!(pool.run(|| None::<u32>).await, Err(CpuPoolError::Stopped));
        assert!(!stopper.is_finished(), "the stop waits for the queued tasks");

        gate.open();
        stopper.await.unwrap();
        // Joined: both threads ran their exit (thread-local destructors) before `stop` returned.
        assert_eq!(exits.load(Ordering::SeqCst), 2);
        eventually("the kernel to drop the threads", || threads_named("cp-stop-") == 0).await;
        actor.await.unwrap();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(results, [Some(0), Some(1), Some(2), Some(3), Some(4)]);
        let s = pool.stats();
        assert_eq!((s.done, s.queued, s.running, s.accepted), (6, 0, 0, 6));
        // Stopping again is harmless.
        pool.stop().await;
        assert_eq!(pool.submit(|| None::<u32>).await.unwrap_err(), CpuPoolError::Stopped);
    })
    .await;
}

#[tokio::test]
async fn a_killed_pool_still_finishes_its_queue_and_its_threads_end() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(1).thread_name("cp-kill")).await;
        let (gate, entered) = (Gate::new(), Count::new());
        let blocker = {
            let (gate, entered) = (gate.clone(), entered.clone());
            pool.submit(move || {
                entered.add();
                gate.wait()
            })
            .await
            .unwrap()
        };
        assert!(entered.wait_for(1));
        let queued = pool.submit(|| 2).await.unwrap();
        pool.actor().kill();
        actor.await.unwrap();
        assert!(pool.is_stopped());
        assert_eq!(pool.run(|| 3).await, Err(CpuPoolError::Stopped));
        gate.open();
        assert_eq!(blocker.await, Ok(true));
        assert_eq!(queued.await, Ok(2));
        eventually("the detached thread to end", || threads_named("cp-kill-") == 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_spawned_as_a_plain_actor_hands_out_handles() {
    bounded(async {
        let (actor, join) = Actor::spawn(None, CpuPool, CpuPoolConfig::default().threads(1)).await.unwrap();
        let pool = CpuPoolHandle::connect(&actor).await.unwrap();
        assert_eq!(pool.run(|| 5).await, Ok(5));
        actor.stop(None);
        join.await.unwrap();
        assert!(pool.is_stopped());
        assert!(CpuPoolHandle::connect(&actor).await.is_err());
        assert_eq!(pool.run(|| 6).await, Err(CpuPoolError::Stopped));
    })
    .await;
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    let err = CpuPool::start(CpuPoolConfig::default().threads(0)).await.unwrap_err();
    assert_eq!(err, CpuPoolError::Config(CpuPoolConfigFault::ZeroThreads));
    let err = CpuPool::start(CpuPoolConfig::default().queue_capacity(0)).await.unwrap_err();
    assert_eq!(err, CpuPoolError::Config(CpuPoolConfigFault::ZeroQueueCapacity));
    let err = CpuPoolConfig::default().queue_capacity(usize::MAX).validate().unwrap_err();
    assert!(
        matches!(err, CpuPoolError::Config(CpuPoolConfigFault::QueueCapacityTooLarge { capacity: usize::MAX, .. })),
        "{err:?}"
    );
    assert!(Actor::spawn(None, CpuPool, CpuPoolConfig::default().threads(0)).await.is_err());
}

#[tokio::test]
async fn a_thread_that_cannot_spawn_fails_the_first_task_with_its_cause() {
    bounded(async {
        // A 1 PiB stack is more than the address space: the spawn fails, nothing panics. The
        // pool itself starts (its threads start with the first task).
        let (pool, actor) = start(CpuPoolConfig::default().threads(1).stack_size(1 << 50)).await;
        for attempt in 0..2 {
            let err = pool.run(|| 1).await.unwrap_err();
            assert!(matches!(err, CpuPoolError::Thread { index: 0, .. }), "attempt {attempt}: {err:?}");
            let source = std::error::Error::source(&err).expect("the io::Error");
            assert!(source.downcast_ref::<std::sync::Arc<std::io::Error>>().is_some(), "{err:?}");
        }
        let err = pool.try_run(|| 1).unwrap_err();
        assert!(matches!(err, CpuPoolError::Thread { index: 0, .. }), "{err:?}");
        // Nothing was queued, no permit was lost, nothing was spawned.
        let s = pool.stats();
        assert_eq!((s.accepted, s.queued, s.rejected), (0, 0, 0));
        assert_eq!(pool.started_threads(), 0);
        pool.stop().await;
        actor.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_threads_start_with_the_first_task_not_with_the_pool() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(3).thread_name("cp-lazy")).await;
        // Stats and handles do not start anything.
        let _ = pool.stats();
        let other = CpuPoolHandle::connect(pool.actor()).await.expect("a second handle");
        assert_eq!(other.threads(), 3);
        assert_eq!(pool.started_threads(), 0);
        assert_eq!(threads_named("cp-lazy-"), 0, "no thread before the first task");

        assert_eq!(other.try_run(|| 5).expect("room").await, Ok(5));
        assert_eq!(pool.started_threads(), 3);
        eventually("the three threads to be named", || threads_named("cp-lazy-") == 3).await;
        // Later tasks spawn nothing more.
        for i in 0..10 {
            assert_eq!(pool.run(move || i).await, Ok(i));
        }
        assert_eq!(threads_named("cp-lazy-"), 3);
        pool.stop().await;
        actor.await.unwrap();
        eventually("the threads to be joined", || threads_named("cp-lazy-") == 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_never_ran_a_task_stops_without_threads() {
    bounded(async {
        let (pool, actor) = start(CpuPoolConfig::default().threads(2).thread_name("cp-idle")).await;
        pool.stop().await;
        actor.await.unwrap();
        assert_eq!(pool.started_threads(), 0);
        assert_eq!(threads_named("cp-idle-"), 0);
        assert_eq!(pool.run(|| 1).await, Err(CpuPoolError::Stopped));
        assert_eq!(pool.started_threads(), 0, "a refused task spawns nothing");
    })
    .await;
}

#[test]
fn default_threads_shares_the_cores_among_the_workers() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(default_threads(1), cores);
    assert_eq!(default_threads(0), cores, "0 workers counts as 1");
    assert_eq!(default_threads(cores), 1);
    assert_eq!(default_threads(cores * 3), 1, "at least 1");
    if cores >= 2 {
        assert_eq!(default_threads(2), cores / 2);
    }
    assert_eq!(CpuPoolConfig::for_workers(cores).threads, 1);
}

/// Many submitters at once, from a multi-threaded runtime, through a small queue, with and
/// without spinning: every result arrives and the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_submitters() {
    bounded(async {
        for spin in [Duration::ZERO, Duration::from_micros(20)] {
            let (pool, _actor) = start(CpuPoolConfig::default().threads(2).queue_capacity(8).spin(spin)).await;
            let mut submitters = Vec::new();
            for s in 0..4u64 {
                let pool = pool.clone();
                submitters.push(tokio::spawn(async move {
                    let mut sum = 0;
                    for i in 0..2_000u64 {
                        sum += pool.run(move || s * 10_000 + i).await.unwrap();
                    }
                    sum
                }));
            }
            let mut total = 0;
            for s in submitters {
                total += s.await.unwrap();
            }
            let expected: u64 = (0..4u64).map(|s| (0..2_000u64).map(|i| s * 10_000 + i).sum::<u64>()).sum();
            assert_eq!(total, expected);
            let s = pool.stats();
            assert_eq!((s.accepted, s.done, s.queued, s.running), (8_000, 8_000, 0, 0));
            pool.stop().await;
        }
    })
    .await;
}

/// A task longer than the spin budget still wakes its caller (the spin gives up, the waker
/// does the rest), and short tasks after long ones still come back.
#[tokio::test]
async fn long_tasks_complete_with_spinning_on() {
    bounded(async {
        let (pool, _actor) = start(CpuPoolConfig::default().threads(1).spin(Duration::from_micros(20))).await;
        let busy = |d: Duration| {
            move || {
                let t = Instant::now();
                while t.elapsed() < d {
                    std::hint::spin_loop();
                }
            }
        };
        for _ in 0..3 {
            assert_eq!(pool.run(busy(Duration::from_millis(2))).await, Ok(()));
            assert_eq!(pool.run(busy(Duration::ZERO)).await, Ok(()));
        }
        assert_eq!(pool.stats().done, 6);
        pool.stop().await;
    })
    .await;
}
