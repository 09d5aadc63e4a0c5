//! The primary's side of one worker process: starting it, and the I/O tasks that run beside
//! it, each reporting what happens as a [`ProcessEvent`] through a channel to the slot (a
//! [`Reports`] sink), never to an actor by name.
//!
//! Two kinds of worker: a **corral** worker speaks corral's protocol on fds 3 and 4 (frame
//! reader, frame writer, waiter, output capture); a **foreign** one (any program) gets its
//! listening sockets by socket activation and talks through a `NOTIFY_SOCKET` (notify
//! reader, waiter, output capture).
//!
//! Its health, beyond what it says itself, is checked from outside by [`probe`]: readiness and
//! liveness probes of that one process through its listener.
//!
//! Starting is two steps, so that the slot can put the process in its books (route, state,
//! `fork` event) before any of its events can arrive: [`start`] forks, [`Io::run`] starts the
//! tasks.

mod activation;
mod counters;
mod error;
mod event;
mod handover;
mod notice;
mod notify;
mod output;
pub(crate) mod probe;
mod reader;
pub(crate) mod reaper;
mod spawn;
mod waiter;
mod writer;

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_protocol::death_notice::DeathNotice;
use corral_protocol::{
    Control, FrameCodec, HandleChannel, Outgoing, PendingCalls, ReplySink, reply_sink, seqpacket_pair, stream_pair,
};
use nix::sys::signal::Signal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) use counters::SlotCounters;
pub(crate) use event::{ProcessEvent, ProcessEventKind, Reports};
use handover::{Giver, Parts, Taker};
use reader::ReaderStart;
pub(crate) use spawn::on_spawner_thread_with;
use waiter::ProcessCommand;
pub(crate) use waiter::Waitee;

use crate::api::events::OutputStream;
use crate::api::events::bus::EventBus;
use crate::config::cluster::{ClusterConfig, WorkerOutput};
use crate::config::foreign::{ForeignWorker, Readiness};
use crate::process::error::LaunchError;
use crate::routing::balance::{Load, Untaken};

/// What to start.
pub(crate) struct StartSpec<'a> {
    pub slot: usize,
    pub generation: u64,
    pub program: PathBuf,
    pub argv0: Option<OsString>,
    pub args: Vec<OsString>,
    pub config: &'a ClusterConfig,
    /// For a foreign worker: its listening sockets, their names, and the cluster's size.
    pub activation: Option<Activation>,
}

/// The sockets a foreign worker gets.
pub(crate) struct Activation {
    pub listeners: Vec<OwnedFd>,
    pub names: String,
    pub workers: usize,
}

/// How a process is asked to drain and killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A corral worker: a shutdown frame, SIGKILL to the process.
    Corral,
    /// A foreign worker: its stop signal, SIGKILL to its whole process group.
    Foreign { stop_signal: Signal },
}

/// The primary's handle on a running worker process.
pub(crate) struct Process<M> {
    pub pid: u32,
    kind: Kind,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    /// The process's writer queue (its route, for the slot's current process). A foreign
    /// worker's queue has no reader: sends to it fail.
    pub tx: mpsc::Sender<Outgoing<M>>,
    /// The channel connections and listening sockets are passed on (corral workers).
    pub handles: Option<Arc<HandleChannel>>,
    /// Its load, as it reports it.
    pub load: Arc<Load>,
    /// The connections handed to it that it has not taken yet (corral workers).
    pub untaken: Arc<Untaken>,
    /// Calls to it awaiting its reply (a foreign worker's table is closed: it cannot answer).
    pub calls: Arc<PendingCalls>,
    /// Stops its tasks for a handover to the primary's next image.
    taker: Taker,
}

/// A process handed over by its tasks (see [`Process::hand_over`]): everything the primary's
/// next image needs to take it over.
pub(crate) struct HandedProcess {
    pub pid: u32,
    /// A corral worker's handle channel (connections and listeners are passed on it).
    pub handles: Option<OwnedFd>,
    /// Datagrams sent on the handle channel so far (the worker's acknowledgements count them).
    pub handles_sent: u64,
    pub parts: Parts,
}

