//! Captured worker output, re-emitted line by line.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;

use super::handover::{Giver, Part};

use crate::api::events::bus::EventBus;
use crate::api::events::{ClusterEvent, OutputStream};

/// The longest line kept whole; longer ones are split (a worker printing without newlines
/// cannot make the primary buffer without bound).
const MAX_LINE: usize = 64 * 1024;

/// Where a captured line comes from: the slot, its process, and the tree's program
/// ([`ClusterConfig::program`](crate::config::cluster::ClusterConfig::program)).
pub(crate) struct LineSource {
    pub slot: usize,
    pub pid: u32,
    pub program: Option<Arc<str>>,
}

/// Reads `pipe` until EOF, emitting each line as a `tracing` event (target `corral::worker`,
/// fields `program` (in a tree), `slot`, `pid`, `stream`) and as a [`ClusterEvent::Output`].
pub(crate) async fn forward_lines<R: Clone + Send + 'static>(
    pipe: pipe::Receiver,
    leftover: Vec<u8>,
    stream: OutputStream,
    source: LineSource,
    bus: Arc<EventBus<R>>,
    giver: Giver,
) {
    let LineSource { slot, pid, program } = source;
    let emit = |raw: &[u8]| {
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(raw)).into_owned();
        // A program of a tree says which one the line is from; a cluster of its own, as ever.
        match (program.as_deref(), stream) {
            (None, OutputStream::Stdout) => {
                tracing::info!(target: "corral::worker", slot, pid, stream = "stdout", "{line}")
            }
            (None, OutputStream::Stderr) => {
                tracing::warn!(target: "corral::worker", slot, pid, stream = "stderr", "{line}")
            }
            (Some(program), OutputStream::Stdout) => {
                tracing::info!(target: "corral::worker", program, slot, pid, stream = "stdout", "{line}")
            }
            (Some(program), OutputStream::Stderr) => {
                tracing::warn!(target: "corral::worker", program, slot, pid, stream = "stderr", "{line}")
            }
        }
        bus.emit(ClusterEvent::Output { slot, pid, stream, line });
    };
    // What the previous image had read: its whole lines now, the rest starts the next one.
    let mut raw = Vec::new();
    for piece in leftover.split_inclusive(|b| *b == b'\n') {
        if piece.ends_with(b"\n") {
            emit(piece);
        } else {
            raw.extend_from_slice(piece);
        }
    }
    let mut reader = BufReader::new(pipe);
    loop {
        let room = (MAX_LINE as u64).saturating_sub(raw.len() as u64).max(1);
        let mut limited = (&mut reader).take(room);
        let read = tokio::select! {
            biased;
            () = giver.token.cancelled() => None,
            read = limited.read_until(b'\n', &mut raw) => Some(read),
        };
        let Some(read) = read else {
            // Between two reads: the partial line and what is buffered travel along.
            raw.extend_from_slice(reader.buffer());
            if let Ok(pipe) = reader.into_inner().into_nonblocking_fd() {
                giver.give(Part::Output { stream, pipe, leftover: raw });
            }
            return;
        };
        match read {
            Ok(0) | Err(_) => {
                if !raw.is_empty() {
                    emit(&raw);
                }
                return;
            }
            Ok(_) if raw.ends_with(b"\n") || raw.len() >= MAX_LINE => {
                emit(&raw);
                raw.clear();
            }
            // A read cut short by the select: the line goes on.
            Ok(_) => {}
        }
    }
}
