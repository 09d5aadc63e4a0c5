//! `WorkerSupervisor`: the actor that owns one worker slot.
//!
//! It starts the slot's process, watches it (hello, readiness, heartbeats, memory, exit) and
//! applies the restart policy one-for-one: the restart type decides whether to restart, the
//! backoff how long to wait, the intensity window whether to give up. It reports the end of
//! the slot to the [`Cluster`](crate::Cluster) and leaves the escalation to it.
//!
//! A slot may briefly have three processes: the **current** one, a **candidate** started to
//! replace it (rolling reload, recycling) that takes over only once it is ready, and the
//! **retiring** one it replaced, draining. Capacity never drops while a slot is replaced.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_protocol::{
    Control, FrameCodec, HandleChannel, ListenGrant, Outgoing, Scheduling, WorkerStats, seqpacket_pair, stream_pair,
};
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;
use tracing::field::Empty;

use crate::cluster::{ClusterMsg, SlotOutcome};
use crate::conn::{ProcessCommand, ReaderCtx, SlotCounters, run_reader, run_waiter, run_writer};
use crate::events::EventBus;
use crate::lifecycle::{self, TARGET};
use crate::listener::{Listeners, Load, Target};
use crate::output::forward_lines;
use crate::routes::{Route, Routes};
use crate::spawn::{SpawnSpec, rss_bytes, spawn_worker};
use crate::{
    ClusterConfig, ClusterEvent, ExitStatus, OutputStream, Replaced, RestartIntensity, WorkerExec, WorkerOutput,
    WorkerState, WorkerStatus,
};

/// Why a slot's process is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceReason {
    /// A rolling reload: the replacement runs the executable as it is on disk now.
    Reload,
    /// Recycling over `max_memory`: the replacement runs the same image.
    MaxMemory,
    /// Recycling after `max_requests`: the replacement runs the same image.
    MaxRequests,
}

impl ReplaceReason {
    /// The reason as the `replace` span's `corral.replace.reason` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceReason::Reload => "reload",
            ReplaceReason::MaxMemory => "max_memory",
            ReplaceReason::MaxRequests => "max_requests",
        }
    }
}

/// Messages of a [`WorkerSupervisor`].
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Start the slot's process (first start and every restart).
    Start,
    /// Start a replacement, make it current once ready, then drain the old process. The reply
    /// comes once the replacement is ready, or with why it failed (the old process then keeps
    /// serving).
    Replace {
        /// Why.
        reason: ReplaceReason,
        /// Parent of the `replace` span (the `reload` span); `Span::none()` for a root span.
        parent: Span,
        /// Where to answer.
        reply: Option<RpcReplyPort<Result<Replaced, String>>>,
    },
    /// The worker said a valid hello.
    Online {
        /// Generation of the process.
        generation: u64,
    },
    /// The worker is ready.
    Ready {
        /// Generation of the process.
        generation: u64,
    },
    /// The worker answered a ping.
    Pong {
        /// Generation of the process.
        generation: u64,
        /// The ping's nonce.
        nonce: u64,
        /// The worker's counters.
        stats: WorkerStats,
    },
    /// The worker asks to listen on an address.
    Listen {
        /// Generation of the process.
        generation: u64,
        /// The request's id.
        id: u64,
        /// The address asked for.
        addr: String,
    },
    /// The worker began draining on its own.
    Draining {
        /// Generation of the process.
        generation: u64,
    },
    /// The frame reader ended: EOF, or a protocol error.
    ReaderEnded {
        /// Generation of the process.
        generation: u64,
        /// The protocol error, if that is why.
        error: Option<String>,
        /// Whether the error rules out a restart (a protocol version mismatch).
        fatal: bool,
    },
    /// The process exited.
    Exited {
        /// Generation of the process.
        generation: u64,
        /// How.
        status: ExitStatus,
    },
    /// The process did not become ready within `listen_timeout`.
    StartTimeout {
        /// Generation of the process.
        generation: u64,
    },
    /// A draining process outlived `kill_timeout`.
    KillTimeout {
        /// Generation of the process.
        generation: u64,
    },
    /// Time to ping (and to check the last ping was answered, and the memory limit).
    Heartbeat,
    /// Stop the slot: drain its processes, do not restart. The span (the cluster's `shutdown`
    /// span, or `Span::none()`) is the parent of the processes' `drain` spans.
    Stop(Span),
    /// The slot's status.
    Status(RpcReplyPort<WorkerStatus>),
}

