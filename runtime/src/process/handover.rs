//! Handing a running process over to the primary's next image (an upgrade), and taking one
//! over in that image.
//!
//! Handing over stops the process's tasks **at a boundary** — the reader between two frames
//! (what it read of the next one travels along), the writer with its queue flushed, the output
//! readers between two lines — and gives back every fd they held, without signalling or
//! reaping the process. The fds cross the `execve` open; the next image builds the same tasks
//! on them ([`adopt`](super::adopt)) and the worker never notices.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::OutputStream;

/// What one of a process's tasks gives back when it is handed over.
pub(crate) enum Part {
    /// The frame reader: its half of the IPC stream and the bytes it read of a next frame.
    Reader { read: OwnedReadHalf, leftover: Vec<u8> },
    /// The frame writer, its queue written out.
    Writer { write: OwnedWriteHalf },
    /// The waiter: the `Child`, not reaped (it must never be dropped: it would kill).
    Waiter { child: Option<Child> },
    /// An output reader: the pipe and the start of a line not yet ended.
    Output { stream: OutputStream, pipe: OwnedFd, leftover: Vec<u8> },
    /// A foreign worker's notify socket.
    Notify { socket: std::os::unix::net::UnixDatagram },
}

/// The tasks' side: where each gives back its part when `token` is cancelled.
#[derive(Clone)]
pub(crate) struct Giver {
    pub token: CancellationToken,
    tx: mpsc::UnboundedSender<Part>,
}

impl Giver {
    pub(crate) fn give(&self, part: Part) {
        // The receiver is gone only when nobody hands the process over: the part is then
        // dropped with the task, as it would be without a handover.
        let _ = self.tx.send(part);
    }
}

/// The slot's side: asks the tasks for their parts and collects them.
pub(crate) struct Taker {
    token: CancellationToken,
    rx: Option<mpsc::UnboundedReceiver<Part>>,
}

/// A pair: the tasks get the [`Giver`] (cloned), the process keeps the [`Taker`].
pub(crate) fn pair() -> (Giver, Taker) {
    let token = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    (Giver { token: token.clone(), tx }, Taker { token, rx: Some(rx) })
}

/// Every fd of a handed-over process.
#[derive(Default)]
pub(crate) struct Parts {
    /// A corral worker's IPC stream and the start of an unread frame.
    pub ipc: Option<(std::os::unix::net::UnixStream, Vec<u8>)>,
    pub stdout: Option<(OwnedFd, Vec<u8>)>,
    pub stderr: Option<(OwnedFd, Vec<u8>)>,
    pub notify: Option<std::os::unix::net::UnixDatagram>,
    /// Kept, never dropped, until the image is replaced.
    pub child: Option<Child>,
    /// Whether the waiter gave its part (the process has not been reaped).
    pub waited: bool,
}

impl Taker {
    /// Stops every task at its next boundary and collects what they give back, within
    /// `patience`. A task that ended before (the process is exiting) gives nothing.
    ///
    /// # Errors
    ///
    /// `TimedOut` when a task did not reach a boundary in time (e.g. a writer blocked on a
    /// worker that reads nothing); `Other` when the IPC halves cannot be put together.
    pub(crate) async fn take(&mut self, patience: Duration) -> io::Result<Parts> {
        self.token.cancel();
        let Some(mut rx) = self.rx.take() else {
            return Err(io::Error::other("handed over already"));
        };
        let mut parts = Parts::default();
        let (mut read, mut write, mut leftover) = (None, None, Vec::new());
        let collect = async {
            while let Some(part) = rx.recv().await {
                match part {
                    Part::Reader { read: r, leftover: l } => (read, leftover) = (Some(r), l),
                    Part::Writer { write: w } => write = Some(w),
                    Part::Waiter { child } => {
                        parts.waited = true;
                        parts.child = child;
                    }
                    Part::Output { stream: OutputStream::Stdout, pipe, leftover } => {
                        parts.stdout = Some((pipe, leftover))
                    }
                    Part::Output { stream: OutputStream::Stderr, pipe, leftover } => {
                        parts.stderr = Some((pipe, leftover))
                    }
                    Part::Notify { socket } => parts.notify = Some(socket),
                }
            }
        };
        tokio::time::timeout(patience, collect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a task of the process did not stop in time"))?;
        if let (Some(read), Some(write)) = (read, write) {
            let stream = read.reunite(write).map_err(|_| io::Error::other("IPC halves of two streams"))?;
            parts.ipc = Some((stream.into_std()?, leftover));
        }
        Ok(parts)
    }
}
