//! The primary's side of one worker process: starting it, and the I/O tasks that run beside
//! it (frame reader, frame writer, waiter, output capture), each reporting what happens as a
//! [`ProcessEvent`] through a channel to the slot (a [`Reports`] sink), never to an actor by
//! name.
//!
//! Starting is two steps, so that the slot can put the process in its books (route, state,
//! `fork` event) before any of its events can arrive: [`start`] forks, [`Io::run`] starts the
//! tasks.

mod counters;
mod event;
mod output;
mod reader;
mod spawn;
mod waiter;
mod writer;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_protocol::{Control, FrameCodec, HandleChannel, Outgoing, seqpacket_pair, stream_pair};
use nix::sys::signal::Signal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};

pub(crate) use counters::SlotCounters;
pub(crate) use event::{ProcessEvent, ProcessEventKind, Reports};
pub(crate) use spawn::rss_bytes;
use waiter::ProcessCommand;

use crate::balance::Load;
use crate::events::EventBus;
use crate::{ClusterConfig, OutputStream, WorkerOutput};

/// What to start.
pub(crate) struct StartSpec<'a> {
    pub slot: usize,
    pub generation: u64,
    pub program: PathBuf,
    pub argv0: Option<OsString>,
    pub args: Vec<OsString>,
    pub config: &'a ClusterConfig,
}

/// The primary's handle on a running worker process.
pub(crate) struct Process<M> {
    pub pid: u32,
    commands: mpsc::UnboundedSender<ProcessCommand>,
    /// The process's writer queue (its route, for the slot's current process).
    pub tx: mpsc::Sender<Outgoing<M>>,
    /// The channel connections and listening sockets are passed on.
    pub handles: Arc<HandleChannel>,
    /// Its load, as it reports it.
    pub load: Arc<Load>,
}

impl<M> Process<M> {
    /// Sends the process a signal (through its waiter: never to a reaped, reused pid).
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = self.commands.send(ProcessCommand::Signal(signal));
    }

    /// Queues a control frame; `false` when the queue is full or closed.
    pub(crate) fn send_control(&self, control: Control) -> bool {
        self.tx.try_send(Outgoing::control(control)).is_ok()
    }
}

/// The tasks of a started process, not yet running.
pub(crate) struct Io<M> {
    slot: usize,
    generation: u64,
    pid: u32,
    child: Child,
    ipc: tokio::net::UnixStream,
    outgoing: mpsc::Receiver<Outgoing<M>>,
    commands: mpsc::UnboundedReceiver<ProcessCommand>,
    load: Arc<Load>,
    max_frame_length: usize,
    hello_timeout: std::time::Duration,
}

/// Forks a worker process with its IPC ends in place.
///
/// # Errors
///
/// The socket pairs cannot be made, or the process cannot be started.
pub(crate) async fn start<M>(spec: StartSpec<'_>) -> io::Result<(Process<M>, Io<M>)> {
    let config = spec.config;
    let stream = stream_pair().map_err(io::Error::other)?;
    let handles = seqpacket_pair().map_err(io::Error::other)?;
    let boot = WorkerBootstrap {
        slot: spec.slot as u32,
        generation: spec.generation,
        primary_pid: std::process::id(),
        max_frame_length: config.max_frame_length,
        cpu_threads: config.effective_cpu_threads(),
    };
    let child = spawn::spawn_worker(spawn::SpawnSpec {
        program: spec.program,
        argv0: spec.argv0,
        args: spec.args,
        env: config.env.clone(),
        boot,
        ipc: stream.worker,
        handles: handles.worker,
        capture_output: config.output == WorkerOutput::Capture,
    })
    .await?;
    let pid = child.id().unwrap_or(0);
    let ipc = std::os::unix::net::UnixStream::from(stream.primary);
    ipc.set_nonblocking(true)?;
    let ipc = tokio::net::UnixStream::from_std(ipc)?;
    let handles = Arc::new(HandleChannel::new(handles.primary).map_err(io::Error::other)?);
    let (tx, outgoing) = mpsc::channel(config.send_buffer);
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let load = Arc::new(Load::default());
    let process = Process { pid, commands: commands_tx, tx, handles, load: load.clone() };
    let io = Io {
        slot: spec.slot,
        generation: spec.generation,
        pid,
        child,
        ipc,
        outgoing,
        commands,
        load,
        max_frame_length: config.max_frame_length,
        hello_timeout: config.listen_timeout,
    };
    Ok((process, io))
}

impl<M: Serialize + Send + 'static> Io<M> {
    /// Starts the process's tasks: output capture, writer, reader, waiter.
    pub(crate) fn run<R: DeserializeOwned + Clone + Send + 'static>(
        self,
        reports: Reports,
        bus: &Arc<EventBus<R>>,
        counters: &Arc<SlotCounters>,
    ) {
        let Io { slot, generation, pid, mut child, ipc, outgoing, commands, load, max_frame_length, hello_timeout } =
            self;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(output::forward_lines(out, OutputStream::Stdout, slot, pid, bus.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(output::forward_lines(err, OutputStream::Stderr, slot, pid, bus.clone()));
        }
        let (read, write) = ipc.into_split();
        let (done_tx, done_rx) = oneshot::channel();
        let codec = || FrameCodec::<M, R>::new(max_frame_length);
        tokio::spawn(writer::run_writer(write, codec(), outgoing, counters.clone(), slot));
        let reader = reader::ReaderCtx {
            load,
            slot,
            generation,
            pid,
            reports: reports.clone(),
            bus: bus.clone(),
            counters: counters.clone(),
            hello_timeout,
        };
        tokio::spawn(reader::run_reader(read, codec(), reader, done_tx));
        tokio::spawn(waiter::run_waiter(child, commands, done_rx, reports, generation));
    }
}