/// The actor supervising one worker slot. Spawned (linked) by the
/// [`Cluster`](crate::Cluster); `M` and `R` are the user's message types primary → worker and
/// worker → primary.
pub struct WorkerSupervisor<M, R> {
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> Default for WorkerSupervisor<M, R> {
    fn default() -> Self {
        WorkerSupervisor { _types: PhantomData }
    }
}

/// What a supervisor is started with (built by the [`Cluster`](crate::Cluster)).
pub struct SupervisorArgs<M, R> {
    pub(crate) slot: usize,
    pub(crate) config: Arc<ClusterConfig>,
    pub(crate) cluster: ActorRef<ClusterMsg>,
    pub(crate) bus: Arc<EventBus<R>>,
    pub(crate) routes: Arc<Routes<M>>,
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) command: Arc<WorkerCommand>,
}

/// Which program the workers run, for restarts and for reloads.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCommand {
    /// For first starts, restarts and recycling: the primary's own image.
    pub program: PathBuf,
    /// For rolling reloads: the executable as it is on disk now (a deploy is picked up).
    pub reload_program: PathBuf,
    pub argv0: Option<std::ffi::OsString>,
    pub args: Vec<std::ffi::OsString>,
}

impl WorkerCommand {
    pub(crate) fn new(exec: &WorkerExec) -> Self {
        match exec {
            WorkerExec::CurrentExe => {
                let mut args = std::env::args_os();
                let argv0 = args.next();
                // The path as it was when the primary started; `current_exe` says
                // "… (deleted)" once the file was replaced, so take the name off.
                let on_disk = std::env::current_exe()
                    .map(|p| {
                        let text = p.to_string_lossy();
                        PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text).to_string())
                    })
                    .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
                WorkerCommand {
                    // /proc/self/exe is the primary's own image even after the file on disk
                    // was replaced or deleted, so a crash restart runs the same code as its
                    // siblings.
                    program: PathBuf::from("/proc/self/exe"),
                    reload_program: on_disk,
                    argv0,
                    args: args.collect(),
                }
            }
            WorkerExec::Program { path, args } => {
                WorkerCommand { program: path.clone(), reload_program: path.clone(), argv0: None, args: args.clone() }
            }
        }
    }
}

/// What a process is to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Current,
    Candidate,
    Retiring,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Candidate => "candidate",
            Role::Retiring => "retiring",
        }
    }
}

/// The lifecycle spans a process holds open (see [`lifecycle`]); each ends when dropped.
#[derive(Default)]
struct ProcSpans {
    /// `fork`: until the hello arrives or the start fails.
    fork: Option<Span>,
    /// The `restart` that started this process: until it is online.
    restart: Option<Span>,
    /// `drain`: from the drain request until the process exits.
    drain: Option<Span>,
    /// The `replace` that retired this process: until it exits.
    replace: Option<Span>,
}

/// One process of the slot.
struct Proc<M> {
    role: Role,
    pid: u32,
    generation: u64,
    started: Instant,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    /// The process's writer queue.
    tx: mpsc::Sender<Outgoing<M>>,
    ready: bool,
    online: bool,
    draining: bool,
    /// Why the supervisor killed it, if it did.
    killed_because: Option<String>,
    protocol_error: Option<String>,
    /// A protocol error that restarting cannot fix (version mismatch).
    fatal: bool,
    /// When the unanswered ping was sent, and its nonce.
    ping: Option<(u64, Instant)>,
    handles: Arc<HandleChannel>,
    /// Whether listeners may dispatch connections to this process (ready, current, not
    /// draining).
    accepting: Arc<AtomicBool>,
    load: Arc<Load>,
    /// Consecutive heartbeats with RSS over `max_memory`.
    over_memory: u32,
    /// Handled requests after which this process is recycled (`max_requests` + jitter).
    request_limit: Option<u64>,
    spans: ProcSpans,
}

/// A replacement under way.
struct Pending {
    generation: u64,
    old_pid: u32,
    reason: ReplaceReason,
    reply: Option<RpcReplyPort<Result<Replaced, String>>>,
    /// The `replace` span: moves to the old process once the new one took over.
    span: Span,
}

/// The supervisor's state.
pub struct SlotState<M, R> {
    args: SupervisorArgs<M, R>,
    counters: Arc<SlotCounters>,
    generation: u64,
    procs: Vec<Proc<M>>,
    replacing: Option<Pending>,
    state: WorkerState,
    /// Consecutive early deaths (the backoff exponent).
    attempt: u32,
    /// The `restart` span of a restart waiting for its backoff delay.
    restart_span: Option<Span>,
    intensity: RestartIntensity,
    restarts: u64,
    stopping: bool,
    /// Processes killed at `kill_timeout` while stopping.
    killed_while_stopping: Vec<u32>,
    next_nonce: u64,
    last_stats: Option<WorkerStats>,
    last_latency: Option<Duration>,
}

