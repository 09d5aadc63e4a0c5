//! Running a worker process: [`run`] (bootstrap, IPC tasks, the behaviour's actor, draining)
//! and the process's exit codes ([`EXIT_OK`] …); inside, the frame reader and the load
//! reporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_protocol::spans;
use corral_protocol::{
    Body, Control, FrameCodec, HandleChannel, Hello, Outgoing, PendingCalls, PoolStats, ProtocolError, reply_sink,
    write_frames,
};
use futures_util::StreamExt;
use ractor::{Actor, ActorRef};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::actor::{WorkerActor, WorkerMsg};
use crate::behaviour::Worker;
use crate::context::WorkerContext;
use crate::counters::Counters;
use crate::cpu_pool::{CpuPool, CpuPoolConfig, CpuPoolHandle, CpuPoolStats};
use crate::error::WorkerError;
use crate::listen::ListenRegistry;
use crate::origin::Origin;

/// Exit code of a worker that drained cleanly.
pub const EXIT_OK: i32 = 0;
/// Exit code of a worker whose behaviour failed (start, handle or stop).
pub const EXIT_BEHAVIOUR: i32 = 1;
/// Exit code of a process started with the worker marker but not by a corral primary (or
/// whose primary was already gone).
pub const EXIT_BOOTSTRAP: i32 = 2;
/// Exit code of a worker that saw the primary break the protocol.
pub const EXIT_PROTOCOL: i32 = 3;
/// Exit code of a worker that did not finish draining before its deadline.
pub const EXIT_DRAIN_TIMEOUT: i32 = 4;

/// The target of the span every worker-side log line is in (`worker{slot pid}`); a
/// span exporter should leave it out (`corral::telemetry` does).
pub const WORKER_SPAN_TARGET: &str = "corral::process";

/// How long a worker drains when it is not told a deadline (SIGTERM, or the primary is gone).
const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
/// Messages from the primary that may wait in the behaviour's mailbox.
const INBOX_CREDITS: usize = 1024;
/// Frames that may wait for the writer.
const OUTBOX: usize = 1024;

