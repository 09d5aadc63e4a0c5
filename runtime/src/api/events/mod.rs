//! Lifecycle and message events, with Node's names: [`ClusterEvent`] here, the bus that
//! carries them to every subscriber ([`bus`]), its lock-free flow-control credits
//! ([`credits`]) and the tracing spans of fork, restart, reload and shutdown ([`lifecycle`]).

pub(crate) mod bus;
pub(crate) mod credits;
pub mod lifecycle;

use std::time::Duration;

use std::sync::Arc;

use corral_protocol::ProtocolError;

use crate::api::error::ProbeError;
use crate::api::error::{ClusterError, ReloadError};
use crate::api::reports::ScaleReason;
use crate::config::probe::Check;
use crate::supervision::exit::ExitStatus;
use crate::sys::hang::HangReport;

/// Something that happened in the cluster. Subscribe with
/// [`ClusterHandle::subscribe`](crate::api::handle::ClusterHandle::subscribe).
///
/// Per slot, the order is: `Fork`, `Online`, `Ready`, any `Message`s, `Disconnect`, `Exit`,
/// then `Restarting` (and a new `Fork`) or `GaveUp`.
///
/// `R` is the type of the messages workers send to the primary.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClusterEvent<R> {
    /// A worker process was started (Node's `fork`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Fork { slot, generation, pid } => println!("slot {slot} forked pid {pid} (generation {generation})"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Fork {
        /// The slot.
        slot: usize,
        /// The slot's generation (1 for the first process of the slot).
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// The worker said hello with a matching protocol version (Node's `online`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Online { slot, pid, .. } => println!("slot {slot}: pid {pid} said hello"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Online {
        /// The slot.
        slot: usize,
        /// The generation.
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// The worker's behaviour has started; it gets work from now on.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Ready { slot, .. } => cluster.send_to(slot, "welcome".to_string()).await?,
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Ready {
        /// The slot.
        slot: usize,
        /// The generation.
        generation: u64,
        /// The process id.
        pid: u32,
    },
    /// A worker listens on an address (Node's `listening`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Listening { slot, addr } => println!("slot {slot} listens on {addr}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Listening {
        /// The slot.
        slot: usize,
        /// The address the primary bound for it (port 0 resolved).
        addr: std::net::SocketAddr,
    },
    /// A line a worker wrote to stdout or stderr, with [`WorkerOutput::Capture`].
    ///
    /// [`WorkerOutput::Capture`]: crate::config::cluster::WorkerOutput::Capture
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Output { slot, pid, stream, line } => println!("[{slot}:{pid} {stream:?}] {line}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Message { slot, message, .. } => println!("slot {slot} reports {message}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Disconnect { slot, pid } => println!("slot {slot}: pid {pid} closed its channel"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Disconnect {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
    },
    /// A worker process ended (Node's `exit`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Exit { slot, status, exited_after_disconnect, .. } if !exited_after_disconnect => {
    ///             eprintln!("slot {slot} died: {status}")
    ///         }
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
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
    /// A worker missed its heartbeat: what it was doing, recorded just before the SIGKILL
    /// (its `Exit` follows). See [`HangReport`].
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::Hung { slot, pid, report } = event {
    ///         eprintln!("slot {slot}: pid {pid} hung:\n{report}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Hung {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// Its threads and, for a corral worker, a backtrace of its event loop.
        report: Arc<HangReport>,
    },
    /// One health probe of a worker was made (readiness or liveness; see
    /// [`ClusterConfig::probe`](crate::ClusterConfig::probe)). The metrics count these. There
    /// is one per probe (every `every` per worker, every 100 ms while a ready check fails):
    /// like every lifecycle event it waits in each subscriber's queue until read, so read
    /// your event stream (or drop it).
    Probed {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// What was checked.
        check: Check,
        /// `false`: a readiness probe of a starting worker; `true`: a liveness probe.
        live: bool,
        /// How long it took.
        took: Duration,
        /// Why it failed, if it did.
        error: Option<Arc<ProbeError>>,
    },
    /// A worker failed its liveness probe [`ProbeConfig::failures`](crate::ProbeConfig::failures)
    /// times in a row: it is steered out, diagnosed (a `Hung` event follows), drained and
    /// replaced by the slot's restart policy (kill reason
    /// [`MissedProbe`](crate::KillReason::MissedProbe)).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::ProbeFailed { slot, pid, check, error } = event {
    ///         eprintln!("slot {slot}: pid {pid} failed {check}: {error}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ProbeFailed {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// The check it failed.
        check: Check,
        /// Why the last probe failed.
        error: Arc<ProbeError>,
    },
    /// A slot's worker process could not be started (`fork`/`exec` or its sockets failed).
    ///
    /// A `transient` failure is the machine out of a resource (`EAGAIN`: `RLIMIT_NPROC` or
    /// the kernel's process table, `ENOMEM`, `EMFILE`/`ENFILE`): the slot retries with its
    /// backoff for as long as it lasts, and these retries do not count toward the restart
    /// intensity (a crowded machine never makes a slot give up). Any other failure (a missing
    /// or non-executable program) counts as an early death, so a broken program gives up.
    /// A `Restarting` event follows either way, unless the slot gives up.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::StartFailed { slot, error, transient } = event {
    ///         eprintln!("slot {slot}: cannot start a worker ({error}); retried: {transient}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    StartFailed {
        /// The slot.
        slot: usize,
        /// Why.
        error: Arc<std::io::Error>,
        /// Out of a resource: retried with backoff, outside the restart intensity.
        transient: bool,
    },
    /// A slot will be restarted after `delay`.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Restarting { slot, delay, attempt } => println!("slot {slot}: restart {attempt} in {delay:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Restarting {
        /// The slot.
        slot: usize,
        /// The delay before the new process is started.
        delay: Duration,
        /// Consecutive early deaths so far (0 when the worker had been up long enough).
        attempt: u32,
    },
    /// A slot exceeded its restart intensity and will not be restarted.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::GaveUp { slot, restarts } => eprintln!("slot {slot} gave up after {restarts} restarts"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    GaveUp {
        /// The slot.
        slot: usize,
        /// Restarts within the window.
        restarts: usize,
    },
    /// A warm spare ([`ClusterConfig::spares`](crate::ClusterConfig::spares)) took the place of
    /// a worker that left (died, was recycled, failed its probe): `slot`, which held the
    /// spare, takes connections from now on; `replaced` starts the next spare.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().spares(1)).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::SpareTookOver { slot, replaced } = event {
    ///         eprintln!("spare slot {slot} took slot {replaced}'s place");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    SpareTookOver {
        /// The slot that held the spare (active from now on).
        slot: usize,
        /// The slot whose worker left (it holds the next spare).
        replaced: usize,
    },
    /// A worker broke the protocol (garbage, oversized frame, wrong version); it is being
    /// killed and replaced.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::ProtocolError { slot, error, .. } => eprintln!("slot {slot} broke the protocol: {error}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ProtocolError {
        /// The slot.
        slot: usize,
        /// The process id.
        pid: u32,
        /// What was wrong.
        error: Arc<ProtocolError>,
    },
    /// The number of workers changed: an autoscaler's step, a scale asked for, a reloaded
    /// configuration. Workers added start (ready-gated); removed ones drain.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::Scaled { from, to, reason } = event {
    ///         println!("{from} -> {to} workers: {reason}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Scaled {
        /// Active workers before.
        from: usize,
        /// Active workers after.
        to: usize,
        /// Why.
        reason: ScaleReason,
    },
    /// A rolling reload started (systemd hears `RELOADING=1`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Reloading { slots } => println!("replacing {slots} workers"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Reloading {
        /// Slots to replace.
        slots: usize,
    },
    /// A rolling reload finished.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Reloaded { replaced, error: Some(why) } => eprintln!("reload stopped after {replaced}: {why}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Reloaded {
        /// Slots replaced.
        replaced: usize,
        /// Why it stopped early, if it did.
        error: Option<ReloadError>,
    },
    /// This primary was upgraded in place (it is the new image, same pid) and the rolling
    /// reload that replaced the workers it took over ended: `error` says why it stopped
    /// early, in which case the old workers of the slots not replaced keep serving.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let ClusterEvent::Upgraded { upgrades, error: None, .. } = event {
    ///         eprintln!("upgrade {upgrades} complete");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Upgraded {
        /// How many upgrades this primary has been through.
        upgrades: u64,
        /// Slots whose worker was replaced by one of the new image.
        replaced: usize,
        /// Why the replacement stopped early, if it did.
        error: Option<ReloadError>,
    },
    /// A peer node of the node set is up: its first heartbeat, or its first after it was
    /// down (`cluster` feature; see `corral_runtime::node`).
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::NodeUp { node, .. } => println!("node {node} up"),
    ///         ClusterEvent::NodeDown { node, .. } => eprintln!("node {node} down"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    NodeUp {
        /// The peer's node name.
        node: String,
        /// Its node server's address.
        listen: String,
    },
    /// A peer node was silent for the heartbeat timeout and is reported down (its sessions
    /// dropped; it is redialled with backoff).
    NodeDown {
        /// The peer's node name.
        node: String,
        /// How long it had been silent.
        silent: std::time::Duration,
    },
    /// The cluster is stopping: every worker is being drained.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Stopping => println!("draining every worker"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Stopping,
    /// The cluster has stopped; no event follows.
    ///
    /// ```no_run
    /// # use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// # let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClusterEvent::Stopped { error } => {
    ///             println!("stopped: {}", error.map_or("cleanly".to_string(), |e| e.to_string()));
    ///             break;
    ///         }
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    Stopped {
        /// `None` after a clean stop, else why the cluster failed.
        error: Option<Arc<ClusterError>>,
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
            | ClusterEvent::Hung { slot, .. }
            | ClusterEvent::Probed { slot, .. }
            | ClusterEvent::ProbeFailed { slot, .. }
            | ClusterEvent::StartFailed { slot, .. }
            | ClusterEvent::Restarting { slot, .. }
            | ClusterEvent::GaveUp { slot, .. }
            | ClusterEvent::SpareTookOver { slot, .. }
            | ClusterEvent::ProtocolError { slot, .. } => Some(*slot),
            ClusterEvent::Reloading { .. }
            | ClusterEvent::Scaled { .. }
            | ClusterEvent::Reloaded { .. }
            | ClusterEvent::Upgraded { .. }
            | ClusterEvent::NodeUp { .. }
            | ClusterEvent::NodeDown { .. }
            | ClusterEvent::Stopping
            | ClusterEvent::Stopped { .. } => None,
        }
    }
}
