//! The frame reader: the worker → primary half of a process's IPC.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use corral_protocol::spans::{self, PRIMARY_DESTINATION};
use corral_protocol::{Body, Control, Envelope, FrameCodec, LogLevel, Outgoing, PendingCalls, ProtocolError};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::oneshot;
use tokio_util::codec::{Decoder, FramedRead};

use super::counters::SlotCounters;
use super::event::{ProcessEvent, ProcessEventKind, Reports};
use super::handover::{Giver, Part};
use crate::api::events::ClusterEvent;
use crate::api::events::bus::{BusSnapshot, EventBus};
use crate::routing::balance::Load;
use crate::routing::messages::{Route, Routes};
use corral_protocol::death_notice::DeathNotice;

/// What the reader needs to know and where it reports.
pub(crate) struct ReaderCtx<M, R> {
    /// The worker's load, updated straight from its reports (least connections reads it).
    pub load: Arc<Load>,
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
    pub reports: Reports,
    pub bus: Arc<EventBus<R>>,
    pub counters: Arc<SlotCounters>,
    pub hello_timeout: Duration,
    /// When the hello is due: `hello_timeout` after the fork (not after this task first ran,
    /// which a busy machine may delay past the slot's own start timeout).
    pub hello_deadline: tokio::time::Instant,
    /// The primary's calls to this process: answered by its replies, failed when it ends.
    pub calls: Arc<PendingCalls>,
    /// Every slot's route, for the messages this worker relays to others.
    pub routes: Arc<Routes<M>>,
}

impl<M, R> ReaderCtx<M, R> {
    fn report(&self, kind: ProcessEventKind) {
        let _ = self.reports.send_message(ProcessEvent { generation: self.generation, kind });
    }
}

/// Where a reader starts: a fresh process (its hello comes first) or one taken over from the
/// primary's previous image (said hello long ago; `leftover` is what that image had read of
/// the next frame).
pub(crate) enum ReaderStart {
    /// With its death notice, watched once the hello says the worker holds it.
    Fresh {
        notice: Option<DeathNotice>,
    },
    Adopted {
        leftover: Vec<u8>,
    },
}

/// Why a reader stopped without an error.
enum Stop {
    Eof,
    HandedOver,
}

/// Reads a worker's frames until EOF or a protocol error, then tells the slot; or, handed
/// over, stops between two frames and gives back its half of the stream.
///
/// The first frame must be a hello for this slot and generation within `hello_timeout`.
/// Lifecycle events that follow from frames (online, ready, disconnect) are emitted here, in
/// stream order with the worker's messages.
pub(crate) async fn run_reader<M: Send + 'static, R: DeserializeOwned + Clone + Send + 'static>(
    read: OwnedReadHalf,
    codec: FrameCodec<M, R>,
    cx: ReaderCtx<M, R>,
    start: ReaderStart,
    done: oneshot::Sender<()>,
    giver: Giver,
) {
    let mut frames = FramedRead::new(read, codec.clone());
    let mut batch = Batch::new(codec, &cx);
    let error = match read_frames(&mut frames, &mut batch, &cx, start, &giver).await {
        // Calls in flight end with this image (it execs); the next one opens its own.
        Ok(Stop::HandedOver) => {
            let parts = frames.into_parts();
            giver.give(Part::Reader { read: parts.io, leftover: parts.read_buf.to_vec() });
            return;
        }
        Ok(Stop::Eof) => None,
        Err(e) => Some(e),
    };
    // Nothing will answer the calls in flight: each fails now, not at its timeout.
    cx.calls.close();
    cx.bus.emit(ClusterEvent::Disconnect { slot: cx.slot, pid: cx.pid });
    cx.report(ProcessEventKind::ReaderEnded(error));
    let _ = done.send(());
}

/// The user messages of the frames read so far and not yet passed on, and how frames whole
/// in the read buffer are taken out of it without another read.
///
/// Messages go to the event bus a batch at a time (one queue operation and one credit check
/// per batch), and always before whatever the next control frame causes: events stay in
/// stream order.
struct Batch<M, R> {
    /// Decodes frames already in the read buffer (the codec keeps no state between frames).
    codec: FrameCodec<M, R>,
    messages: Vec<(R, tracing::Span)>,
    max: usize,
    snapshot: BusSnapshot<R>,
}

impl<M: Send + 'static, R: DeserializeOwned + Clone + Send + 'static> Batch<M, R> {
    fn new(codec: FrameCodec<M, R>, cx: &ReaderCtx<M, R>) -> Self {
        let max = cx.bus.max_batch();
        Batch { codec, messages: Vec::with_capacity(max), max, snapshot: BusSnapshot::default() }
    }

    fn is_full(&self) -> bool {
        self.messages.len() >= self.max
    }

    /// Passes the messages gathered so far on to the subscribers (waiting for their credits).
    async fn flush(&mut self, cx: &ReaderCtx<M, R>) {
        if self.messages.is_empty() {
            return;
        }
        let messages = std::mem::replace(&mut self.messages, Vec::with_capacity(self.max));
        cx.counters.messages_in.fetch_add(messages.len() as u64, Ordering::Relaxed);
        cx.bus.emit_messages(&mut self.snapshot, cx.slot, messages).await;
    }
}