impl<M, R> SlotState<M, R> {
    fn proc(&self, generation: u64) -> Option<&Proc<M>> {
        self.procs.iter().find(|p| p.generation == generation)
    }

    fn proc_mut(&mut self, generation: u64) -> Option<&mut Proc<M>> {
        self.procs.iter_mut().find(|p| p.generation == generation)
    }

    fn current(&self) -> Option<&Proc<M>> {
        self.procs.iter().find(|p| p.role == Role::Current)
    }

    fn current_mut(&mut self) -> Option<&mut Proc<M>> {
        self.procs.iter_mut().find(|p| p.role == Role::Current)
    }
}

fn signal<M>(proc: &Proc<M>, sig: Signal) {
    let _ = proc.commands.send(ProcessCommand::Signal(sig));
}

fn send_control<M>(proc: &Proc<M>, control: Control) -> bool {
    proc.tx.try_send(Outgoing::control(control)).is_ok()
}

impl<M, R> WorkerSupervisor<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// Starts the slot's current process (first start or restart).
    async fn start_current(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>) {
        let slot = st.args.slot;
        let program = st.args.command.program.clone();
        // A restart's span stays open until its process is online.
        let restart = st.restart_span.take();
        let parent = restart.clone().unwrap_or_else(Span::none);
        match self.launch(myself, st, Role::Current, program, &parent).await {
            Ok(generation) => {
                st.state = WorkerState::Starting;
                if let Some(proc) = st.proc_mut(generation) {
                    proc.spans.restart = restart;
                }
            }
            Err(e) => {
                if let Some(restart) = &restart {
                    lifecycle::fail(restart, format_args!("cannot start worker process: {e}"));
                }
                parent.in_scope(|| tracing::error!(slot, error = %e, "cannot start worker process"));
                // Counted as an early death, so that a broken executable hits the intensity
                // limit instead of looping.
                self.after_exit(myself, st, ExitStatus { code: None, signal: None }, Duration::ZERO);
            }
        }
    }

    /// Starts a process under a `fork` span (child of `parent`); returns its generation.
    async fn launch(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        st: &mut SlotState<M, R>,
        role: Role,
        program: PathBuf,
        parent: &Span,
    ) -> std::io::Result<u64> {
        st.generation += 1;
        let fork = tracing::info_span!(
            target: TARGET,
            parent: parent,
            "fork",
            corral.slot = st.args.slot,
            corral.generation = st.generation,
            corral.role = role.as_str(),
            process.pid = Empty,
            otel.status_code = Empty,
            error.message = Empty,
        );
        let launched = self.launch_in(myself, st, role, program, &fork).await;
        if let Err(e) = &launched {
            lifecycle::fail(&fork, e);
        }
        launched
    }

    /// [`launch`](Self::launch), within its `fork` span.
    async fn launch_in(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        st: &mut SlotState<M, R>,
        role: Role,
        program: PathBuf,
        fork: &Span,
    ) -> std::io::Result<u64> {
        let generation = st.generation;
        let slot = st.args.slot;
        let config = st.args.config.clone();
        let stream = stream_pair().map_err(std::io::Error::other)?;
        let handles = seqpacket_pair().map_err(std::io::Error::other)?;
        let boot = WorkerBootstrap {
            slot: slot as u32,
            generation,
            primary_pid: std::process::id(),
            max_frame_length: config.max_frame_length,
            cpu_threads: config.effective_cpu_threads(),
        };
        let spec = SpawnSpec {
            program,
            argv0: st.args.command.argv0.clone(),
            args: st.args.command.args.clone(),
            env: config.env.clone(),
            boot,
            ipc: stream.worker,
            handles: handles.worker,
            capture_output: config.output == WorkerOutput::Capture,
        };
        let mut child = spawn_worker(spec).await?;
        let pid = child.id().unwrap_or(0);
        fork.record("process.pid", pid);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, OutputStream::Stdout, slot, pid, st.args.bus.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, OutputStream::Stderr, slot, pid, st.args.bus.clone()));
        }

        let ipc = std::os::unix::net::UnixStream::from(stream.primary);
        ipc.set_nonblocking(true)?;
        let (read, write) = tokio::net::UnixStream::from_std(ipc)?.into_split();
        let handle_channel = Arc::new(HandleChannel::new(handles.primary).map_err(std::io::Error::other)?);

        let (tx, rx) = mpsc::channel::<Outgoing<M>>(config.send_buffer);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let load = Arc::new(Load::default());
        // Route, state and fork event first: the reader's events (online, ready) must find
        // them in place.
        if role == Role::Current {
            st.args.routes.set(slot, Route { generation, tx: tx.clone() });
        }
        let request_limit = config.max_requests.map(|limit| {
            let jitter = if config.max_requests_jitter == 0 {
                0
            } else {
                rand::rng().random_range(0..=config.max_requests_jitter)
            };
            limit + jitter
        });
        st.procs.push(Proc {
            role,
            pid,
            generation,
            started: Instant::now(),
            commands: cmd_tx,
            tx,
            ready: false,
            online: false,
            draining: false,
            killed_because: None,
            protocol_error: None,
            fatal: false,
            ping: None,
            handles: handle_channel,
            accepting: Arc::new(AtomicBool::new(false)),
            load: load.clone(),
            over_memory: 0,
            request_limit,
            spans: ProcSpans { fork: Some(fork.clone()), ..ProcSpans::default() },
        });
        fork.in_scope(|| tracing::info!(slot, generation, pid, ?role, "worker started"));
        st.args.bus.emit(ClusterEvent::Fork { slot, generation, pid });

        let max = config.max_frame_length;
        tokio::spawn(run_writer(write, FrameCodec::<M, R>::new(max), rx, st.counters.clone(), slot));
        let reader_cx = ReaderCtx {
            load,
            slot,
            generation,
            pid,
            supervisor: myself.clone(),
            bus: st.args.bus.clone(),
            counters: st.counters.clone(),
            hello_timeout: config.listen_timeout,
        };
        tokio::spawn(run_reader(read, FrameCodec::<M, R>::new(max), reader_cx, done_tx));
        tokio::spawn(run_waiter(child, cmd_rx, done_rx, myself.clone(), generation));
        let timeout = config.listen_timeout;
        myself.send_after(timeout, move || SupervisorMsg::StartTimeout { generation });
        Ok(generation)
    }

    /// Decides what follows the exit of the current process: nothing (stopping, or not
    /// restarted by type), a restart after a delay, or giving up.
    fn after_exit(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        st: &mut SlotState<M, R>,
        status: ExitStatus,
        uptime: Duration,
    ) {
        let slot = st.args.slot;
        let config = st.args.config.clone();
        if st.stopping {
            self.maybe_stopped(st);
            return;
        }
        if !config.restart.should_restart(&status) {
            st.state = WorkerState::Stopped;
            tracing::info!(slot, %status, restart = ?config.restart, "worker not restarted");
            let _ = st.args.cluster.send_message(ClusterMsg::SlotEnded { slot, outcome: SlotOutcome::Finished });
            return;
        }
        if !st.intensity.allow(Instant::now()) {
            tracing::error!(slot, period = ?config.period, "too many restarts");
            self.give_up(st);
            return;
        }
        let delay = if uptime >= config.min_uptime {
            st.attempt = 0;
            Duration::ZERO
        } else {
            let d = config.backoff.delay(st.attempt);
            st.attempt = st.attempt.saturating_add(1);
            d
        };
        st.restarts += 1;
        st.state = WorkerState::Restarting;
        let restart = tracing::info_span!(
            target: TARGET,
            parent: None,
            "restart",
            corral.slot = slot,
            corral.restart.attempt = st.attempt,
            corral.restart.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            corral.exit = %status,
            otel.status_code = Empty,
            error.message = Empty,
        );
        restart.in_scope(|| tracing::warn!(slot, %status, ?delay, attempt = st.attempt, "restarting worker"));
        st.restart_span = Some(restart);
        st.args.bus.emit(ClusterEvent::Restarting { slot, delay, attempt: st.attempt });
        if delay.is_zero() {
            let _ = myself.send_message(SupervisorMsg::Start);
        } else {
            myself.send_after(delay, || SupervisorMsg::Start);
        }
    }

    /// While stopping: once no process is left, the slot has ended.
    fn maybe_stopped(&self, st: &mut SlotState<M, R>) {
        if !st.procs.is_empty() || st.state == WorkerState::Stopped {
            return;
        }
        st.state = WorkerState::Stopped;
        let killed = st.killed_while_stopping.clone();
        let _ = st
            .args
            .cluster
            .send_message(ClusterMsg::SlotEnded { slot: st.args.slot, outcome: SlotOutcome::Stopped { killed } });
    }

    /// Tells a process to drain (shutdown frame, or SIGTERM without a channel) and arms its
    /// kill timer. Its `drain` span (child of `parent`) lasts until it exits.
    fn drain(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>, generation: u64, parent: &Span) {
        let slot = st.args.slot;
        let timeout = st.args.config.kill_timeout;
        let Some(proc) = st.proc_mut(generation) else { return };
        proc.spans.drain = Some(tracing::info_span!(
            target: TARGET,
            parent: parent,
            "drain",
            corral.slot = slot,
            corral.generation = generation,
            process.pid = proc.pid,
            corral.killed = Empty,
            corral.exit = Empty,
        ));
        proc.accepting.store(false, Ordering::Release);
        let deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if !send_control(proc, Control::Shutdown { deadline_ms }) {
            // No channel to the worker: its SIGTERM handler drains instead.
            signal(proc, Signal::SIGTERM);
        }
        myself.send_after(timeout, move || SupervisorMsg::KillTimeout { generation });
    }

    /// Starts a replacement for the current process, under a `replace` span (child of
    /// `parent`) that lasts until the old process has exited or the replacement failed.
    async fn replace(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        st: &mut SlotState<M, R>,
        reason: ReplaceReason,
        parent: &Span,
        reply: Option<RpcReplyPort<Result<Replaced, String>>>,
    ) {
        let slot = st.args.slot;
        let span = tracing::info_span!(
            target: TARGET,
            parent: parent,
            "replace",
            corral.slot = slot,
            corral.replace.reason = reason.as_str(),
            corral.replace.old_pid = Empty,
            corral.replace.new_pid = Empty,
            otel.status_code = Empty,
            error.message = Empty,
        );
        let refuse = |reply: Option<RpcReplyPort<Result<Replaced, String>>>, why: String| {
            lifecycle::fail(&span, &why);
            span.in_scope(|| tracing::warn!(slot, %why, "replacement refused"));
            if let Some(reply) = reply {
                let _ = reply.send(Err(why));
            }
        };
        if st.stopping {
            return refuse(reply, format!("slot {slot} is stopping"));
        }
        if st.replacing.is_some() {
            return refuse(reply, format!("slot {slot} is already being replaced"));
        }
        let Some(old_pid) = st.current().filter(|p| p.ready && !p.draining).map(|p| p.pid) else {
            return refuse(reply, format!("slot {slot} has no ready worker to replace"));
        };
        span.record("corral.replace.old_pid", old_pid);
        let program = match reason {
            ReplaceReason::Reload => st.args.command.reload_program.clone(),
            ReplaceReason::MaxMemory | ReplaceReason::MaxRequests => st.args.command.program.clone(),
        };
        match self.launch(myself, st, Role::Candidate, program.clone(), &span).await {
            Ok(generation) => {
                if let Some(new) = st.proc(generation) {
                    span.record("corral.replace.new_pid", new.pid);
                }
                st.replacing = Some(Pending { generation, old_pid, reason, reply, span: span.clone() });
            }
            Err(e) => {
                refuse(reply, format!("cannot start a replacement for slot {slot} from {}: {e}", program.display()))
            }
        }
    }

    /// The candidate is ready: it becomes current; the old process drains.
    fn promote(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>, generation: u64) {
        let slot = st.args.slot;
        let old = st.procs.iter().find(|p| p.role == Role::Current && p.generation != generation).map(|p| p.generation);
        let Some(new) = st.proc_mut(generation) else { return };
        new.role = Role::Current;
        new.accepting.store(true, Ordering::Release);
        let (new_pid, tx) = (new.pid, new.tx.clone());
        st.args.routes.set(slot, Route { generation, tx });
        // The `replace` span goes on until the old process has exited (or ends here without one).
        let span = st.replacing.as_ref().map_or_else(Span::none, |p| p.span.clone());
        if let Some(old) = old
            && let Some(proc) = st.proc_mut(old)
        {
            proc.role = Role::Retiring;
            proc.draining = true;
            proc.spans.replace = Some(span.clone());
            self.drain(myself, st, old, &span);
        }
        st.state = WorkerState::Ready;
        st.args.listeners.readiness_changed();
        if let Some(pending) = st.replacing.take() {
            pending.span.in_scope(|| {
                tracing::info!(slot, old_pid = pending.old_pid, new_pid, generation, reason = ?pending.reason, "worker replaced");
            });
            if let Some(reply) = pending.reply {
                let _ = reply.send(Ok(Replaced { slot, old_pid: pending.old_pid, new_pid, generation }));
            }
        }
    }

    /// Answers a worker's listen request: binds (or shares) the address and registers the
    /// worker on it as the scheduling requires.
    async fn listen(&self, st: &mut SlotState<M, R>, generation: u64, id: u64, requested: &str) {
        let slot = st.args.slot;
        let Some(proc) = st.proc(generation) else { return };
        let listeners = st.args.listeners.clone();
        let scheduling = listeners.scheduling();
        let result = match listeners.listen(requested) {
            Err(error) => Err(error),
            Ok(listener) => {
                let granted = match scheduling {
                    Scheduling::RoundRobin | Scheduling::LeastConnections => {
                        listeners.register(
                            &listener,
                            Target {
                                slot,
                                generation,
                                listen_id: id,
                                channel: proc.handles.clone(),
                                ready: proc.accepting.clone(),
                                load: proc.load.clone(),
                            },
                        );
                        Ok(())
                    }
                    Scheduling::Shared => listeners
                        .send_listener(&listener, &proc.handles, id)
                        .await
                        .map_err(|e| format!("cannot pass the socket for {requested}: {e}")),
                    Scheduling::ReusePort => Ok(()),
                };
                granted.map(|()| (listener.addr, ListenGrant { addr: listener.addr.to_string(), scheduling }))
            }
        };
        match result {
            Ok((addr, grant)) => {
                send_control(proc, Control::ListenAck { id, result: Ok(grant) });
                st.args.bus.emit(ClusterEvent::Listening { slot, addr });
            }
            Err(error) => {
                tracing::error!(slot, %error, "listen failed");
                send_control(proc, Control::ListenAck { id, result: Err(error.clone()) });
                let _ = st.args.cluster.send_message(ClusterMsg::ListenFailed { slot, error });
            }
        }
    }

    /// The slot will not be restarted again; the cluster decides what follows.
    fn give_up(&self, st: &mut SlotState<M, R>) {
        let slot = st.args.slot;
        let restarts = st.intensity.count();
        st.state = WorkerState::GaveUp;
        tracing::error!(slot, restarts, "worker slot gave up");
        st.args.bus.emit(ClusterEvent::GaveUp { slot, restarts });
        let _ = st.args.cluster.send_message(ClusterMsg::SlotEnded { slot, outcome: SlotOutcome::GaveUp { restarts } });
    }

    /// Ends the lifecycle spans an exited process held: a start that had not come online
    /// failed (unless the process was told to drain), a drain is over, a replace is complete.
    fn close_spans(proc: &Proc<M>, spans: ProcSpans, status: ExitStatus, stopping: bool) {
        let ProcSpans { fork, restart, drain, replace } = spans;
        if !proc.draining && !stopping {
            for span in fork.iter().chain(restart.iter()) {
                match &proc.killed_because {
                    Some(why) => lifecycle::fail(span, why),
                    None => lifecycle::fail(span, format_args!("it {status} before it was online")),
                }
            }
        }
        if let Some(drain) = &drain {
            drain.record("corral.exit", tracing::field::display(status));
        }
        drop((fork, restart, drain, replace));
    }

    /// A process exited: forget it, and act by its role.
    fn exited(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>, generation: u64, status: ExitStatus) {
        let slot = st.args.slot;
        let Some(index) = st.procs.iter().position(|p| p.generation == generation) else { return };
        let mut proc = st.procs.remove(index);
        proc.accepting.store(false, Ordering::Release);
        st.args.listeners.unregister(slot, generation);
        let uptime = proc.started.elapsed();
        let spans = std::mem::take(&mut proc.spans);
        let none = Span::none();
        let scope = spans.drain.as_ref().or(spans.fork.as_ref()).unwrap_or(&none);
        scope.in_scope(|| tracing::info!(slot, pid = proc.pid, %status, ?uptime, role = ?proc.role, "worker exited"));
        Self::close_spans(&proc, spans, status, st.stopping);
        st.args.bus.emit(ClusterEvent::Exit {
            slot,
            pid: proc.pid,
            status,
            exited_after_disconnect: proc.draining || st.stopping,
        });
        match proc.role {
            Role::Retiring => {
                if st.stopping {
                    self.maybe_stopped(st);
                }
            }
            Role::Candidate => {
                if let Some(pending) = st.replacing.take() {
                    let why = proc.killed_because.clone().unwrap_or_else(|| format!("it {status} before it was ready"));
                    let error = format!("the replacement for slot {slot} (pid {}) failed: {why}", proc.pid);
                    lifecycle::fail(&pending.span, &error);
                    pending.span.in_scope(|| {
                        tracing::error!(slot, %error, "replacement failed; the old worker keeps serving");
                    });
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Err(error));
                    }
                }
                if st.stopping {
                    self.maybe_stopped(st);
                }
            }
            Role::Current => {
                st.args.routes.clear(slot, generation);
                // A candidate on its way takes over; no restart needed.
                if let Some(candidate) = st.procs.iter_mut().find(|p| p.role == Role::Candidate) {
                    candidate.role = Role::Current;
                    let (generation, tx, ready) = (candidate.generation, candidate.tx.clone(), candidate.ready);
                    st.args.routes.set(slot, Route { generation, tx });
                    if ready {
                        self.promote(myself, st, generation);
                    }
                    return;
                }
                if proc.fatal && !st.stopping {
                    self.give_up(st);
                    return;
                }
                // A worker that broke the protocol or never became ready died early, however
                // long it took to do so.
                let effective = if proc.protocol_error.is_some() || !proc.ready { Duration::ZERO } else { uptime };
                self.after_exit(myself, st, status, effective);
            }
        }
    }

    fn heartbeat(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>) {
        let slot = st.args.slot;
        let config = st.args.config.clone();
        let nonce = st.next_nonce;
        let replacing = st.replacing.is_some() || st.stopping;
        let Some(proc) = st.current_mut() else { return };
        if !proc.online || proc.draining {
            return;
        }
        match proc.ping {
            Some((_, sent)) if sent.elapsed() >= config.heartbeat_timeout => {
                tracing::error!(slot, pid = proc.pid, timeout = ?config.heartbeat_timeout, "worker missed its heartbeat; killing it");
                proc.ping = None;
                proc.killed_because = Some("it missed its heartbeat".into());
                signal(proc, Signal::SIGKILL);
                return;
            }
            Some(_) => {}
            None => {
                proc.ping = Some((nonce, Instant::now()));
                send_control(proc, Control::Ping { nonce });
                st.next_nonce += 1;
            }
        }
        // Memory: act on a sustained excess (two heartbeats in a row), not on a spike.
        let Some(proc) = st.current_mut() else { return };
        if let Some(limit) = config.max_memory
            && proc.ready
        {
            let rss = rss_bytes(proc.pid).unwrap_or(0);
            proc.over_memory = if rss > limit { proc.over_memory + 1 } else { 0 };
            if proc.over_memory >= 2 && !replacing {
                tracing::warn!(slot, pid = proc.pid, rss, limit, "worker over max_memory; recycling it");
                proc.over_memory = 0;
                let _ = myself.send_message(SupervisorMsg::Replace {
                    reason: ReplaceReason::MaxMemory,
                    parent: Span::none(),
                    reply: None,
                });
            }
        }
    }

    fn status(st: &SlotState<M, R>) -> WorkerStatus {
        let proc = st.current().or_else(|| st.procs.first());
        WorkerStatus {
            slot: st.args.slot,
            pid: proc.map(|p| p.pid),
            generation: proc.map_or(st.generation, |p| p.generation),
            state: st.state,
            uptime: proc.map(|p| p.started.elapsed()),
            restarts: st.restarts,
            rss_bytes: proc.and_then(|p| rss_bytes(p.pid)),
            messages_in: st.counters.messages_in.load(Ordering::Relaxed),
            messages_out: st.counters.messages_out.load(Ordering::Relaxed),
            stats: st.last_stats,
            heartbeat_latency: st.last_latency,
        }
    }
}

