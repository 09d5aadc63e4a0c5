//! The writer task both sides run, [`write_frames`]: [`Outgoing`] frames queued in, batched
//! writes out.

use futures_util::SinkExt;
use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::codec::FrameCodec;
use crate::control::Control;
use crate::envelope::{Body, Envelope};
use crate::error::ProtocolError;
use crate::trace::TraceContext;

/// A frame waiting for the writer task, which gives it its sequence number.
///
/// ```
/// use corral_protocol::{Body, Outgoing};
/// let out = Outgoing::user(5u8);
/// assert!(matches!(out.body, Body::User(5)));
/// ```
#[derive(Debug)]
pub struct Outgoing<M> {
    /// What to send.
    pub body: Body<M>,
    /// The sender's trace context, if any (boxed, as in [`Envelope`]).
    pub trace: Option<Box<TraceContext>>,
}

impl<M> Outgoing<M> {
    /// A user message without trace context.
    pub fn user(message: M) -> Self {
        Outgoing { body: Body::User(message), trace: None }
    }

    /// A control message without trace context.
    pub fn control(control: Control) -> Self {
        Outgoing { body: Body::from(control), trace: None }
    }
}

/// Queues `out` for the writer task, waiting while the queue is full; fails only when the
/// writer is gone. A free place is taken at once without building the waiting future (the
/// path of every message of a flood), and a full queue waits its turn behind earlier
/// senders as [`mpsc::Sender::send`] does.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use corral_protocol::{Outgoing, enqueue};
/// use tokio::sync::mpsc;
///
/// let (tx, mut rx) = mpsc::channel(1);
/// enqueue(&tx, Outgoing::user(1u8)).await.unwrap();
/// assert!(matches!(rx.recv().await, Some(Outgoing { .. })));
/// drop(rx);
/// assert!(enqueue(&tx, Outgoing::user(2u8)).await.is_err());
/// # }
/// ```
///
/// # Errors
///
/// The frame back, in [`mpsc::error::SendError`], when the queue is closed.
pub async fn enqueue<M>(
    tx: &mpsc::Sender<Outgoing<M>>,
    out: Outgoing<M>,
) -> Result<(), mpsc::error::SendError<Outgoing<M>>> {
    match tx.try_send(out) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(out)) => tx.send(out).await,
        Err(mpsc::error::TrySendError::Closed(out)) => Err(mpsc::error::SendError(out)),
    }
}

/// How many queued frames are taken and encoded before the socket is flushed.
const WRITE_BATCH: usize = 256;

/// Writes queued frames to `io` until the queue closes (or `close` is cancelled and every
/// frame already queued is written) or the socket fails, numbering them
/// from 1 and flushing whenever the queue runs dry (so a lone message goes out at once and a
/// burst goes out in few system calls). `on_user_sent` runs for every user message written.
///
/// A message that cannot be encoded (over the maximum frame length, or refused by its
/// `Serialize`) is logged and skipped; the connection stays up. Returns the error that ended
/// the loop, if any.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use corral_protocol::{FrameCodec, Outgoing, write_frames};
/// use tokio::sync::mpsc;
/// use tokio_util::sync::CancellationToken;
///
/// let (tx, rx) = mpsc::channel(8);
/// tx.send(Outgoing::user(1u32)).await.unwrap();
/// drop(tx);
/// let mut sink = Vec::new();
/// let codec: FrameCodec<u32, u32> = FrameCodec::new(1024);
/// write_frames(&mut sink, codec, rx, CancellationToken::new(), || {}).await.unwrap();
/// assert_eq!(sink.len(), 4 + 4); // prefix + (seq, no trace, variant, value)
/// # }
/// ```
pub async fn write_frames<W, Out, In>(
    io: W,
    codec: FrameCodec<Out, In>,
    rx: mpsc::Receiver<Outgoing<Out>>,
    close: CancellationToken,
    on_user_sent: impl FnMut(),
) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    Out: Serialize,
{
    let never = CancellationToken::new();
    write_frames_until(io, codec, rx, close, never, on_user_sent).await.map(|_| ())
}

/// As [`write_frames`], and once `hand_over` is cancelled, stops at the next frame boundary
/// with the queue empty (every frame queued so far written and flushed) and returns `io`, so
/// that another writer (the primary's next image, after an upgrade) can go on where this one
/// stopped. Returns `Ok(None)` when it ended for another reason.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use corral_protocol::{FrameCodec, Outgoing, write_frames_until};
/// use tokio::sync::mpsc;
/// use tokio_util::sync::CancellationToken;
///
/// let (tx, rx) = mpsc::channel(8);
/// tx.send(Outgoing::user(1u32)).await.unwrap();
/// let hand_over = CancellationToken::new();
/// hand_over.cancel();
/// let codec: FrameCodec<u32, u32> = FrameCodec::new(1024);
/// let sink = write_frames_until(Vec::new(), codec, rx, CancellationToken::new(), hand_over, || {}).await.unwrap();
/// assert_eq!(sink.map(|s| s.len()), Some(4 + 4)); // the queued frame went out first
/// # drop(tx);
/// # }
/// ```
///
/// # Errors
///
/// As [`write_frames`].
pub async fn write_frames_until<W, Out, In>(
    io: W,
    codec: FrameCodec<Out, In>,
    mut rx: mpsc::Receiver<Outgoing<Out>>,
    close: CancellationToken,
    hand_over: CancellationToken,
    mut on_user_sent: impl FnMut(),
) -> Result<Option<W>, ProtocolError>
where
    W: AsyncWrite + Unpin,
    Out: Serialize,
{
    let mut framed = FramedWrite::new(io, codec);
    let mut seq = 0u64;
    let mut closing = false;
    // Taken from the queue a batch at a time: one wake-up and one release of the queue's
    // capacity per batch, not per frame.
    let mut batch: Vec<Outgoing<Out>> = Vec::with_capacity(WRITE_BATCH);
    let (closed, handed_over) = (close.cancelled(), hand_over.cancelled());
    tokio::pin!(closed, handed_over);
    loop {
        let taken = tokio::select! {
            biased;
            taken = rx.recv_many(&mut batch, WRITE_BATCH) => taken,
            () = &mut closed, if !closing => {
                // No new frames from now on; those already queued are still written.
                closing = true;
                rx.close();
                continue;
            }
            // Reached only with the queue empty and the last batch flushed: a boundary.
            () = &mut handed_over => return Ok(Some(framed.into_inner())),
        };
        if taken == 0 {
            break; // The queue is closed and empty.
        }
        for out in batch.drain(..) {
            seq += 1;
            let is_user = matches!(out.body, Body::User(_));
            match framed.feed(Envelope { seq, trace: out.trace, body: out.body }).await {
                Ok(()) if is_user => on_user_sent(),
                Ok(()) => {}
                // The codec left the buffer as it was: drop this message, keep the connection.
                Err(e @ (ProtocolError::FrameTooLarge { .. } | ProtocolError::Encode(_))) => {
                    tracing::error!(error = %e, "message not sent");
                }
                Err(e) => return Err(e),
            }
        }
        framed.flush().await?;
    }
    Ok(None)
}
