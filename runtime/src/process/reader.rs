//! The frame reader: the worker → primary half of a process's IPC.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use corral_protocol::spans::{self, PRIMARY_DESTINATION};
use corral_protocol::{Body, Control, FrameCodec, LogLevel, ProtocolError};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use super::counters::SlotCounters;
use super::event::{ProcessEvent, ProcessEventKind, Reports};
use crate::ClusterEvent;
use crate::balance::Load;
use crate::events::{BusSnapshot, EventBus};

/// What the reader needs to know and where it reports.
pub(crate) struct ReaderCtx<R> {
    /// The worker's load, updated straight from its reports (least connections reads it).
    pub load: Arc<Load>,
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
    pub reports: Reports,
    pub bus: Arc<EventBus<R>>,
    pub counters: Arc<SlotCounters>,
    pub hello_timeout: Duration,
}

impl<R> ReaderCtx<R> {
    fn report(&self, kind: ProcessEventKind) {
        let _ = self.reports.send_message(ProcessEvent { generation: self.generation, kind });
    }
}

/// Reads a worker's frames until EOF or a protocol error, then tells the slot.
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
    cx.report(ProcessEventKind::ReaderEnded(error));
    let _ = done.send(());
}

async fn read_frames<M, R: DeserializeOwned + Clone + Send + 'static>(
    frames: &mut FramedRead<OwnedReadHalf, FrameCodec<M, R>>,
    cx: &ReaderCtx<R>,
) -> Result<(), ProtocolError> {
    let (slot, generation, pid) = (cx.slot, cx.generation, cx.pid);
    let first = match tokio::time::timeout(cx.hello_timeout, frames.next()).await {
        Err(_elapsed) => {
            let timeout_ms = u64::try_from(cx.hello_timeout.as_millis()).unwrap_or(u64::MAX);
            return Err(ProtocolError::NoHello { timeout_ms });
        }
        Ok(None) => return Err(ProtocolError::Closed),
        Ok(Some(frame)) => frame?,
    };
    first.check_hello(slot as u32, generation)?;
    // The slot hears first, so that whoever reacts to the event finds it up to date.
    cx.report(ProcessEventKind::Online);
    cx.bus.emit(ClusterEvent::Online { slot, generation, pid });

    let mut snapshot = BusSnapshot::default();
    while let Some(frame) = frames.next().await {
        let frame = frame?;
        let control = match frame.body {
            Body::User(message) => {
                cx.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                let span = if spans::enabled() {
                    spans::receive(PRIMARY_DESTINATION, slot, frame.seq, "receive", frame.trace.as_ref())
                } else {
                    tracing::Span::none()
                };
                cx.bus.emit_message(&mut snapshot, slot, message, span).await;
                continue;
            }
            Body::Control(control) => control,
        };
        match control {
            Control::Ready => {
                cx.report(ProcessEventKind::Ready);
                cx.bus.emit(ClusterEvent::Ready { slot, generation, pid });
            }
            Control::Pong { nonce, stats } => cx.report(ProcessEventKind::Pong { nonce, stats }),
            Control::Listen { id, addr } => cx.report(ProcessEventKind::Listen { id, addr }),
            Control::Load { open, accepted } => cx.load.report(open, accepted),
            Control::Disconnect => cx.report(ProcessEventKind::Draining),
            Control::Log { level, message } => match level {
                LogLevel::Error => tracing::error!(slot, pid, "{message}"),
                LogLevel::Warn => tracing::warn!(slot, pid, "{message}"),
                LogLevel::Info => tracing::info!(slot, pid, "{message}"),
                LogLevel::Debug => tracing::debug!(slot, pid, "{message}"),
            },
            Control::Error { message } => tracing::error!(slot, pid, "worker reports: {message}"),
            other @ (Control::Hello(_)
            | Control::ListenAck { .. }
            | Control::Ping { .. }
            | Control::Shutdown { .. }) => {
                return Err(ProtocolError::UnexpectedControl { control: other.name(), peer: "worker" });
            }
        }
    }
    Ok(())
}
