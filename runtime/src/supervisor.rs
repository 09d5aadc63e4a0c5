//! `WorkerSupervisor`: the actor that owns one worker slot.
//!
//! It starts the slot's process, watches it (hello, readiness, heartbeats, exit) and applies
//! the restart policy one-for-one: the restart type decides whether to restart, the backoff
//! how long to wait, the intensity window whether to give up. It reports the end of the slot
//! to the [`Cluster`](crate::Cluster) and leaves the escalation to it.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_protocol::{
    Control, FrameCodec, HandleChannel, ListenGrant, Outgoing, Scheduling, WorkerStats, seqpacket_pair, stream_pair,
};
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{ClusterMsg, SlotOutcome};
use crate::conn::{ProcessCommand, ReaderCtx, SlotCounters, run_reader, run_waiter, run_writer};
use crate::events::EventBus;
use crate::listener::{Listeners, Load, Target};
use crate::routes::{Route, Routes};
use crate::spawn::{SpawnSpec, rss_bytes, spawn_worker};
use crate::{ClusterConfig, ClusterEvent, ExitStatus, RestartIntensity, WorkerExec, WorkerState, WorkerStatus};

/// Messages of a [`WorkerSupervisor`].
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Start the slot's process (first start and every restart).
    Start,
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
    /// Time to ping (and to check the last ping was answered).
    Heartbeat,
    /// Stop the slot: drain the process, do not restart.
    Stop,
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
    pub(crate) program: std::path::PathBuf,
    pub(crate) argv0: Option<std::ffi::OsString>,
    pub(crate) args: Vec<std::ffi::OsString>,
}

/// The process currently filling the slot.
struct Running {
    pid: u32,
    generation: u64,
    started: Instant,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    ready: bool,
    online: bool,
    protocol_error: Option<String>,
    /// A protocol error that restarting cannot fix (version mismatch).
    fatal: bool,
    /// When the unanswered ping was sent, and its nonce.
    ping: Option<(u64, Instant)>,
    /// The primary's end of the handle channel (connections and listeners go through it).
    handles: Arc<HandleChannel>,
    /// Whether listeners may dispatch connections to this process (ready, not draining).
    accepting: Arc<AtomicBool>,
    /// Open connections, as the worker reports them.
    load: Arc<Load>,
}

/// The supervisor's state.
pub struct SlotState<M, R> {
    args: SupervisorArgs<M, R>,
    counters: Arc<SlotCounters>,
    generation: u64,
    running: Option<Running>,
    state: WorkerState,
    /// Consecutive early deaths (the backoff exponent).
    attempt: u32,
    intensity: RestartIntensity,
    restarts: u64,
    stopping: bool,
    next_nonce: u64,
    last_stats: Option<WorkerStats>,
    last_latency: Option<Duration>,
}