impl<M, R> Actor for WorkerSupervisor<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    type Msg = SupervisorMsg;
    type State = SlotState<M, R>;
    type Arguments = SupervisorArgs<M, R>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs<M, R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let intensity = RestartIntensity::new(args.config.max_restarts, args.config.period);
        let interval = args.config.heartbeat_interval;
        myself.send_interval(interval, || SupervisorMsg::Heartbeat);
        let _ = myself.send_message(SupervisorMsg::Start);
        Ok(SlotState {
            args,
            counters: Arc::new(SlotCounters::default()),
            generation: 0,
            procs: Vec::new(),
            replacing: None,
            state: WorkerState::Starting,
            attempt: 0,
            restart_span: None,
            intensity,
            restarts: 0,
            stopping: false,
            killed_while_stopping: Vec::new(),
            next_nonce: 0,
            last_stats: None,
            last_latency: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let slot = st.args.slot;
        match msg {
            SupervisorMsg::Start if st.current().is_none() && !st.stopping => {
                self.start_current(&myself, st).await;
            }
            SupervisorMsg::Replace { reason, parent, reply } => self.replace(&myself, st, reason, &parent, reply).await,
            SupervisorMsg::Online { generation } => {
                if let Some(proc) = st.proc_mut(generation) {
                    proc.online = true;
                    // The start is over: `fork` ends, and so does the `restart` behind it.
                    proc.spans.fork = None;
                    proc.spans.restart = None;
                    if proc.role == Role::Current && st.state == WorkerState::Starting {
                        st.state = WorkerState::Online;
                    }
                }
            }
            SupervisorMsg::Ready { generation } => {
                let stopping = st.stopping;
                let Some(proc) = st.proc_mut(generation) else { return Ok(()) };
                proc.ready = true;
                let (role, draining) = (proc.role, proc.draining);
                match role {
                    Role::Candidate if !stopping => self.promote(&myself, st, generation),
                    Role::Current if !stopping && !draining => {
                        proc.accepting.store(true, Ordering::Release);
                        st.state = WorkerState::Ready;
                        st.args.listeners.readiness_changed();
                        if st.replacing.as_ref().is_some_and(|p| p.generation == generation) {
                            // The old process died while this one started: it took over
                            // already; the reload of this slot is done.
                            self.promote(&myself, st, generation);
                        }
                    }
                    _ => {}
                }
            }
            SupervisorMsg::Listen { generation, id, addr } => self.listen(st, generation, id, &addr).await,
            SupervisorMsg::Pong { generation, nonce, stats } => {
                let Some(proc) = st.procs.iter_mut().find(|p| p.generation == generation) else { return Ok(()) };
                let mut recycle = false;
                if let Some((sent_nonce, sent)) = proc.ping
                    && sent_nonce == nonce
                {
                    st.last_latency = Some(sent.elapsed());
                    proc.ping = None;
                }
                if proc.role == Role::Current {
                    st.last_stats = Some(stats);
                    if let Some(limit) = proc.request_limit
                        && stats.handled >= limit
                        && proc.ready
                    {
                        proc.request_limit = None;
                        recycle = true;
                        tracing::info!(
                            slot,
                            pid = proc.pid,
                            handled = stats.handled,
                            limit,
                            "max_requests reached; recycling"
                        );
                    }
                }
                if recycle && st.replacing.is_none() && !st.stopping {
                    self.replace(&myself, st, ReplaceReason::MaxRequests, &Span::none(), None).await;
                }
            }
            SupervisorMsg::Draining { generation } => {
                if let Some(proc) = st.proc_mut(generation) {
                    proc.draining = true;
                    proc.accepting.store(false, Ordering::Release);
                    if proc.role == Role::Current {
                        st.state = WorkerState::Stopping;
                    }
                }
            }
            SupervisorMsg::ReaderEnded { generation, error: Some(error), fatal } => {
                let Some(proc) = st.proc_mut(generation) else { return Ok(()) };
                let pid = proc.pid;
                tracing::error!(slot, pid, %error, "worker broke the protocol; killing it");
                proc.protocol_error = Some(error.clone());
                proc.killed_because = Some(format!("it broke the protocol: {error}"));
                proc.fatal = fatal;
                signal(proc, Signal::SIGKILL);
                st.args.bus.emit(ClusterEvent::ProtocolError { slot, pid, error });
            }
            SupervisorMsg::Exited { generation, status } => self.exited(&myself, st, generation, status),
            SupervisorMsg::StartTimeout { generation } => {
                let timeout = st.args.config.listen_timeout;
                if let Some(proc) = st.proc_mut(generation)
                    && !proc.ready
                    && !proc.draining
                {
                    tracing::error!(slot, pid = proc.pid, ?timeout, "worker did not become ready in time; killing it");
                    proc.killed_because = Some(format!("it did not become ready within {timeout:?}"));
                    signal(proc, Signal::SIGKILL);
                }
            }
            SupervisorMsg::KillTimeout { generation } => {
                let timeout = st.args.config.kill_timeout;
                let stopping = st.stopping;
                if let Some(proc) = st.proc_mut(generation) {
                    let scope = proc.spans.drain.clone().unwrap_or_else(Span::none);
                    scope.record("corral.killed", true);
                    scope.in_scope(|| {
                        tracing::warn!(slot, pid = proc.pid, ?timeout, "worker did not drain in time; killing it");
                    });
                    proc.killed_because = Some(format!("it did not drain within {timeout:?}"));
                    signal(proc, Signal::SIGKILL);
                    if stopping {
                        let pid = proc.pid;
                        st.killed_while_stopping.push(pid);
                    }
                }
            }
            SupervisorMsg::Heartbeat => self.heartbeat(&myself, st),
            SupervisorMsg::Stop(parent) => {
                st.stopping = true;
                // A restart waiting for its delay will not happen.
                st.restart_span = None;
                if let Some(pending) = st.replacing.take() {
                    let why = format!("slot {slot} is stopping");
                    lifecycle::fail(&pending.span, &why);
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Err(why));
                    }
                }
                let live: Vec<u64> = st.procs.iter().filter(|p| !p.draining).map(|p| p.generation).collect();
                for generation in live {
                    if let Some(proc) = st.proc_mut(generation) {
                        proc.draining = true;
                    }
                    self.drain(&myself, st, generation, &parent);
                }
                if st.current().is_some() {
                    st.state = WorkerState::Stopping;
                }
                self.maybe_stopped(st);
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(Self::status(st));
            }
            // A message about a process that has already gone, or a start while one runs.
            _ => {}
        }
        Ok(())
    }
}
