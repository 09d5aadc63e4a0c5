//! [`WorkerContext`]: what a behaviour can reach inside its worker process: its slot and
//! generation, the origin of the message it handles, the way to the primary (reports, ready,
//! listen), the drain signal, tracked tasks and the CPU pool; messages to other workers are
//! in `peers.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use corral_protocol::spans::{self, PRIMARY_DESTINATION};
use std::time::Duration;

use corral_protocol::{Body, CallError, Control, Outgoing, PendingCalls, ReplyTo, Scheduling, TraceContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::counters::Counters;
use crate::cpu_pool::CpuPoolHandle;
use crate::error::WorkerError;
use crate::listen::{ListenRegistry, Listener, from_passed_socket};
use crate::origin::Origin;

mod peers;

struct Inner<R> {
    slot: usize,
    generation: u64,
    outbox: mpsc::Sender<Outgoing<R>>,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    listens: Arc<ListenRegistry>,
    tasks: TaskTracker,
    pool: CpuPoolHandle,
    /// `start` asked to say ready itself (PM2's `wait_ready`).
    ready_deferred: AtomicBool,
    /// Ready was sent.
    ready_sent: AtomicBool,
    /// Calls to the primary awaiting its reply.
    calls: Arc<PendingCalls>,
}

/// The worker's view of itself and its way to the primary. Cheap to clone.
///
/// A behaviour gets it in each of its [`Worker`](crate::Worker) methods; `R` is the
/// behaviour's `Report` type, what the worker sends to the primary. Clone it into the tasks
/// the behaviour spawns.
///
/// # Examples
///
/// ```no_run
/// use corral_workers::{BoxError, Worker, WorkerContext};
///
/// struct Api;
///
/// impl Worker for Api {
///     type Msg = ();
///     type Report = String;
///     type State = ();
///
///     async fn start(&self, cx: &WorkerContext<String>) -> Result<(), BoxError> {
///         println!("slot {} generation {}", cx.slot(), cx.generation());
///         let listener = cx.listen("127.0.0.1:3000").await?;
///         let app = axum::Router::new();
///         cx.spawn_tracked(corral_workers::http::serve(listener, app, cx.shutdown_token(), Default::default()));
///         cx.report(format!("serving from pid {}", std::process::id())).await?;
///         Ok(())
///     }
/// }
/// ```
pub struct WorkerContext<R> {
    inner: Arc<Inner<R>>,
    /// Who sent the message this context was handed out for (`None` outside `handle`).
    origin: Option<Origin>,
}

impl<R> Clone for WorkerContext<R> {
    fn clone(&self) -> Self {
        WorkerContext { inner: self.inner.clone(), origin: self.origin }
    }
}

impl<R> std::fmt::Debug for WorkerContext<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("slot", &self.inner.slot)
            .field("generation", &self.inner.generation)
            .field("origin", &self.origin)
            .finish()
    }
}

