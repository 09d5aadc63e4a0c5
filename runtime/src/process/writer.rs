//! The frame writer: the primary → worker half of a process's IPC.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use corral_protocol::{FrameCodec, Outgoing, write_frames};
use serde::Serialize;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::counters::SlotCounters;

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