/// Runs `worker` as this process's behaviour until it is told to drain, and returns the
/// process exit code ([`EXIT_OK`] after a clean drain). Builds its own single-threaded tokio
/// runtime, as a Node worker has one event loop: a handler that blocks it misses heartbeats.
///
/// # Errors
///
/// When the worker cannot set itself up; the caller exits with [`EXIT_BOOTSTRAP`]:
/// [`WorkerError::PrimaryGone`] when the primary that started it is gone,
/// [`WorkerError::Protocol`] when the environment is not a corral worker's (wrong fds),
/// [`WorkerError::Runtime`], [`WorkerError::Channel`], [`WorkerError::Signal`] or
/// [`WorkerError::Pool`] when the runtime, the channel to the primary, the SIGTERM handler or
/// the CPU pool cannot be set up. A behaviour that fails is no error here: `run` returns
/// [`EXIT_BEHAVIOUR`].
pub fn run<W: Worker>(worker: W, boot: WorkerBootstrap) -> Result<i32, WorkerError> {
    crate::process_name::name_after_executable();
    // Every line this worker logs says which one it is: `worker{slot=2 pid=4242}: …`. The
    // whole worker runs on this thread (one event loop), so the span entered here is the
    // current one of every task it polls. At ERROR level so that no `RUST_LOG` that lets a
    // line through hides it; `corral::telemetry` does not export it (it is no operation).
    let identity =
        tracing::error_span!(target: WORKER_SPAN_TARGET, "worker", slot = boot.slot, pid = std::process::id());
    let _identity = identity.enter();
    // The primary may have died before our PR_SET_PDEATHSIG was armed.
    if nix::unistd::getppid().as_raw() as u32 != boot.primary_pid {
        return Err(WorkerError::PrimaryGone);
    }
    let (ipc, handles) = boot.take_fds()?;
    // Hang dumps of this thread, the event loop's (a worker runs on without them).
    if let Some(report) = boot.take_hang_fd()
        && let Err(e) = crate::hang_dump::install(report)
    {
        tracing::warn!(error = %e, "hang dumps are off");
    }
    // The death notice, held by this thread (the event loop's) until the process ends: the
    // primary learns of our death as it begins, before the kernel tears the process down.
    // Locked before the hello, which tells the primary to start watching it.
    if let Some(Err(e)) = corral_protocol::death_notice::hold_inherited() {
        tracing::warn!(error = %e, "no death notice: the primary sees this worker's death at its exit");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(WorkerError::Runtime)?;
    runtime.block_on(run_async(worker, boot, ipc, handles))
}

async fn run_async<W: Worker>(
    worker: W,
    boot: WorkerBootstrap,
    ipc: std::os::fd::OwnedFd,
    handles: std::os::fd::OwnedFd,
) -> Result<i32, WorkerError> {
    let ipc = std::os::unix::net::UnixStream::from(ipc);
    ipc.set_nonblocking(true).map_err(WorkerError::Channel)?;
    let (read, write) = tokio::net::UnixStream::from_std(ipc).map_err(WorkerError::Channel)?.into_split();
    let listens = Arc::new(ListenRegistry::default());
    let handle_channel = HandleChannel::new(handles)?;
    tokio::spawn(listens.clone().run_handle_reader(handle_channel));

    let (outbox, outbox_rx) = mpsc::channel::<Outgoing<W::Report>>(OUTBOX);
    let flush = CancellationToken::new();
    let writer = tokio::spawn(write_frames(
        write,
        FrameCodec::<W::Report, W::Msg>::new(boot.max_frame_length),
        outbox_rx,
        flush.clone(),
        || {},
    ));
    let hello = Hello::new(boot.slot, boot.generation, std::process::id());
    outbox.send(Outgoing::control(Control::Hello(hello))).await.map_err(|_| WorkerError::Disconnected)?;

    let shutdown = CancellationToken::new();
    let counters = Arc::new(Counters::default());
    let pool_config = CpuPoolConfig::default().threads(boot.cpu_threads.max(1));
    let (pool, _pool_actor) = CpuPool::start(pool_config).await.map_err(WorkerError::Pool)?;
    let cx = WorkerContext::new(
        boot.slot as usize,
        boot.generation,
        outbox.clone(),
        shutdown.clone(),
        counters.clone(),
        listens.clone(),
        pool.clone(),
    );
    let calls = cx.calls();
    tokio::spawn(report_load(outbox.clone(), counters.clone(), shutdown.clone()));
    let drain_deadline = Arc::new(AtomicU64::new(u64::try_from(DEFAULT_DRAIN.as_millis()).unwrap_or(u64::MAX)));
    let protocol_failed = Arc::new(OnceLock::new());

    // SIGTERM (also what PR_SET_PDEATHSIG sends when the primary dies) drains.
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(WorkerError::Signal)?;
    let on_term = shutdown.clone();
    tokio::spawn(async move {
        if sigterm.recv().await.is_some() {
            tracing::info!("SIGTERM: draining");
            on_term.cancel();
        }
    });

    let (actor_tx, actor_rx) = watch::channel::<Option<ActorRef<WorkerMsg<W::Msg>>>>(None);
    let reader = Reader {
        slot: boot.slot as usize,
        outbox: outbox.clone(),
        counters: counters.clone(),
        shutdown: shutdown.clone(),
        drain_deadline: drain_deadline.clone(),
        credits: Arc::new(Semaphore::new(INBOX_CREDITS)),
        listens,
        pool: pool.clone(),
        actor: actor_rx,
        protocol_failed: protocol_failed.clone(),
        calls,
    };
    // Requests from the primary reply through our own queue to it.
    let codec = FrameCodec::<W::Report, W::Msg>::new(boot.max_frame_length).with_replies(reply_sink(&outbox));
    tokio::spawn(reader.run(FramedRead::new(read, codec)));

    let failure = Arc::new(OnceLock::new());
    let behaviour = WorkerActor { behaviour: Arc::new(worker), failure: failure.clone() };
    let name = format!("corral-worker-{}-{}", boot.slot, boot.generation);
    let tracked = cx.clone();
    let spawned = Actor::spawn(Some(name), behaviour, cx).await;
    let (actor, join) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            let message = failure.get().map_or_else(|| e.to_string(), ToString::to_string);
            if failure.get().is_some_and(WorkerError::is_listen_refusal) {
                // The primary refused the address and stops the cluster; its error says why.
                tracing::debug!(error = %message, "worker failed to start");
            } else {
                tracing::error!(error = %message, "worker failed to start");
                let _ = outbox.send(Outgoing::control(Control::Error { message })).await;
            }
            finish_writer(&flush, outbox, writer).await;
            return Ok(EXIT_BEHAVIOUR);
        }
    };
    let _ = actor_tx.send(Some(actor.clone()));

    // Draining: whoever asked (primary, SIGTERM, EOF, the behaviour itself), the behaviour sees
    // every message already received, then stops; a watchdog bounds the whole drain.
    let drainer = {
        let shutdown = shutdown.clone();
        let actor = actor.clone();
        let deadline = drain_deadline.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            arm_watchdog(Duration::from_millis(deadline.load(Ordering::Relaxed)));
            let _ = actor.send_message(WorkerMsg::Drain);
        })
    };
    let _ = join.await;
    drainer.abort();
    // Servers and other tracked tasks finish their drain (the watchdog bounds it), then the
    // CPU pool runs what is queued and joins its threads.
    tracked.wait_tracked().await;
    pool.stop().await;
    let code = if let Some(err) = failure.get() {
        tracing::error!(error = %err, "worker behaviour failed");
        let _ = outbox.send(Outgoing::control(Control::Error { message: err.to_string() })).await;
        EXIT_BEHAVIOUR
    } else if protocol_failed.get().is_some() {
        EXIT_PROTOCOL
    } else {
        EXIT_OK
    };
    finish_writer(&flush, outbox, writer).await;
    tracing::debug!(code, "worker exits");
    Ok(code)
}

