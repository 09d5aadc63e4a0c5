//! The primary's side of one worker process: the frame reader, the frame writer and the
//! process waiter, each a task that reports to the slot's supervisor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_protocol::spans::{self, PRIMARY_DESTINATION};
use corral_protocol::{Body, Control, FrameCodec, LogLevel, Outgoing, ProtocolError, write_frames};
use futures_util::StreamExt;
use ractor::ActorRef;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::events::{BusSnapshot, EventBus};
use crate::listener::Load;
use crate::supervisor::SupervisorMsg;
use crate::{ClusterEvent, ExitStatus};

/// Message counters of one slot, shared by its tasks and read by the status snapshot.
#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
}

/// Writes queued frames to a worker until its queue closes or the socket fails.
pub(crate) async fn run_writer<M: Serialize, R>(
    write: OwnedWriteHalf,
    codec: FrameCodec<M, R>,
    rx: mpsc::Receiver<Outgoing<M>>,
    counters: Arc<SlotCounters>,
    slot: usize,
) {
    let counted = || {
        counters.messages_out.fetch_add(1, Ordering::Relaxed);
    };
    if let Err(e) = write_frames(write, codec, rx, CancellationToken::new(), counted).await {
        tracing::debug!(slot, error = %e, "IPC writer stopped");
    }
}

/// What the reader needs to know and where it reports.
pub(crate) struct ReaderCtx<R> {
    /// The worker's load, updated straight from its reports (least connections reads it).
    pub load: Arc<Load>,
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub bus: Arc<EventBus<R>>,
    pub counters: Arc<SlotCounters>,
    pub hello_timeout: Duration,
}

/// Reads a worker's frames until EOF or a protocol error, then tells the supervisor.
///
/// The first frame must be a hello for this slot and generation within `hello_timeout`.
/// Lifecycle events that follow from frames (online, ready, disconnect) are emitted here, in
/// stream order with the worker's messages.
pub(crate) async fn run_reader<M, R: DeserializeOwned + Clone + Send + 'static>(
    read: OwnedReadHalf,
    codec: FrameCodec<M, R>,
    cx: ReaderCtx<R>,
    done: oneshot::Sender<()>,
) {
    let mut frames = FramedRead::new(read, codec);
    let error = read_frames(&mut frames, &cx).await.err();
    cx.bus.emit(ClusterEvent::Disconnect { slot: cx.slot, pid: cx.pid });
    // A worker of another protocol version will not get better by restarting it.
    let fatal = matches!(error, Some(ProtocolError::VersionMismatch { .. }));
    let _ = cx.supervisor.send_message(SupervisorMsg::ReaderEnded {
        generation: cx.generation,
        error: error.map(|e| e.to_string()),
        fatal,
    });
    let _ = done.send(());
}

async fn read_frames<M, R: DeserializeOwned + Clone + Send + 'static>(
    frames: &mut FramedRead<OwnedReadHalf, FrameCodec<M, R>>,
    cx: &ReaderCtx<R>,
) -> Result<(), ProtocolError> {
    let (slot, generation, pid) = (cx.slot, cx.generation, cx.pid);
    let first = match tokio::time::timeout(cx.hello_timeout, frames.next()).await {
        Err(_elapsed) => {
            return Err(ProtocolError::Unexpected("no hello within the listen timeout".into()));
        }
        Ok(None) => return Err(ProtocolError::Closed),
        Ok(Some(frame)) => frame?,
    };
    match first.body {
        Body::Control(Control::Hello(hello)) => hello.check(slot as u32, generation)?,
        _ => {
            return Err(ProtocolError::Unexpected("the first frame is not a hello".into()));
        }
    }
    // The supervisor hears first, so that whoever reacts to the event finds it up to date.
    let _ = cx.supervisor.send_message(SupervisorMsg::Online { generation });
    cx.bus.emit(ClusterEvent::Online { slot, generation, pid });

    let mut snapshot = BusSnapshot::default();
    while let Some(frame) = frames.next().await {
        let frame = frame?;
        match frame.body {
            Body::User(message) => {
                cx.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                let span = if spans::enabled() {
                    spans::receive(PRIMARY_DESTINATION, slot, frame.seq, "receive", frame.trace.as_ref())
                } else {
                    tracing::Span::none()
                };
                cx.bus.emit_message(&mut snapshot, slot, message, span).await;
            }
            Body::Control(Control::Ready) => {
                let _ = cx.supervisor.send_message(SupervisorMsg::Ready { generation });
                cx.bus.emit(ClusterEvent::Ready { slot, generation, pid });
            }
            Body::Control(Control::Pong { nonce, stats }) => {
                let _ = cx.supervisor.send_message(SupervisorMsg::Pong { generation, nonce, stats });
            }
            Body::Control(Control::Listen { id, addr }) => {
                let _ = cx.supervisor.send_message(SupervisorMsg::Listen { generation, id, addr });
            }
            Body::Control(Control::Load { open, accepted }) => cx.load.report(open, accepted),
            Body::Control(Control::Disconnect) => {
                let _ = cx.supervisor.send_message(SupervisorMsg::Draining { generation });
            }
            Body::Control(Control::Log { level, message }) => match level {
                LogLevel::Error => tracing::error!(slot, pid, "{message}"),
                LogLevel::Warn => tracing::warn!(slot, pid, "{message}"),
                LogLevel::Info => tracing::info!(slot, pid, "{message}"),
                LogLevel::Debug => tracing::debug!(slot, pid, "{message}"),
            },
            Body::Control(Control::Error { message }) => {
                tracing::error!(slot, pid, "worker reports: {message}");
            }
            Body::Control(other) => {
                return Err(ProtocolError::Unexpected(format!("{other:?} from a worker")));
            }
        }
    }
    Ok(())
}

/// A request to the task that owns a worker's `Child`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProcessCommand {
    /// Send this signal.
    Signal(nix::sys::signal::Signal),
}

/// Owns the child: waits for it to exit, signals it on request (so that no signal can reach a
/// reaped pid that was reused), and reports the exit once the reader has finished, so that
/// every message the worker sent is delivered before its exit event.
pub(crate) async fn run_waiter(
    mut child: Child,
    mut commands: mpsc::UnboundedReceiver<ProcessCommand>,
    reader_done: oneshot::Receiver<()>,
    supervisor: ActorRef<SupervisorMsg>,
    generation: u64,
) {
    let mut commands_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            cmd = commands.recv(), if commands_open => match cmd {
                Some(ProcessCommand::Signal(sig)) => {
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
                    }
                }
                None => {
                    // The supervisor is gone: nobody watches this process any more.
                    commands_open = false;
                    let _ = child.start_kill();
                }
            },
        }
    };
    let status = match status {
        Ok(status) => ExitStatus::from(status),
        Err(e) => {
            tracing::error!(error = %e, "waiting for a worker process failed");
            ExitStatus { code: None, signal: None }
        }
    };
    // A worker that forked a child holding its socket keeps the reader open; don't wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(1), reader_done).await;
    let _ = supervisor.send_message(SupervisorMsg::Exited { generation, status });
}
