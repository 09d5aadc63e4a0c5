//! corral's own control messages, [`Control`], and what travels inside them: [`ListenGrant`]
//! and its [`Scheduling`], [`WorkerStats`] and [`PoolStats`] (in pongs), [`LogLevel`], a
//! call's [`Answer`].

use serde::{Deserialize, Serialize};

use crate::handshake::Hello;
use crate::listen::ListenRefusal;

/// A control message: corral's side of the protocol, beside the user's messages.
///
/// # Example
///
/// ```
/// use corral_protocol::{Control, WorkerStats};
///
/// let pong = Control::Pong { nonce: 9, stats: WorkerStats { in_flight: 2, ..Default::default() } };
/// assert!(matches!(pong, Control::Pong { nonce: 9, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Worker → primary, first frame: who the worker is and which protocol it speaks.
    Hello(Hello),
    /// Worker → primary: the worker's behaviour has started; it may be given work.
    Ready,
    /// Worker → primary: listen on `addr` (the primary owns the socket and shares it).
    Listen {
        /// Correlates the answer (and any fds for this listener on the handle channel).
        id: u64,
        /// The address asked for, e.g. `127.0.0.1:3000` or `0.0.0.0:0`.
        addr: String,
    },
    /// Primary → worker: the answer to [`Control::Listen`].
    ListenAck {
        /// The request's id.
        id: u64,
        /// The grant, or why the address could not be listened on.
        result: Result<ListenGrant, ListenRefusal>,
    },
    /// Worker → primary: how many connections the worker has open (sent when it changes,
    /// at most every few milliseconds), for least-connections balancing.
    Load {
        /// Open connections.
        open: u64,
        /// Connections received since the worker started (open or closed).
        accepted: u64,
    },
    /// Primary → worker: a liveness probe, answered from the worker's own event loop.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Worker → primary: the answer to a [`Control::Ping`], with the worker's counters.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// The worker's counters at the time of the pong.
        stats: WorkerStats,
    },
    /// Primary → worker: stop taking work, finish what is in flight, then exit.
    Shutdown {
        /// Milliseconds the worker has before the primary kills it.
        deadline_ms: u64,
    },
    /// Worker → primary: the worker is going away on its own (it began draining).
    Disconnect,
    /// Worker → primary: a log line to re-emit in the primary.
    Log {
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// Either way: the peer did something wrong; the connection is about to close.
    Error {
        /// What was wrong, for humans.
        message: String,
    },
    /// Either way: the answer to a request (a user message carrying a
    /// [`ReplyTo`](crate::ReplyTo)) the other side sent. Added after the other variants:
    /// frames of an older peer decode as before, and it is only sent to a peer that asked.
    Reply {
        /// The call's number on this connection.
        id: u64,
        /// The reply, or why there is none.
        answer: Answer,
    },
    /// Worker → primary: pass `message` on to the worker in slot `to`, or to every other
    /// worker (`None`). The message is postcard-encoded as the workers' own message type.
    Relay {
        /// The slot, or `None` for every other worker.
        to: Option<u32>,
        /// The encoded message.
        message: Vec<u8>,
    },
    /// Primary → worker: a message another worker sent this one ([`Control::Relay`]).
    Relayed {
        /// The sender's slot.
        from: u32,
        /// The encoded message, of this worker's message type.
        message: Vec<u8>,
    },
}

impl Control {
    /// The variant's name, for errors and logs.
    ///
    /// ```
    /// assert_eq!(corral_protocol::Control::Ready.name(), "Ready");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Control::Hello(_) => "Hello",
            Control::Ready => "Ready",
            Control::Listen { .. } => "Listen",
            Control::ListenAck { .. } => "ListenAck",
            Control::Load { .. } => "Load",
            Control::Ping { .. } => "Ping",
            Control::Pong { .. } => "Pong",
            Control::Shutdown { .. } => "Shutdown",
            Control::Disconnect => "Disconnect",
            Control::Log { .. } => "Log",
            Control::Error { .. } => "Error",
            Control::Reply { .. } => "Reply",
            Control::Relay { .. } => "Relay",
            Control::Relayed { .. } => "Relayed",
        }
    }
}

/// The answer to one call, as it travels in a [`Control::Reply`] (see
/// [`call`](crate::call)).
///
/// ```
/// use corral_protocol::{Answer, Control};
/// let reply = Control::Reply { id: 3, answer: Answer::Value(postcard::to_stdvec(&42u8).unwrap()) };
/// assert_eq!(reply.name(), "Reply");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The reply, postcard-encoded as the request's reply type.
    Value(Vec<u8>),
    /// The handler failed (or dropped the request without answering): why, for humans.
    Failed(String),
}

/// How a worker gets its connections for a granted listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheduling {
    /// The primary accepts and passes each connection to the next ready worker.
    RoundRobin,
    /// As round robin, to the ready worker with the fewest open connections.
    LeastConnections,
    /// The listening socket itself is passed; workers accept on it.
    Shared,
    /// Each worker binds its own `SO_REUSEPORT` socket to the address.
    ReusePort,
    /// The primary accepts and passes every connection from one client (its address, or a
    /// prefix of it, as the cluster configures) to the same ready worker, by rendezvous
    /// hashing over the worker slots: a restart or a scale step moves only the clients of the
    /// slots that changed (socket.io-style sessions).
    ///
    /// Added after the other variants, so that frames naming them decode as before.
    Sticky,
}

impl Scheduling {
    /// Whether the primary accepts the connections and passes each to a worker (round robin,
    /// least connections), rather than the workers accepting themselves (shared, reuse-port).
    ///
    /// ```
    /// use corral_protocol::Scheduling;
    /// assert!(Scheduling::LeastConnections.primary_accepts());
    /// assert!(Scheduling::Sticky.primary_accepts());
    /// assert!(!Scheduling::ReusePort.primary_accepts());
    /// ```
    pub fn primary_accepts(self) -> bool {
        match self {
            Scheduling::RoundRobin | Scheduling::LeastConnections | Scheduling::Sticky => true,
            Scheduling::Shared | Scheduling::ReusePort => false,
        }
    }
}

/// What a worker was granted for a [`Control::Listen`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenGrant {
    /// The address actually bound (port 0 resolved).
    pub addr: String,
    /// How connections reach the worker.
    pub scheduling: Scheduling,
}

/// Severity of a [`Control::Log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Information.
    Info,
    /// Debugging detail.
    Debug,
}

/// A worker's counters, reported in every [`Control::Pong`].
///
/// ```
/// # use corral_protocol::WorkerStats;
/// assert_eq!(WorkerStats::default().handled, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Requests or connections being handled right now.
    pub in_flight: u64,
    /// Requests or connections handled since the worker started.
    pub handled: u64,
    /// User messages received from the primary.
    pub messages_in: u64,
    /// User messages sent to the primary.
    pub messages_out: u64,
    /// The worker's CPU pool counters, if it has a pool.
    pub pool: Option<PoolStats>,
}

/// A worker's CPU pool counters, as reported in heartbeats.
///
/// ```
/// # use corral_protocol::PoolStats;
/// assert_eq!(PoolStats::default().running, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Pool threads.
    pub threads: u64,
    /// Places in the queue.
    pub queue_capacity: u64,
    /// Tasks waiting now.
    pub queued: u64,
    /// Tasks running now.
    pub running: u64,
    /// Tasks that returned.
    pub done: u64,
    /// Tasks refused because the queue was full.
    pub rejected: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks skipped because their caller had gone.
    pub skipped: u64,
}
