//! Captured worker output, re-emitted line by line.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::events::EventBus;
use crate::{ClusterEvent, OutputStream};

/// The longest line kept whole; longer ones are split (a worker printing without newlines
/// cannot make the primary buffer without bound).
const MAX_LINE: usize = 64 * 1024;

/// Reads `pipe` until EOF, emitting each line as a `tracing` event (target `corral::worker`)
/// and as a [`ClusterEvent::Output`].
pub(crate) async fn forward_lines<R: Clone + Send + 'static>(
    pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    slot: usize,
    pid: u32,
    bus: Arc<EventBus<R>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut raw).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(&raw)).into_owned();
                match stream {
                    OutputStream::Stdout => {
                        tracing::info!(target: "corral::worker", slot, pid, stream = "stdout", "{line}")
                    }
                    OutputStream::Stderr => {
                        tracing::warn!(target: "corral::worker", slot, pid, stream = "stderr", "{line}")
                    }
                }
                bus.emit(ClusterEvent::Output { slot, pid, stream, line });
            }
        }
    }
}
