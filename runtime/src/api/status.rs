//! The status snapshot of a worker slot (as `pm2 ls` shows).

use std::time::Duration;

use corral_protocol::WorkerStats;

use crate::config::probe::Check;

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// The process was started; no hello yet.
    Starting,
    /// The worker said hello; its behaviour is starting.
    Online,
    /// The worker is ready and gets work.
    Ready,
    /// The worker was told to stop and is draining.
    Stopping,
    /// The process died; a restart is scheduled.
    Restarting,
    /// The slot exceeded its restart intensity.
    GaveUp,
    /// The slot ended without restart (stopped, or a transient/temporary worker exited).
    Stopped,
}

/// One slot's status.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    /// The slot.
    pub slot: usize,
    /// The current process's pid, if one is running.
    pub pid: Option<u32>,
    /// The slot's generation.
    pub generation: u64,
    /// Where the slot is.
    pub state: WorkerState,
    /// How long the current process has been up.
    pub uptime: Option<Duration>,
    /// Restarts of this slot since the cluster started.
    pub restarts: u64,
    /// RSS of the current process in bytes, read from `/proc` by the primary.
    pub rss_bytes: Option<u64>,
    /// User messages received from this slot's workers.
    pub messages_in: u64,
    /// User messages sent to this slot's workers.
    pub messages_out: u64,
    /// The counters from the worker's last pong, if any.
    pub stats: Option<WorkerStats>,
    /// Round trip of the last ping, if any.
    pub heartbeat_latency: Option<Duration>,
    /// The last `STATUS=` line of a foreign worker (socket activation), if any.
    pub status_text: Option<String>,
    /// Whether the slot holds a warm spare ([`ClusterConfig::spares`](crate::ClusterConfig::spares)):
    /// a ready, idle worker that takes a leaving worker's place.
    pub spare: bool,
    /// Reuse-port scheduling: whether new connections are steered to the slot's socket, and
    /// how many wait in its accept queue (`None` in other schedulings).
    pub steering: Option<Steered>,
    /// The last health probe of the current process (readiness or liveness), if any.
    pub probe: Option<LastProbe>,
}

/// The last health probe of a worker, as [`WorkerStatus::probe`] reports it.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{Check, LastProbe};
/// let p = LastProbe { check: Check::Tcp, passed: false, age: Duration::from_secs(2), took: Duration::from_millis(1000),
///     failures: 2, error: Some("no answer within 1s".into()) };
/// assert!(!p.passed && p.failures == 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProbe {
    /// What was checked.
    pub check: Check,
    /// Whether it passed.
    pub passed: bool,
    /// How long ago it was made.
    pub age: Duration,
    /// How long it took.
    pub took: Duration,
    /// Liveness probes failed in a row so far.
    pub failures: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A reuse-port slot's steering, as [`WorkerStatus::steering`] reports it.
///
/// ```
/// use corral_runtime::Steered;
/// let s = Steered { steered_in: false, queued: 3 };
/// assert!(!s.steered_in && s.queued == 3); // a stalled worker: skipped, 3 waiting for it
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steered {
    /// Whether new connections go to the slot's socket (ready, taking its connections, not
    /// being removed).
    pub steered_in: bool,
    /// Connections waiting in the slot's accept queue.
    pub queued: u32,
}

impl WorkerStatus {
    /// A slot with no process and nothing measured yet, in `state`.
    pub(crate) fn without_process(slot: usize, state: WorkerState) -> Self {
        WorkerStatus {
            slot,
            pid: None,
            generation: 0,
            state,
            uptime: None,
            restarts: 0,
            rss_bytes: None,
            messages_in: 0,
            messages_out: 0,
            stats: None,
            heartbeat_latency: None,
            status_text: None,
            spare: false,
            steering: None,
            probe: None,
        }
    }
}
