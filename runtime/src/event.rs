//! Lifecycle and message events, with Node's names.

use std::time::Duration;

use crate::ExitStatus;

/// Something that happened in the cluster. Subscribe with
/// [`ClusterHandle::subscribe`](crate::ClusterHandle::subscribe).
///
/// Per slot, the order is: `Fork`, `Online`, `Ready`, any `Message`s, `Disconnect`, `Exit`,
/// then `Restarting` (and a new `Fork`) or `GaveUp`.
///
/// `R` is the type of the messages workers send to the primary.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterEvent<R> {
    /// A worker process was started (Node's `fork`).
    Fork {
        /// The slot.
        slot: usize,
        /// The slot's generation (1 for the first process of the slot).
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// The worker said hello with a matching protocol version (Node's `online`).
    Online {
        /// The slot.
        slot: usize,
        /// The generation.
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// The worker's behaviour has started; it gets work from now on.
    Ready {
        /// The slot.
        slot: usize,
        /// The generation.
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// A worker listens on an address (Node's `listening`).
    Listening {
        /// The slot.
        slot: usize,
        /// The address the primary bound for it (port 0 resolved).
        addr: std::net::SocketAddr,
    },
    /// A line a worker wrote to stdout or stderr, with [`WorkerOutput::Capture`].
    ///
    /// [`WorkerOutput::Capture`]: crate::WorkerOutput::Capture
    Output {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// Which stream.
        stream: OutputStream,
        /// The line, without its newline (invalid UTF-8 replaced).
        line: String,
    },
    /// A worker sent a message (Node's `message`).
    Message {
        /// The slot.
        slot: usize,
        /// The message.
        message: R,
        /// The `receive` span of this message (target `corral::ipc`): a child of the worker's
        /// `send` span when tracing is on, disabled otherwise. Handle the message inside it
        /// (`span.in_scope(..)` or `.instrument(span.clone())`) to continue the worker's trace.
        span: tracing::Span,
    },
    /// The IPC channel to a worker closed (Node's `disconnect`).
    Disconnect {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
    },
    /// A worker process ended (Node's `exit`).
    Exit {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// Exit code or signal.
        status: ExitStatus,
        /// Whether the cluster had asked the worker to stop (Node's `exitedAfterDisconnect`):
        /// true for shutdowns, false for crashes.
        exited_after_disconnect: bool,
    },
    /// A slot will be restarted after `delay`.
    Restarting {
        /// The slot.
        slot: usize,
        /// The delay before the new process is started.
        delay: Duration,
        /// Consecutive early deaths so far (0 when the worker had been up long enough).
        attempt: u32,
    },
    /// A slot exceeded its restart intensity and will not be restarted.
    GaveUp {
        /// The slot.
        slot: usize,
        /// Restarts within the window.
        restarts: usize,
    },
    /// A worker broke the protocol (garbage, oversized frame, wrong version); it is being
    /// killed and replaced.
    ProtocolError {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// What was wrong.
        error: String,
    },
    /// A rolling reload finished.
    Reloaded {
        /// Slots replaced.
        replaced: usize,
        /// Why it stopped early, if it did.
        error: Option<String>,
    },
    /// The cluster is stopping: every worker is being drained.
    Stopping,
    /// The cluster has stopped; no event follows.
    Stopped {
        /// `None` after a clean stop, else why the cluster failed.
        error: Option<String>,
    },
}

/// A worker's output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl<R> ClusterEvent<R> {
    /// The slot the event is about, if any.
    ///
    /// ```
    /// use corral_runtime::ClusterEvent;
    /// let ev: ClusterEvent<()> = ClusterEvent::Message { slot: 3, message: (), span: tracing::Span::none() };
    /// assert_eq!(ev.slot(), Some(3));
    /// ```
    pub fn slot(&self) -> Option<usize> {
        match self {
            ClusterEvent::Fork { slot, .. }
            | ClusterEvent::Online { slot, .. }
            | ClusterEvent::Ready { slot, .. }
            | ClusterEvent::Listening { slot, .. }
            | ClusterEvent::Output { slot, .. }
            | ClusterEvent::Message { slot, .. }
            | ClusterEvent::Disconnect { slot, .. }
            | ClusterEvent::Exit { slot, .. }
            | ClusterEvent::Restarting { slot, .. }
            | ClusterEvent::GaveUp { slot, .. }
            | ClusterEvent::ProtocolError { slot, .. } => Some(*slot),
            ClusterEvent::Reloaded { .. } | ClusterEvent::Stopping | ClusterEvent::Stopped { .. } => None,
        }
    }
}