impl<R: Serialize + Send + 'static> WorkerContext<R> {
    pub(crate) fn new(
        slot: usize,
        generation: u64,
        outbox: mpsc::Sender<Outgoing<R>>,
        shutdown: CancellationToken,
        counters: Arc<Counters>,
        listens: Arc<ListenRegistry>,
        pool: CpuPoolHandle,
    ) -> Self {
        let tasks = TaskTracker::new();
        WorkerContext {
            inner: Arc::new(Inner {
                slot,
                generation,
                outbox,
                shutdown,
                counters,
                listens,
                tasks,
                pool,
                ready_deferred: AtomicBool::new(false),
                ready_sent: AtomicBool::new(false),
                calls: PendingCalls::new(),
            }),
            origin: None,
        }
    }

    /// The context `handle` gets for one message: this one, with the message's origin.
    pub(crate) fn handling(&self, origin: Origin) -> Self {
        WorkerContext { inner: self.inner.clone(), origin: Some(origin) }
    }

    /// This worker's calls to the primary (the reader answers them, and fails them when the
    /// channel closes).
    pub(crate) fn calls(&self) -> Arc<PendingCalls> {
        self.inner.calls.clone()
    }

    /// Called in `start`: this worker will say [`ready`](Self::ready) itself, later, instead
    /// of being ready when `start` returns (PM2's `wait_ready`). The primary still kills it if
    /// it is not ready within `listen_timeout`.
    ///
    /// # Examples
    ///
    /// Warming a cache in the background, and taking traffic only once it is warm:
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) {
    /// // In `start`:
    /// cx.defer_ready();
    /// let later = cx.clone();
    /// cx.spawn_tracked(async move {
    ///     // ... fill the cache ...
    ///     if let Err(e) = later.ready().await {
    ///         eprintln!("the primary is gone: {e}");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn defer_ready(&self) {
        self.inner.ready_deferred.store(true, Ordering::Release);
    }

    /// Tells the primary this worker is ready (after [`defer_ready`](Self::defer_ready)); only
    /// the first call counts.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Disconnected`] when the primary is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::WorkerError> {
    /// cx.defer_ready(); // in `start`
    /// // ... once the worker can serve:
    /// cx.ready().await?;
    /// cx.ready().await?; // only the first call counts
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<(), WorkerError> {
        if self.inner.ready_sent.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.outbox.send(Outgoing::control(Control::Ready)).await.map_err(|_| WorkerError::Disconnected)
    }

    /// Sends ready after `start` unless it was deferred.
    pub(crate) async fn ready_after_start(&self) -> Result<(), WorkerError> {
        if self.inner.ready_deferred.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ready().await
    }

    /// Listens on `addr` through the primary, which owns the socket and shares it between all
    /// workers (port 0 resolves once, so every worker and every restarted worker gets the same
    /// port). The returned [`Listener`] works with `axum::serve` whatever the cluster's
    /// scheduling; connections arrive once this worker is ready.
    ///
    /// # Errors
    ///
    /// [`WorkerError::ListenRefused`] when the primary cannot bind the address (the refusal
    /// names it; the primary then stops the cluster rather than restart into the same error),
    /// [`WorkerError::Listen`] when the socket cannot be set up in this worker;
    /// [`WorkerError::Disconnected`] when the primary is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
    /// use corral_workers::WorkerError;
    ///
    /// let listener = match cx.listen("0.0.0.0:8080").await {
    ///     Ok(listener) => listener,
    ///     // Typed: e.g. `ListenRefusal::Bind` with the errno of a port in use.
    ///     Err(WorkerError::ListenRefused(refusal)) => return Err(format!("no port: {refusal}").into()),
    ///     Err(e) => return Err(e.into()),
    /// };
    /// println!("listening on {}", listener.local_addr());
    /// # Ok(()) }
    /// ```
    pub async fn listen(&self, addr: &str) -> Result<Listener, WorkerError> {
        let listens = &self.inner.listens;
        let (id, mut pending) = listens.open();
        let request = Outgoing::control(Control::Listen { id, addr: addr.to_string() });
        if self.inner.outbox.send(request).await.is_err() {
            listens.settle(id, None);
            return Err(WorkerError::Disconnected);
        }
        let answer = (&mut pending.ack).await;
        let grant = match answer {
            Ok(Ok(grant)) => grant,
            Ok(Err(reason)) => {
                listens.settle(id, None);
                return Err(WorkerError::ListenRefused(reason));
            }
            Err(_) => {
                listens.settle(id, None);
                return Err(WorkerError::Disconnected);
            }
        };
        listens.settle(id, Some(grant.scheduling));
        let failed = |source: std::io::Error| WorkerError::Listen { addr: addr.to_string(), source };
        let socket = match grant.scheduling {
            Scheduling::RoundRobin | Scheduling::LeastConnections | Scheduling::Sticky => None,
            // Reuse-port: the slot's own socket of the group, owned by the primary (so that
            // the slot's next process inherits its queue), passed like a shared one.
            Scheduling::Shared | Scheduling::ReusePort => {
                let fd = (&mut pending.socket).await.map_err(|_| WorkerError::Disconnected)?;
                Some(from_passed_socket(fd).map_err(failed)?)
            }
        };
        Listener::new(&grant, pending, socket, self.inner.counters.clone()).map_err(failed)
    }

    /// The slot this worker fills (0-based, as `cluster.worker.id - 1` in Node). A restarted
    /// worker keeps its slot.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>) {
    /// // Each of four workers owns one shard of the cache, whatever its restarts.
    /// let shard = cx.slot() % 4;
    /// println!("serving shard {shard}");
    /// # }
    /// ```
    pub fn slot(&self) -> usize {
        self.inner.slot
    }

    /// The slot's generation: 1 for the first process, bumped at every restart.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>) {
    /// if cx.generation() > 1 {
    ///     eprintln!("slot {} restarted {} times", cx.slot(), cx.generation() - 1);
    /// }
    /// # }
    /// ```
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Who sent the message being handled: the primary, or another worker (by its slot) that
    /// sent it with [`send_to_worker`](Self::send_to_worker) or
    /// [`broadcast_workers`](Self::broadcast_workers).
    ///
    /// `Some` in [`Worker::handle`](crate::Worker::handle), for the message that call handles;
    /// a clone of that context (say, moved into a task the handler spawns) keeps that
    /// message's origin. `None` in `start` and `stop`, which handle no message.
    ///
    /// # Examples
    ///
    /// Taking invalidations only from peers, answering the primary's pings:
    ///
    /// ```no_run
    /// use corral_workers::{BoxError, Origin, WorkerContext};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Msg { Invalidate(String), Ping }
    ///
    /// async fn handle(cx: &WorkerContext<String>, msg: Msg) -> Result<(), BoxError> {
    ///     match (cx.origin(), msg) {
    ///         (Some(Origin::Worker { slot }), Msg::Invalidate(key)) => {
    ///             tracing::debug!(from = slot, %key, "peer invalidated a key");
    ///         }
    ///         (Some(Origin::Primary), Msg::Ping) => cx.report("pong".into()).await?,
    ///         (origin, _) => tracing::warn!(?origin, "unexpected message"),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn origin(&self) -> Option<Origin> {
        self.origin
    }

    /// Sends a message to the primary, waiting while the outgoing queue is full.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Disconnected`] when the channel to the primary is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<String>) -> Result<(), corral_workers::WorkerError> {
    /// cx.report(format!("slot {} warmed its cache", cx.slot())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn report(&self, message: R) -> Result<(), WorkerError> {
        let sent = if spans::enabled() {
            let span = spans::send(PRIMARY_DESTINATION, self.inner.slot);
            let out = Outgoing { trace: TraceContext::of_span(&span).map(Box::new), body: Body::User(message) };
            corral_protocol::enqueue(&self.inner.outbox, out).instrument(span).await
        } else {
            corral_protocol::enqueue(&self.inner.outbox, Outgoing::user(message)).await
        };
        sent.map_err(|_| WorkerError::Disconnected)?;
        self.inner.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Calls the primary: sends it the report `make` builds around a
    /// [`ReplyTo<T>`](ReplyTo) and waits, at most `timeout`, for the `T` it replies (the type
    /// the `ReplyTo` names, checked at compile time). Many calls may be in flight at once;
    /// each reply finds its own caller.
    ///
    /// The primary receives the report as any other (a `ClusterEvent::Message`) and answers
    /// with [`ReplyTo::send`] or [`ReplyTo::fail`]; a report dropped unanswered (by every
    /// subscriber) fails the call at once.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`]; [`CallError::PeerGone`] when the channel to the primary closed
    /// before it replied; [`CallError::Failed`] when its handler failed or dropped the
    /// request; [`CallError::BadReply`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use corral_protocol::ReplyTo;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// enum Report {
    ///     /// Which feature flags are on? (answered by the primary)
    ///     Flags(ReplyTo<Vec<String>>),
    /// }
    ///
    /// # async fn demo(cx: corral_workers::WorkerContext<Report>) -> Result<(), corral_protocol::CallError> {
    /// let flags = cx.call(Report::Flags, Duration::from_secs(2)).await?;
    /// println!("flags: {flags:?}");
    /// # Ok(()) }
    /// ```
    pub async fn call<T: DeserializeOwned>(
        &self,
        make: impl FnOnce(ReplyTo<T>) -> R,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let (reply_to, pending) = self.inner.calls.open::<T>()?;
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.report(make(reply_to))).await {
            Err(_elapsed) => return Err(CallError::Timeout { timeout }),
            Ok(Err(_)) => return Err(CallError::PeerGone),
            Ok(Ok(())) => {}
        }
        pending.wait(deadline.saturating_duration_since(tokio::time::Instant::now())).await.map_err(|e| match e {
            CallError::Timeout { .. } => CallError::Timeout { timeout },
            other => other,
        })
    }

    /// Calls to the primary in flight (none is left behind by a timeout or a caller that gave
    /// up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>) {
    /// assert_eq!(cx.pending_calls(), 0);
    /// # }
    /// ```
    pub fn pending_calls(&self) -> usize {
        self.inner.calls.len()
    }

    /// Sends a message to the primary if the queue has room.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Busy`] when the queue is full, [`WorkerError::Disconnected`] when it is
    /// closed.
    ///
    /// # Examples
    ///
    /// Samples that may be dropped when the primary is behind:
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<u64>, latency_us: u64) {
    /// use corral_workers::WorkerError;
    ///
    /// match cx.try_report(latency_us) {
    ///     Ok(()) | Err(WorkerError::Busy) => {}
    ///     Err(e) => eprintln!("cannot report: {e}"),
    /// }
    /// # }
    /// ```
    pub fn try_report(&self, message: R) -> Result<(), WorkerError> {
        let (out, span) = if spans::enabled() {
            let span = spans::send(PRIMARY_DESTINATION, self.inner.slot);
            (Outgoing { trace: TraceContext::of_span(&span).map(Box::new), body: Body::User(message) }, span)
        } else {
            (Outgoing::user(message), tracing::Span::none())
        };
        let _sending = span.enter();
        self.inner.outbox.try_send(out).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WorkerError::Busy,
            mpsc::error::TrySendError::Closed(_) => WorkerError::Disconnected,
        })?;
        self.inner.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A token cancelled when the worker is told to drain: hand it to your servers'
    /// graceful-shutdown hooks.
    ///
    /// # Examples
    ///
    /// A periodic task that ends when the worker drains:
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>) {
    /// use std::time::Duration;
    ///
    /// let shutdown = cx.shutdown_token();
    /// cx.spawn_tracked(async move {
    ///     let mut tick = tokio::time::interval(Duration::from_secs(1));
    ///     loop {
    ///         tokio::select! {
    ///             _ = tick.tick() => { /* flush metrics */ }
    ///             () = shutdown.cancelled() => break,
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Asks this worker to stop on its own, as if the primary had told it to: the behaviour's
    /// `stop` runs and the process exits with code 0 (a permanent worker is restarted).
    ///
    /// # Examples
    ///
    /// Recycling a worker after many requests:
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>, served: u64) {
    /// if served >= 1_000_000 {
    ///     cx.request_stop(); // drains; the primary starts a fresh process in this slot
    /// }
    /// # }
    /// ```
    pub fn request_stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// Spawns a task the worker waits for before it exits: a server draining its connections,
    /// a flush of some buffer. Tasks still running when the drain deadline passes are cut
    /// short with the process.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
    /// let listener = cx.listen("127.0.0.1:3000").await?;
    /// let app = axum::Router::new();
    /// cx.spawn_tracked(corral_workers::http::serve(listener, app, cx.shutdown_token(), Default::default()));
    /// # Ok(()) }
    /// ```
    pub fn spawn_tracked<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// Waits for every task started with [`spawn_tracked`](Self::spawn_tracked).
    pub(crate) async fn wait_tracked(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// This worker's CPU pool: dedicated OS threads for CPU-heavy work, so that it never
    /// stalls the worker's event loop (sized by the cluster's `cpu_threads`). The threads
    /// start with the first task: until then the worker is a single-threaded process.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::CpuPoolError> {
    /// let sum = cx.cpu_pool().run(|| (0..10_000_000u64).sum::<u64>()).await?;
    /// # Ok(()) }
    /// ```
    pub fn cpu_pool(&self) -> &CpuPoolHandle {
        &self.inner.pool
    }

    /// Connections open right now on this worker's listeners (what least-connections
    /// balancing counts).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(cx: corral_workers::WorkerContext<()>) {
    /// if cx.open_connections() > 10_000 {
    ///     eprintln!("slot {}: {} connections open", cx.slot(), cx.open_connections());
    /// }
    /// # }
    /// ```
    pub fn open_connections(&self) -> u64 {
        self.inner.counters.connections().0
    }
}