/// The pool's counters as they travel in a pong.
fn pool_stats(s: &CpuPoolStats) -> PoolStats {
    PoolStats {
        threads: s.threads as u64,
        queue_capacity: s.queue_capacity as u64,
        queued: s.queued,
        running: s.running,
        done: s.done,
        rejected: s.rejected,
        panicked: s.panicked,
        skipped: s.skipped,
    }
}

/// How often open-connection counts may be reported (least-connections balancing).
const LOAD_REPORT_EVERY: Duration = Duration::from_millis(2);

/// Reports the open-connection count to the primary after it changed, at most every
/// [`LOAD_REPORT_EVERY`], until the worker drains.
async fn report_load<R>(outbox: mpsc::Sender<Outgoing<R>>, counters: Arc<Counters>, shutdown: CancellationToken) {
    // The primary counts what it dispatched since our last report on top of it, so report
    // whenever a connection came or went, even if the open count is back where it was. An
    // idle worker sleeps here: no timer wakes its event loop.
    let mut last = (0, 0);
    loop {
        tokio::select! {
            () = counters.connections_changed.notified() => {}
            () = shutdown.cancelled() => return,
        }
        // Coalesce a burst of changes into one report.
        tokio::time::sleep(LOAD_REPORT_EVERY).await;
        let now = counters.connections();
        let report = Control::Load { open: now.0, accepted: now.0 + now.1 };
        if now != last && outbox.try_send(Outgoing::control(report)).is_ok() {
            last = now;
        }
    }
}