async fn read_frames<M: Send + 'static, R: DeserializeOwned + Clone + Send + 'static>(
    frames: &mut FramedRead<OwnedReadHalf, FrameCodec<M, R>>,
    batch: &mut Batch<M, R>,
    cx: &ReaderCtx<M, R>,
    start: ReaderStart,
    giver: &Giver,
) -> Result<Stop, ProtocolError> {
    match start {
        ReaderStart::Fresh { notice } => {
            hello(frames, cx).await?;
            // The worker locks its notice before it says hello: it holds it now.
            if let Some(notice) = notice {
                super::notice::watch(notice, cx.reports.clone(), cx.slot, cx.generation, cx.pid);
            }
        }
        ReaderStart::Adopted { leftover } => {
            // Whole frames the previous image read but did not get to are handled first, in
            // order; the start of a next one waits in the buffer for the rest.
            let mut pending = bytes::BytesMut::from(&leftover[..]);
            while let Some(frame) = frames.decoder_mut().decode(&mut pending)? {
                on_frame(frame, cx, batch).await?;
            }
            batch.flush(cx).await;
            frames.read_buffer_mut().extend_from_slice(&pending);
        }
    }
    // One wait for the handover for the whole loop, polled only when no frame is ready (a
    // poll of a waiting `Notified` takes its lock); between frames the flag is read instead.
    let handed_over = giver.token.cancelled();
    tokio::pin!(handed_over);
    loop {
        if giver.token.is_cancelled() {
            return Ok(Stop::HandedOver);
        }
        let next = tokio::select! {
            biased;
            next = frames.next() => next,
            () = &mut handed_over => return Ok(Stop::HandedOver),
        };
        let Some(frame) = next else { return Ok(Stop::Eof) };
        on_frame(frame?, cx, batch).await?;
        // The frames already whole in the buffer, without another read (or poll of the
        // socket), up to a batch.
        while !batch.is_full() {
            match batch.codec.decode(frames.read_buffer_mut()) {
                Ok(Some(frame)) => on_frame(frame, cx, batch).await?,
                Ok(None) => break,
                Err(e) => {
                    // What came before the bad frame is passed on first.
                    batch.flush(cx).await;
                    return Err(e);
                }
            }
        }
        batch.flush(cx).await;
    }
}

/// Handles one frame of the worker's: a user message joins the batch; a control frame is
/// acted on after the batch before it has been passed on.
async fn on_frame<M: Send + 'static, R: DeserializeOwned + Clone + Send + 'static>(
    frame: Envelope<R>,
    cx: &ReaderCtx<M, R>,
    batch: &mut Batch<M, R>,
) -> Result<(), ProtocolError> {
    let (slot, pid) = (cx.slot, cx.pid);
    let control = match frame.body {
        Body::User(message) => {
            let span = if spans::enabled() {
                spans::receive(PRIMARY_DESTINATION, slot, frame.seq, "receive", frame.trace.as_deref())
            } else {
                tracing::Span::none()
            };
            batch.messages.push((message, span));
            if batch.is_full() {
                batch.flush(cx).await;
            }
            return Ok(());
        }
        Body::Control(control) => *control,
    };
    batch.flush(cx).await;
    match control {
        // The slot announces `Ready` once it has acted on it.
        Control::Ready => cx.report(ProcessEventKind::Ready),
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
        Control::Reply { id, answer } => cx.calls.answer(id, answer),
        Control::Relay { to, message } => relay(cx, to, message).await,
        other @ (Control::Hello(_)
        | Control::ListenAck { .. }
        | Control::Ping { .. }
        | Control::Shutdown { .. }
        | Control::Relayed { .. }) => {
            return Err(ProtocolError::UnexpectedControl { control: other.name(), peer: "worker" });
        }
    }
    Ok(())
}

/// Passes a worker's message on to the worker in slot `to` (or every other one), waiting
/// while a receiver's queue is full: this reader stops reading meanwhile, so the sender's own
/// queue fills and it waits too (backpressure, as on every other path). A slot that does not
/// exist or has no live process drops the message (logged).
async fn relay<M: Send + 'static, R>(cx: &ReaderCtx<M, R>, to: Option<u32>, message: Vec<u8>) {
    let from = cx.slot as u32;
    let targets: Vec<(usize, Route<M>)> = match to {
        Some(to) => match cx.routes.get(to as usize) {
            Some(Some(route)) => vec![(to as usize, route)],
            _ => {
                tracing::debug!(slot = cx.slot, to, "relayed message to a slot without a live worker dropped");
                return;
            }
        },
        None => cx.routes.all().into_iter().filter(|(slot, _)| *slot != cx.slot).collect(),
    };
    let Some(((last_slot, last), rest)) = targets.split_last() else { return };
    for (slot, route) in rest {
        let relayed = Control::Relayed { from, message: message.clone() };
        if route.tx.send(Outgoing::control(relayed)).await.is_err() {
            tracing::debug!(slot = cx.slot, to = slot, "relayed message to a worker that is gone dropped");
        }
    }
    if last.tx.send(Outgoing::control(Control::Relayed { from, message })).await.is_err() {
        tracing::debug!(slot = cx.slot, to = last_slot, "relayed message to a worker that is gone dropped");
    }
}

/// Waits for the hello that must come first, for this slot and generation, within
/// `hello_timeout`; then the process is online.
async fn hello<M: Send + 'static, R: DeserializeOwned + Clone + Send + 'static>(
    frames: &mut FramedRead<OwnedReadHalf, FrameCodec<M, R>>,
    cx: &ReaderCtx<M, R>,
) -> Result<(), ProtocolError> {
    let (slot, generation, pid) = (cx.slot, cx.generation, cx.pid);
    let first = match tokio::time::timeout_at(cx.hello_deadline, frames.next()).await {
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
    Ok(())
}