impl<M> Process<M> {
    /// Where the slot's messages and calls go while this process is its current one.
    pub(crate) fn route(&self, generation: u64) -> crate::routing::messages::Route<M> {
        crate::routing::messages::Route { generation, tx: self.tx.clone(), calls: self.calls.clone() }
    }

    /// Whether it speaks corral's protocol (heartbeats by ping, listen requests).
    pub(crate) fn speaks_corral(&self) -> bool {
        self.kind == Kind::Corral
    }

    /// Sends the process a signal (through its waiter: never to a reaped, reused pid).
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = self.commands.send(ProcessCommand::Signal(signal));
    }

    /// Kills it: SIGKILL to a corral worker, to a foreign worker's whole process group.
    pub(crate) fn kill(&self) {
        let command = match self.kind {
            Kind::Corral => ProcessCommand::Signal(Signal::SIGKILL),
            Kind::Foreign { .. } => ProcessCommand::SignalGroup(Signal::SIGKILL),
        };
        let _ = self.commands.send(command);
    }

    /// The process is dying unasked: its teardown yields the CPU to the processes serving in
    /// its place (`SCHED_IDLE`, set by its waiter, never on a reaped pid).
    pub(crate) fn yield_to_the_living(&self) {
        let _ = self.commands.send(ProcessCommand::YieldToTheLiving);
    }

    /// Diagnoses what the process is doing (at most about
    /// [`hang::BUDGET`](crate::sys::hang::BUDGET)), reported as [`ProcessEventKind::Hung`],
    /// and leaves it running; what is asked of it next waits for the diagnosis.
    pub(crate) fn diagnose(&self) {
        let _ = self.commands.send(ProcessCommand::Diagnose);
    }

    /// Kills it as [`kill`](Self::kill) does, after a diagnosis of what it is doing (at most
    /// about [`hang::BUDGET`](crate::sys::hang::BUDGET)), reported as [`ProcessEventKind::Hung`].
    pub(crate) fn diagnose_and_kill(&self) {
        let _ = self.commands.send(ProcessCommand::DiagnoseThenKill { group: !self.speaks_corral() });
    }

    /// Asks it to drain within `deadline_ms`: a shutdown frame (SIGTERM when the frame cannot
    /// be queued) to a corral worker, the stop signal to a foreign one.
    pub(crate) fn ask_to_drain(&self, deadline_ms: u64) {
        match self.kind {
            Kind::Corral if self.send_control(Control::Shutdown { deadline_ms }) => {}
            Kind::Corral => self.signal(Signal::SIGTERM),
            Kind::Foreign { stop_signal } => self.signal(stop_signal),
        }
    }

    /// Stops the process's tasks at a boundary and takes back every fd they hold, leaving the
    /// process running, unsignalled and unreaped, for the primary's next image.
    ///
    /// # Errors
    ///
    /// A task did not stop within `patience`, or the process is exiting (its reader or
    /// waiter ended before).
    pub(crate) async fn hand_over(&mut self, patience: std::time::Duration) -> io::Result<HandedProcess> {
        let parts = self.taker.take(patience).await?;
        let corral = self.kind == Kind::Corral;
        if !parts.waited || (corral && parts.ipc.is_none()) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the process is exiting"));
        }
        let handles = match &self.handles {
            Some(channel) => Some(std::os::fd::AsFd::as_fd(channel.as_ref()).try_clone_to_owned()?),
            None => None,
        };
        let handles_sent = self.handles.as_ref().map_or(0, |c| c.sent());
        // The next image keeps no copy of what is still untaken; the worker takes it anyway.
        self.untaken.stop();
        Ok(HandedProcess { pid: self.pid, handles, handles_sent, parts })
    }

    /// Queues a control frame; `false` when the queue is full or closed.
    pub(crate) fn send_control(&self, control: Control) -> bool {
        self.tx.try_send(Outgoing::control(control)).is_ok()
    }
}