impl<M, R> WorkerSupervisor<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    async fn start_process(&self, myself: &ActorRef<SupervisorMsg>, st: &mut SlotState<M, R>) {
        if st.stopping {
            return;
        }
        st.generation += 1;
        let generation = st.generation;
        let slot = st.args.slot;
        match self.launch(myself, st, generation).await {
            Ok(()) => {
                st.state = WorkerState::Starting;
                let timeout = st.args.config.listen_timeout;
                myself.send_after(timeout, move || SupervisorMsg::StartTimeout { generation });
            }
            Err(e) => {
                tracing::error!(slot, error = %e, "cannot start worker process");
                // Counted as an early death, so that a broken executable hits the intensity
                // limit instead of looping.
                self.after_exit(myself, st, ExitStatus { code: None, signal: None }, Duration::ZERO);
            }
        }
    }

    async fn launch(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        st: &mut SlotState<M, R>,
        generation: u64,
    ) -> std::io::Result<()> {
        let slot = st.args.slot;
        let config = &st.args.config;
        let stream = stream_pair().map_err(std::io::Error::other)?;
        let handles = seqpacket_pair().map_err(std::io::Error::other)?;
        let boot = WorkerBootstrap {
            slot: slot as u32,
            generation,
            primary_pid: std::process::id(),
            max_frame_length: config.max_frame_length,
        };
        let spec = SpawnSpec {
            program: st.args.program.clone(),
            argv0: st.args.argv0.clone(),
            args: st.args.args.clone(),
            env: config.env.clone(),
            boot,
            ipc: stream.worker,
            handles: handles.worker,
        };
        let child = spawn_worker(spec).await?;
        let pid = child.id().unwrap_or(0);

        let ipc = std::os::unix::net::UnixStream::from(stream.primary);
        ipc.set_nonblocking(true)?;
        let (read, write) = tokio::net::UnixStream::from_std(ipc)?.into_split();
        // The handle channel carries listeners and connections (see the listener module);
        // it is kept open for the life of the process.
        let handle_channel = Arc::new(HandleChannel::new(handles.primary).map_err(std::io::Error::other)?);

        let (tx, rx) = mpsc::channel::<Outgoing<M>>(config.send_buffer);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        // Route, state and fork event first: the reader's events (online, ready) must find
        // them in place.
        let load = Arc::new(Load::default());
        st.args.routes.set(slot, Route { generation, tx });
        st.running = Some(Running {
            pid,
            generation,
            started: Instant::now(),
            commands: cmd_tx,
            ready: false,
            online: false,
            protocol_error: None,
            fatal: false,
            ping: None,
            handles: handle_channel,
            accepting: Arc::new(AtomicBool::new(false)),
            load: load.clone(),
        });
        tracing::info!(slot, generation, pid, "worker started");
        st.args.bus.emit(ClusterEvent::Fork { slot, generation, pid });

        let max = config.max_frame_length;
        tokio::spawn(run_writer(write, FrameCodec::<M, R>::new(max), rx, st.counters.clone(), slot));
        let reader_cx = ReaderCtx {
            load: load.clone(),
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

        Ok(())
    }

    /// Decides what follows an exit: nothing (stopping, or not restarted by type), a restart
    /// after a delay, or giving up.
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
            st.state = WorkerState::Stopped;
            let _ = st.args.cluster.send_message(ClusterMsg::SlotEnded { slot, outcome: SlotOutcome::Stopped });
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
        tracing::warn!(slot, %status, ?delay, attempt = st.attempt, "restarting worker");
        st.args.bus.emit(ClusterEvent::Restarting { slot, delay, attempt: st.attempt });
        if delay.is_zero() {
            let _ = myself.send_message(SupervisorMsg::Start);
        } else {
            myself.send_after(delay, || SupervisorMsg::Start);
        }
    }

    /// Answers a worker's listen request: binds (or shares) the address and registers the
    /// worker on it as the scheduling requires.
    async fn listen(&self, st: &mut SlotState<M, R>, id: u64, requested: &str) {
        let slot = st.args.slot;
        let Some(run) = st.running.as_ref() else { return };
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
                                generation: run.generation,
                                listen_id: id,
                                channel: run.handles.clone(),
                                ready: run.accepting.clone(),
                                load: run.load.clone(),
                            },
                        );
                        Ok(())
                    }
                    Scheduling::Shared => listeners
                        .send_listener(&listener, &run.handles, id)
                        .await
                        .map_err(|e| format!("cannot pass the socket for {requested}: {e}")),
                    Scheduling::ReusePort => Ok(()),
                };
                granted.map(|()| (listener.addr, ListenGrant { addr: listener.addr.to_string(), scheduling }))
            }
        };
        match result {
            Ok((addr, grant)) => {
                Self::send_control(st, Control::ListenAck { id, result: Ok(grant) });
                st.args.bus.emit(ClusterEvent::Listening { slot, addr });
            }
            Err(error) => {
                tracing::error!(slot, %error, "listen failed");
                Self::send_control(st, Control::ListenAck { id, result: Err(error.clone()) });
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

    fn signal(st: &SlotState<M, R>, sig: Signal) {
        if let Some(run) = &st.running {
            let _ = run.commands.send(ProcessCommand::Signal(sig));
        }
    }

    fn send_control(st: &SlotState<M, R>, control: Control) -> bool {
        match st.args.routes.get(st.args.slot).flatten() {
            Some(route) if Some(route.generation) == st.running.as_ref().map(|r| r.generation) => {
                route.tx.try_send(Outgoing::control(control)).is_ok()
            }
            _ => false,
        }
    }

    fn status(st: &SlotState<M, R>) -> WorkerStatus {
        let run = st.running.as_ref();
        WorkerStatus {
            slot: st.args.slot,
            pid: run.map(|r| r.pid),
            generation: st.generation,
            state: st.state,
            uptime: run.map(|r| r.started.elapsed()),
            restarts: st.restarts,
            rss_bytes: run.and_then(|r| rss_bytes(r.pid)),
            messages_in: st.counters.messages_in.load(Ordering::Relaxed),
            messages_out: st.counters.messages_out.load(Ordering::Relaxed),
            stats: st.last_stats,
            heartbeat_latency: st.last_latency,
        }
    }
}

fn current(st_generation: Option<u64>, generation: u64) -> bool {
    st_generation == Some(generation)
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
            running: None,
            state: WorkerState::Starting,
            attempt: 0,
            intensity,
            restarts: 0,
            stopping: false,
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
        let live = st.running.as_ref().map(|r| r.generation);
        match msg {
            SupervisorMsg::Start if st.running.is_none() && !st.stopping => {
                self.start_process(&myself, st).await;
            }
            SupervisorMsg::Online { generation } if current(live, generation) => {
                if let Some(run) = st.running.as_mut() {
                    run.online = true;
                }
                if st.state == WorkerState::Starting {
                    st.state = WorkerState::Online;
                }
            }
            SupervisorMsg::Ready { generation } if current(live, generation) => {
                if let Some(run) = st.running.as_mut() {
                    run.ready = true;
                    if !st.stopping {
                        run.accepting.store(true, Ordering::Release);
                    }
                }
                if !st.stopping {
                    st.state = WorkerState::Ready;
                    st.args.listeners.readiness_changed();
                }
            }
            SupervisorMsg::Listen { generation, id, addr } if current(live, generation) => {
                self.listen(st, id, &addr).await;
            }
            SupervisorMsg::Pong { generation, nonce, stats } if current(live, generation) => {
                st.last_stats = Some(stats);
                if let Some(run) = st.running.as_mut()
                    && let Some((sent_nonce, sent)) = run.ping
                    && sent_nonce == nonce
                {
                    st.last_latency = Some(sent.elapsed());
                    run.ping = None;
                }
            }
            SupervisorMsg::Draining { generation } if current(live, generation) => {
                st.state = WorkerState::Stopping;
                if let Some(run) = &st.running {
                    run.accepting.store(false, Ordering::Release);
                }
            }
            SupervisorMsg::ReaderEnded { generation, error: Some(error), fatal } if current(live, generation) => {
                let pid = st.running.as_ref().map_or(0, |r| r.pid);
                tracing::error!(slot, pid, %error, "worker broke the protocol; killing it");
                st.args.bus.emit(ClusterEvent::ProtocolError { slot, pid, error: error.clone() });
                if let Some(run) = st.running.as_mut() {
                    run.protocol_error = Some(error);
                    run.fatal = fatal;
                }
                Self::signal(st, Signal::SIGKILL);
            }
            SupervisorMsg::Exited { generation, status } if current(live, generation) => {
                // `live` is Some, so `running` is too.
                let Some(run) = st.running.take() else {
                    return Ok(());
                };
                st.args.routes.clear(slot, generation);
                run.accepting.store(false, Ordering::Release);
                st.args.listeners.unregister(slot, generation);
                let uptime = run.started.elapsed();
                tracing::info!(slot, pid = run.pid, %status, ?uptime, "worker exited");
                st.args.bus.emit(ClusterEvent::Exit {
                    slot,
                    pid: run.pid,
                    status,
                    exited_after_disconnect: st.stopping,
                });
                // A worker that broke the protocol or never became ready died early, however
                // long it took to do so.
                let effective_uptime = if run.protocol_error.is_some() || !run.ready { Duration::ZERO } else { uptime };
                if run.fatal && !st.stopping {
                    self.give_up(st);
                } else {
                    self.after_exit(&myself, st, status, effective_uptime);
                }
            }
            SupervisorMsg::StartTimeout { generation }
                if current(live, generation) && st.running.as_ref().is_some_and(|r| !r.ready) && !st.stopping =>
            {
                tracing::error!(slot, timeout = ?st.args.config.listen_timeout, "worker did not become ready in time; killing it");
                Self::signal(st, Signal::SIGKILL);
            }
            SupervisorMsg::KillTimeout { generation } if current(live, generation) => {
                let pid = st.running.as_ref().map_or(0, |r| r.pid);
                tracing::warn!(slot, pid, timeout = ?st.args.config.kill_timeout, "worker did not drain in time; killing it");
                Self::signal(st, Signal::SIGKILL);
            }
            SupervisorMsg::Heartbeat => {
                let timeout = st.args.config.heartbeat_timeout;
                let nonce = st.next_nonce;
                let Some(run) = st.running.as_mut() else {
                    return Ok(());
                };
                if !run.online {
                    return Ok(());
                }
                match run.ping {
                    Some((_, sent)) if sent.elapsed() >= timeout => {
                        tracing::error!(slot, pid = run.pid, ?timeout, "worker missed its heartbeat; killing it");
                        run.ping = None;
                        Self::signal(st, Signal::SIGKILL);
                    }
                    Some(_) => {}
                    None => {
                        run.ping = Some((nonce, Instant::now()));
                        st.next_nonce += 1;
                        Self::send_control(st, Control::Ping { nonce });
                    }
                }
            }
            SupervisorMsg::Stop => {
                st.stopping = true;
                match &st.running {
                    None => {
                        if st.state != WorkerState::Stopped {
                            st.state = WorkerState::Stopped;
                            let _ = st
                                .args
                                .cluster
                                .send_message(ClusterMsg::SlotEnded { slot, outcome: SlotOutcome::Stopped });
                        }
                    }
                    Some(run) => {
                        let generation = run.generation;
                        // No new connection goes to a draining worker.
                        run.accepting.store(false, Ordering::Release);
                        st.state = WorkerState::Stopping;
                        let timeout = st.args.config.kill_timeout;
                        let deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                        if !Self::send_control(st, Control::Shutdown { deadline_ms }) {
                            // No channel to the worker: its SIGTERM handler drains instead.
                            Self::signal(st, Signal::SIGTERM);
                        }
                        myself.send_after(timeout, move || SupervisorMsg::KillTimeout { generation });
                    }
                }
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(Self::status(st));
            }
            // A message about a process generation that has already gone.
            _ => {}
        }
        Ok(())
    }
}

/// Where the worker processes come from: program, argv\[0\] and arguments.
pub(crate) fn worker_command(
    exec: &WorkerExec,
) -> (std::path::PathBuf, Option<std::ffi::OsString>, Vec<std::ffi::OsString>) {
    match exec {
        WorkerExec::CurrentExe => {
            let mut args = std::env::args_os();
            let argv0 = args.next();
            // /proc/self/exe is the primary's own image even after the file on disk was
            // replaced or deleted, so a crash restart runs the same code as its siblings.
            (std::path::PathBuf::from("/proc/self/exe"), argv0, args.collect())
        }
        WorkerExec::Program { path, args } => (path.clone(), None, args.clone()),
    }
}