/// Writes everything still queued for the primary, then returns.
async fn finish_writer(
    flush: &CancellationToken,
    outbox: mpsc::Sender<Outgoing<impl Send>>,
    writer: tokio::task::JoinHandle<Result<(), ProtocolError>>,
) {
    drop(outbox);
    flush.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// Exits the process if draining takes longer than `deadline` (plus a little, so that the
/// primary's own kill_timeout normally acts first). Runs on its own OS thread, so that even a
/// stuck event loop cannot hold the process open.
fn arm_watchdog(deadline: Duration) {
    let spawned = std::thread::Builder::new().name("corral-drain-watchdog".into()).spawn(move || {
        std::thread::sleep(deadline + Duration::from_millis(500));
        tracing::error!(?deadline, "worker did not drain in time; exiting");
        std::process::exit(EXIT_DRAIN_TIMEOUT);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the drain watchdog");
    }
}

/// Reads the primary's frames: user messages go to the behaviour's actor, pings are answered
/// at once from this event loop, shutdown and EOF start the drain.
struct Reader<M, R> {
    slot: usize,
    outbox: mpsc::Sender<Outgoing<R>>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    drain_deadline: Arc<AtomicU64>,
    credits: Arc<Semaphore>,
    actor: watch::Receiver<Option<ActorRef<WorkerMsg<M>>>>,
    protocol_failed: Arc<OnceLock<ProtocolError>>,
    listens: Arc<ListenRegistry>,
    pool: CpuPoolHandle,
    /// This worker's calls to the primary, answered by its replies.
    calls: Arc<PendingCalls>,
}

impl<M: serde::de::DeserializeOwned + Send + 'static, R: Send + 'static> Reader<M, R> {
    async fn run(mut self, mut frames: FramedRead<OwnedReadHalf, FrameCodec<R, M>>) {
        if let Err(e) = self.read(&mut frames).await {
            tracing::error!(error = %e, "the primary broke the protocol; draining");
            let _ = self.protocol_failed.set(e);
        } else {
            tracing::info!("the channel to the primary closed; draining");
        }
        // Nothing will answer our calls in flight any more.
        self.calls.close();
        self.shutdown.cancel();
    }

    /// The `receive` span of a message from the primary (or relayed by it), when spans are on.
    fn receive_span(&self, seq: u64, trace: Option<&corral_protocol::TraceContext>) -> tracing::Span {
        if spans::enabled() {
            let destination = spans::worker_destination(self.slot);
            spans::receive(destination, self.slot, seq, "process", trace)
        } else {
            tracing::Span::none()
        }
    }

    async fn read(&mut self, frames: &mut FramedRead<OwnedReadHalf, FrameCodec<R, M>>) -> Result<(), ProtocolError> {
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            let control = match frame.body {
                Body::User(message) => {
                    let span = self.receive_span(frame.seq, frame.trace.as_deref());
                    self.deliver(message, Origin::Primary, span).await;
                    continue;
                }
                Body::Control(control) => *control,
            };
            match control {
                Control::Ping { nonce } => {
                    let stats = self.counters.stats(pool_stats(&self.pool.stats()));
                    let _ = self.outbox.send(Outgoing::control(Control::Pong { nonce, stats })).await;
                }
                Control::ListenAck { id, result } => self.listens.acked(id, result),
                Control::Reply { id, answer } => self.calls.answer(id, answer),
                Control::Relayed { from, message } => match postcard::from_bytes::<M>(&message) {
                    // From another worker: handled as any message, in the order it came.
                    Ok(message) => {
                        let span = self.receive_span(frame.seq, frame.trace.as_deref());
                        self.deliver(message, Origin::Worker { slot: from as usize }, span).await;
                    }
                    Err(e) => {
                        tracing::warn!(from, error = %e, "a message from another worker does not decode; dropped")
                    }
                },
                Control::Shutdown { deadline_ms } => {
                    tracing::info!(deadline_ms, "the primary asks this worker to drain");
                    self.drain_deadline.store(deadline_ms, Ordering::Relaxed);
                    self.shutdown.cancel();
                }
                other => {
                    return Err(ProtocolError::UnexpectedControl { control: other.name(), peer: "primary" });
                }
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, message: M, origin: Origin, span: tracing::Span) {
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        let Ok(credit) = self.credits.clone().acquire_owned().await else {
            return;
        };
        // Messages that arrive before the behaviour has started wait for it.
        let actor = match self.actor.wait_for(Option::is_some).await {
            Ok(actor) => actor.clone(),
            Err(_) => return,
        };
        if let Some(actor) = actor {
            let _ = actor.send_message(WorkerMsg::Handle { msg: message, origin, _credit: credit, span });
        }
    }
}
