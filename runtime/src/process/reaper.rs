//! The reaper: corral as a container's init (PID 1) or as a child subreaper.
//!
//! A worker that starts a child which leaves its process group (`setsid`) and outlives its
//! parent — what daemonising libraries, `npm` and shell wrappers, crash reporters do —
//! leaves an orphan. The kernel gives it to the nearest ancestor that is a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`), or to the PID namespace's init. As PID 1 corral is that init;
//! elsewhere it makes itself a subreaper, so that its workers' orphans stay in its tree
//! instead of escaping supervision. Either way they become corral's children, and each must
//! be reaped when it exits or it stays a zombie until the pid limit.
//!
//! The reaper never calls `waitpid(-1)`: that would take a worker's exit status from the task
//! that waits for it (`waiter.rs`). On every `SIGCHLD` (and once a second, in case one was
//! missed), it lists this process's children and waits, without blocking, only for those
//! that are not in the book of children corral forked itself (`sys/children.rs`, written
//! under a lock held across each fork).
//!
//! After a stop, [`Reaper::end_orphans`] sends `SIGTERM` to every adopted process still
//! alive, and `SIGKILL` to those still there after its patience (s6-overlay's and systemd's
//! way with the leftovers of a service).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::sys::children::unknown_among;
use crate::sys::procfs::children_of_self;

/// How often the children are listed without a `SIGCHLD` (one coalesced with another, a
/// sweep skipped while a fork held the book).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a sweep is tried again when a fork held the book.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// Processes adopted (orphans that became this process's children) since it started.
static ADOPTED: AtomicU64 = AtomicU64::new(0);

/// How many orphaned processes this process has adopted (and reaped or killed) since it
/// started: `orphans_adopted` in the status.
///
/// ```
/// assert_eq!(corral_runtime::orphans_adopted(), 0); // no reaper in this process
/// ```
pub fn orphans_adopted() -> u64 {
    ADOPTED.load(Ordering::Relaxed)
}

/// How the process came to adopt orphans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaperRole {
    /// It is PID 1 of its PID namespace (a container's init): every orphan of the namespace
    /// comes to it.
    Init,
    /// It made itself a child subreaper: its descendants' orphans come to it.
    Subreaper,
    /// The kernel refused `PR_SET_CHILD_SUBREAPER`: only its own children are reaped.
    Parent,
}

/// What the reaper task and its owner share.
#[derive(Default)]
struct Shared {
    /// Adopted processes seen alive (or dead, not reaped yet): pid → nothing.
    seen: Mutex<HashSet<u32>>,
}

impl Shared {
    /// Reaps every exited child that corral did not fork itself; `false` when the book was
    /// held by a fork (look again soon).
    fn sweep(&self) -> bool {
        let Some(unknown) = unknown_among(&children_of_self()) else { return false };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for pid in unknown {
            if seen.insert(pid) {
                ADOPTED.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pid, "adopted an orphaned process");
            }
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(_, code)) => {
                    seen.remove(&pid);
                    tracing::debug!(pid, code, "reaped an orphaned process");
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    seen.remove(&pid);
                    tracing::debug!(pid, signal = signal.as_str(), "reaped an orphaned process");
                }
                // Stopped or continued: alive.
                Ok(_) => {}
                // Gone already (ECHILD): someone else's after all, or reaped.
                Err(_) => {
                    seen.remove(&pid);
                }
            }
        }
        true
    }

    /// Sends `signal` to every adopted process still alive but those in `spare`; the pids
    /// it was sent to.
    fn signal_adopted(&self, signal: Signal, spare: &HashSet<u32>) -> Vec<u32> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Each is our unreaped child: its pid cannot have been reused.
        seen.iter()
            .copied()
            .filter(|pid| !spare.contains(pid) && kill(Pid::from_raw(*pid as i32), signal).is_ok())
            .collect()
    }

    fn adopted_alive(&self) -> usize {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The reaper of this process's orphaned descendants (see the module's documentation).
/// Start one per process, before the cluster; it stops with its tokio runtime or when
/// dropped.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn demo() -> std::io::Result<()> {
/// let reaper = corral_runtime::Reaper::start()?;
/// // … run the cluster until it has stopped …
/// let killed = reaper.end_orphans(Duration::from_secs(5)).await;
/// println!("{killed} orphans needed SIGKILL");
/// # Ok(()) }
/// ```
pub struct Reaper {
    role: ReaperRole,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").field("role", &self.role).finish_non_exhaustive()
    }
}

impl Reaper {
    /// Makes this process a child subreaper unless it is PID 1, and starts reaping its
    /// adopted children. Call it inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The `SIGCHLD` handler cannot be installed.
    pub fn start() -> std::io::Result<Reaper> {
        let role = if std::process::id() == 1 {
            ReaperRole::Init
        } else {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no
            // memory of ours.
            let made = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } == 0;
            if made {
                ReaperRole::Subreaper
            } else {
                let e = std::io::Error::last_os_error();
                tracing::warn!(error = %e, "cannot become a child subreaper: workers' orphans escape supervision");
                ReaperRole::Parent
            }
        };
        tracing::debug!(?role, "reaping orphaned processes");
        let mut chld = signal(SignalKind::child())?;
        let shared = Arc::new(Shared::default());
        let sweeper = shared.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = chld.recv() => {}
                    _ = ticks.tick() => {}
                }
                while !sweeper.sweep() {
                    tokio::time::sleep(BUSY_RETRY).await;
                }
            }
        });
        Ok(Reaper { role, shared, task })
    }

    /// Whether this process is its namespace's init or a subreaper.
    pub fn role(&self) -> ReaperRole {
        self.role
    }

    /// Adopted processes alive now (or exited, not reaped yet).
    pub fn adopted_alive(&self) -> usize {
        self.shared.adopted_alive()
    }

    /// Ends every adopted process, for a stop once the workers are gone: `SIGTERM` now, and to
    /// each one adopted meanwhile (a killed orphan's own orphans come to us too), `SIGKILL`
    /// to those still alive after `patience`. Returns once none is left (or a second after
    /// the `SIGKILL`); how many needed it.
    pub async fn end_orphans(&self, patience: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + patience;
        let mut killed = 0;
        let mut termed = HashSet::new();
        loop {
            if !self.shared.sweep() {
                tokio::time::sleep(BUSY_RETRY).await;
                continue;
            }
            if self.shared.adopted_alive() == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                killed = self.shared.signal_adopted(Signal::SIGKILL, &HashSet::new()).len();
                tracing::warn!(killed, "orphaned processes still alive at the stop's end: SIGKILL");
                let reaped = async {
                    while self.shared.adopted_alive() > 0 {
                        self.shared.sweep();
                        tokio::time::sleep(BUSY_RETRY).await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), reaped).await;
                break;
            }
            let sent = self.shared.signal_adopted(Signal::SIGTERM, &termed);
            if !sent.is_empty() {
                tracing::info!(orphans = sent.len(), "stopping orphaned processes (SIGTERM)");
                termed.extend(sent);
            }
            tokio::time::sleep(BUSY_RETRY).await;
        }
        killed
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