/// Captured output pipes, each with what an earlier image read of an unfinished line.
type Captured = Vec<(OutputStream, OwnedFd, Vec<u8>)>;

/// The tasks of a started process, not yet running.
pub(crate) struct Io<M> {
    slot: usize,
    generation: u64,
    pid: u32,
    child: Waitee,
    /// Captured output pipes (and what an earlier image read of an unfinished line).
    output: Captured,
    commands: mpsc::UnboundedReceiver<ProcessCommand>,
    channel: IoChannel<M>,
    giver: Giver,
    /// The read end of a corral worker's hang-report pipe.
    hang: Option<OwnedFd>,
    /// The tree's program the process belongs to, for its output lines.
    program: Option<Arc<str>>,
}

/// How a process talks to the primary.
enum IoChannel<M> {
    Corral {
        ipc: tokio::net::UnixStream,
        start: ReaderStart,
        outgoing: mpsc::Receiver<Outgoing<M>>,
        load: Arc<Load>,
        /// Where the requests it sends are answered: its own queue.
        replies: Arc<dyn ReplySink>,
        /// Our calls to it, answered by its replies.
        calls: Arc<PendingCalls>,
        max_frame_length: usize,
        hello_timeout: std::time::Duration,
        /// When the hello is due (forked + `hello_timeout`).
        hello_deadline: tokio::time::Instant,
    },
    Foreign {
        notify: notify::NotifySocket,
        ready: Readiness,
        adopted: bool,
        /// The inodes of the listening sockets it was given.
        given: Arc<[u64]>,
    },
}

/// Forks a worker process with its IPC ends (or its sockets, for a foreign worker) in place.
///
/// # Errors
///
/// The socket pairs cannot be made, or the process cannot be started.
pub(crate) async fn start<M: Send + 'static>(spec: StartSpec<'_>) -> io::Result<(Process<M>, Io<M>)> {
    if let Some(foreign) = spec.config.exec.foreign() {
        return start_foreign(spec.config, foreign, spec.slot, spec.generation, spec.activation).await;
    }
    let config = spec.config;
    let stream = stream_pair().map_err(io::Error::other)?;
    let handles = seqpacket_pair().map_err(io::Error::other)?;
    let (hang_read, hang_write) = hang_pipe()?;
    let mut notice = notice::make(spec.slot);
    let notice_fd = notice.as_mut().and_then(DeathNotice::take_fd);
    let boot = WorkerBootstrap {
        slot: spec.slot as u32,
        generation: spec.generation,
        primary_pid: std::process::id(),
        max_frame_length: config.max_frame_length,
        cpu_threads: config.effective_cpu_threads(),
    };
    let forked = tokio::time::Instant::now();
    let child = spawn::spawn_worker(spawn::SpawnSpec {
        program: spec.program,
        argv0: spec.argv0,
        args: spec.args,
        env: config.env.clone(),
        boot,
        ipc: stream.worker,
        handles: handles.worker,
        hang: Some(hang_write),
        notice: notice_fd,
        capture_output: config.output == WorkerOutput::Capture,
    })
    .await?;
    let pid = child.id().unwrap_or(0);
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (giver, taker) = handover::pair();
    let ends = CorralEnds {
        ipc: stream.primary,
        handles: handles.primary,
        handles_sent: 0,
        start: ReaderStart::Fresh { notice },
        since: forked,
    };
    let (process, channel) = corral_channel(pid, ends, commands_tx, taker, config)?;
    let (child, output) = child_output(child)?;
    let io = Io {
        slot: spec.slot,
        generation: spec.generation,
        pid,
        child,
        output,
        commands,
        channel,
        giver,
        hang: Some(hang_read),
        program: program_of(config),
    };
    Ok((process, io))
}

