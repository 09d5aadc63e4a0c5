//! The frame writer: the primary → worker half of a process's IPC.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use corral_protocol::{FrameCodec, Outgoing, write_frames_until};
use serde::Serialize;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::counters::SlotCounters;
use super::handover::{Giver, Part};

/// Writes queued frames to a worker until its queue closes or the socket fails; or, handed
/// over, writes out what is queued and gives back its half of the stream.
pub(crate) async fn run_writer<M: Serialize, R>(
    write: OwnedWriteHalf,
    codec: FrameCodec<M, R>,
    rx: mpsc::Receiver<Outgoing<M>>,
    counters: Arc<SlotCounters>,
    slot: usize,
    giver: Giver,
) {
    let counted = || {
        counters.messages_out.fetch_add(1, Ordering::Relaxed);
    };
    match write_frames_until(write, codec, rx, CancellationToken::new(), giver.token.clone(), counted).await {
        Ok(Some(write)) => giver.give(Part::Writer { write }),
        Ok(None) => {}
        Err(e) => tracing::debug!(slot, error = %e, "IPC writer stopped"),
    }
}