/// A close-on-exec pipe for hang reports: (read end, write end).
fn hang_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the 2-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both fds; each is owned exactly once from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The primary's ends of a corral worker's channels, and where its reader starts.
struct CorralEnds {
    ipc: OwnedFd,
    handles: OwnedFd,
    /// Datagrams sent on `handles` already (by an earlier image); 0 for a fresh process.
    handles_sent: u64,
    start: ReaderStart,
    /// The hello is due `listen_timeout` after this (the fork).
    since: tokio::time::Instant,
}

/// A corral worker's process handle and its I/O channel, on the primary's ends.
fn corral_channel<M: Send + 'static>(
    pid: u32,
    ends: CorralEnds,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    taker: Taker,
    config: &ClusterConfig,
) -> io::Result<(Process<M>, IoChannel<M>)> {
    let ipc = std::os::unix::net::UnixStream::from(ends.ipc);
    ipc.set_nonblocking(true)?;
    let ipc = tokio::net::UnixStream::from_std(ipc)?;
    let handles = Arc::new(HandleChannel::unwatched(ends.handles, ends.handles_sent).map_err(io::Error::other)?);
    let untaken = Arc::new(Untaken::resumed(ends.handles_sent));
    tokio::spawn(untaken.clone().watch(handles.clone()));
    let (tx, outgoing) = mpsc::channel(config.send_buffer);
    let load = Arc::new(Load::default());
    let calls = PendingCalls::new();
    let replies = reply_sink(&tx);
    let process = Process {
        pid,
        kind: Kind::Corral,
        commands,
        tx,
        handles: Some(handles),
        load: load.clone(),
        untaken,
        calls: calls.clone(),
        taker,
    };
    let channel = IoChannel::Corral {
        ipc,
        start: ends.start,
        outgoing,
        load,
        replies,
        calls,
        max_frame_length: config.max_frame_length,
        hello_timeout: config.listen_timeout,
        hello_deadline: ends.since + config.listen_timeout,
    };
    Ok((process, channel))
}

/// A foreign worker's process handle.
fn foreign_process<M>(
    pid: u32,
    stop_signal: Signal,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    taker: Taker,
) -> Process<M> {
    // Nobody reads this queue: sends fail at once, and a drain uses the stop signal.
    let (tx, _) = mpsc::channel(1);
    let calls = PendingCalls::new();
    calls.close();
    Process {
        pid,
        kind: Kind::Foreign { stop_signal },
        commands,
        tx,
        handles: None,
        load: Arc::new(Load::default()),
        untaken: Arc::new(Untaken::default()),
        calls,
        taker,
    }
}

/// The child's captured output pipes, as fds.
fn child_output(mut child: Child) -> io::Result<(Waitee, Captured)> {
    let mut output = Vec::new();
    if let Some(out) = child.stdout.take() {
        output.push((OutputStream::Stdout, out.into_owned_fd()?, Vec::new()));
    }
    if let Some(err) = child.stderr.take() {
        output.push((OutputStream::Stderr, err.into_owned_fd()?, Vec::new()));
    }
    let known = crate::sys::children::Known::new(child.id().unwrap_or(0));
    Ok((Waitee::Child(child, known), output))
}

/// A process of the primary's previous image, to take over (see [`adopt`]).
pub(crate) struct AdoptSpec {
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
    pub channel: AdoptChannel,
    pub stdout: Option<(OwnedFd, Vec<u8>)>,
    pub stderr: Option<(OwnedFd, Vec<u8>)>,
}

/// How a taken-over process talks to the primary.
pub(crate) enum AdoptChannel {
    /// A corral worker: its IPC stream (and what was read of the next frame), its handle
    /// channel and how many datagrams were sent on it.
    Corral { ipc: OwnedFd, leftover: Vec<u8>, handles: OwnedFd, handles_sent: u64 },
    /// A foreign worker: its notify socket.
    Foreign { notify: OwnedFd },
}

/// Takes over a running worker the primary's previous image handed over: the same tasks as
/// for a process this image forked, on the same fds, from where the old ones stopped; the
/// process is ready (it was, to be handed over).
///
/// # Errors
///
/// The process is gone already, or an fd cannot be registered with the runtime.
pub(crate) fn adopt<M: Send + 'static>(spec: AdoptSpec, config: &ClusterConfig) -> io::Result<(Process<M>, Io<M>)> {
    let AdoptSpec { slot, generation, pid, channel, stdout, stderr } = spec;
    let child = Waitee::adopt(pid)?;
    let mut output = Vec::new();
    if let Some((fd, leftover)) = stdout {
        output.push((OutputStream::Stdout, fd, leftover));
    }
    if let Some((fd, leftover)) = stderr {
        output.push((OutputStream::Stderr, fd, leftover));
    }
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (giver, taker) = handover::pair();
    let (process, channel) = match channel {
        AdoptChannel::Corral { ipc, leftover, handles, handles_sent } => {
            let start = ReaderStart::Adopted { leftover };
            let ends = CorralEnds { ipc, handles, handles_sent, start, since: tokio::time::Instant::now() };
            corral_channel(pid, ends, commands_tx, taker, config)?
        }
        AdoptChannel::Foreign { notify } => {
            let notify = notify::NotifySocket::adopt(std::os::unix::net::UnixDatagram::from(notify))?;
            let (stop_signal, ready) = match config.exec.foreign() {
                Some(f) => (Signal::try_from(f.stop_signal).unwrap_or(Signal::SIGTERM), f.ready.clone()),
                None => (Signal::SIGTERM, Readiness::Notify),
            };
            let process = foreign_process(pid, stop_signal, commands_tx, taker);
            (process, IoChannel::Foreign { notify, ready, adopted: true, given: Arc::from([]) })
        }
    };
    Ok((
        process,
        Io { slot, generation, pid, child, output, commands, channel, giver, hang: None, program: program_of(config) },
    ))
}

async fn start_foreign<M>(
    config: &ClusterConfig,
    foreign: &ForeignWorker,
    slot: usize,
    generation: u64,
    activation: Option<Activation>,
) -> io::Result<(Process<M>, Io<M>)> {
    let Activation { listeners, names, workers } =
        activation.unwrap_or(Activation { listeners: Vec::new(), names: String::new(), workers: config.workers });
    let (uid, gid) = user_and_group(foreign)?;
    let notify = notify::NotifySocket::bind(slot, generation, uid)?;
    let given: Arc<[u64]> = listeners.iter().filter_map(crate::sys::listening::inode_of).collect();
    let child = activation::spawn_activated(activation::ActivationSpec {
        program: foreign.program.clone(),
        args: foreign.args.clone(),
        env: config.env.clone(),
        listeners,
        fd_names: names,
        notify_socket: notify.env_value.clone(),
        watchdog: foreign.watchdog,
        slot,
        generation,
        workers,
        cwd: foreign.cwd.clone(),
        uid,
        gid,
        capture_output: config.output == WorkerOutput::Capture,
    })
    .await?;
    let pid = child.id().unwrap_or(0);
    let (commands_tx, commands) = mpsc::unbounded_channel();
    // Validated with the configuration.
    let stop_signal = Signal::try_from(foreign.stop_signal).unwrap_or(Signal::SIGTERM);
    let (giver, taker) = handover::pair();
    let process = foreign_process(pid, stop_signal, commands_tx, taker);
    let channel = IoChannel::Foreign { notify, ready: foreign.ready.clone(), adopted: false, given };
    let (child, output) = child_output(child)?;
    Ok((
        process,
        Io { slot, generation, pid, child, output, commands, channel, giver, hang: None, program: program_of(config) },
    ))
}

/// The tree's program a cluster's processes belong to.
fn program_of(config: &ClusterConfig) -> Option<Arc<str>> {
    config.program.as_deref().map(Arc::from)
}

/// The uid and gid a foreign worker runs as, from the configured names.
fn user_and_group(foreign: &ForeignWorker) -> io::Result<(Option<u32>, Option<u32>)> {
    use nix::unistd::{Group, User};
    let not_found = |what: &'static str, name: &str| {
        io::Error::new(io::ErrorKind::NotFound, LaunchError::NoSuchAccount { what, name: name.to_string() })
    };
    let user = match &foreign.user {
        Some(name) => Some(User::from_name(name).map_err(io::Error::from)?.ok_or_else(|| not_found("user", name))?),
        None => None,
    };
    let gid = match &foreign.group {
        Some(name) => {
            Some(Group::from_name(name).map_err(io::Error::from)?.ok_or_else(|| not_found("group", name))?.gid.as_raw())
        }
        None => user.as_ref().map(|u| u.gid.as_raw()),
    };
    Ok((user.map(|u| u.uid.as_raw()), gid))
}

impl<M: Serialize + Send + 'static> Io<M> {
    /// Starts the process's tasks: output capture, writer and reader (or notify reader),
    /// waiter.
    pub(crate) fn run<R: DeserializeOwned + Clone + Send + 'static>(
        self,
        reports: Reports,
        bus: &Arc<EventBus<R>>,
        counters: &Arc<SlotCounters>,
        routes: &Arc<crate::routing::messages::Routes<M>>,
    ) {
        let Io { slot, generation, pid, child, output, commands, channel, giver, hang, program } = self;
        let hang = hang.and_then(|fd| match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => Some(pipe),
            Err(e) => {
                tracing::warn!(slot, pid, error = %e, "cannot read the worker's hang reports");
                None
            }
        });
        for (stream, fd, leftover) in output {
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(pipe) => {
                    let source = output::LineSource { slot, pid, program: program.clone() };
                    let forward = output::forward_lines(pipe, leftover, stream, source, bus.clone(), giver.clone());
                    tokio::spawn(forward);
                }
                Err(e) => tracing::warn!(slot, pid, error = %e, "cannot read the worker's output"),
            }
        }
        let exited = CancellationToken::new();
        let (done_tx, done_rx) = oneshot::channel();
        let after = match channel {
            IoChannel::Corral {
                ipc,
                start,
                outgoing,
                load,
                replies,
                calls,
                max_frame_length,
                hello_timeout,
                hello_deadline,
            } => {
                let (read, write) = ipc.into_split();
                let codec = || FrameCodec::<M, R>::new(max_frame_length);
                tokio::spawn(writer::run_writer(write, codec(), outgoing, counters.clone(), slot, giver.clone()));
                let reader = reader::ReaderCtx {
                    load,
                    slot,
                    generation,
                    pid,
                    reports: reports.clone(),
                    bus: bus.clone(),
                    counters: counters.clone(),
                    hello_timeout,
                    hello_deadline,
                    calls,
                    routes: routes.clone(),
                };
                let codec = codec().with_replies(replies);
                tokio::spawn(reader::run_reader(read, codec, reader, start, done_tx, giver.clone()));
                // Its process group too: a child it forked does not outlive it.
                waiter::AfterExit { reader_done: Some(done_rx), kill_group: true, exited }
            }
            IoChannel::Foreign { notify, ready, adopted, given } => {
                let who = notify::Who { slot, generation, pid, adopted, given };
                let (reports, bus, on_exit, giver) = (reports.clone(), bus.clone(), exited.clone(), giver.clone());
                tokio::spawn(notify::run_notify(notify, who, ready, reports, bus, on_exit, giver));
                waiter::AfterExit { reader_done: None, kill_group: true, exited }
            }
        };
        tokio::spawn(waiter::run_waiter(child, commands, after, reports, generation, giver, hang));
    }
}
