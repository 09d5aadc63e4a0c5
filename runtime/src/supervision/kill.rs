//! Why a supervisor killed a worker process.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::ProtocolError;

/// Why the primary killed (SIGKILL) a worker process instead of letting it run or exit.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::KillReason;
///
/// let why = KillReason::MissedHeartbeat { timeout: Duration::from_secs(5) };
/// assert_eq!(why.to_string(), "it missed its heartbeat (5s)");
/// assert!(!why.rules_out_restart());
/// ```
#[derive(Debug, Clone)]
pub enum KillReason {
    /// No pong within `heartbeat_timeout`: its event loop is stuck.
    MissedHeartbeat {
        /// The timeout it missed.
        timeout: Duration,
    },
    /// A foreign worker sent no `WATCHDOG=1` within its watchdog time.
    MissedWatchdog {
        /// The watchdog time it missed.
        timeout: Duration,
    },
    /// Not ready within `listen_timeout`.
    NotReady {
        /// The timeout it missed.
        timeout: Duration,
    },
    /// Told to drain, still alive at `kill_timeout`.
    DrainTimeout {
        /// The timeout it missed.
        timeout: Duration,
    },
    /// It broke the IPC protocol.
    Protocol(Arc<ProtocolError>),
    /// It failed its liveness probe `failures` times in a row: steered out, diagnosed,
    /// drained (killed only if it does not drain within `kill_timeout`) and replaced.
    MissedProbe {
        /// The check it failed, as configured (`http:/healthz`).
        check: String,
        /// Failures in a row.
        failures: u32,
        /// Why the last one failed (a [`ProbeError`](crate::ProbeError)).
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl KillReason {
    /// Whether restarting cannot help: the worker speaks another protocol version.
    pub fn rules_out_restart(&self) -> bool {
        matches!(self, KillReason::Protocol(e) if matches!(**e, ProtocolError::VersionMismatch { .. }))
    }
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillReason::MissedHeartbeat { timeout } => write!(f, "it missed its heartbeat ({timeout:?})"),
            KillReason::MissedWatchdog { timeout } => write!(f, "it sent no WATCHDOG=1 within {timeout:?}"),
            KillReason::NotReady { timeout } => write!(f, "it did not become ready within {timeout:?}"),
            KillReason::DrainTimeout { timeout } => write!(f, "it did not drain within {timeout:?}"),
            KillReason::Protocol(e) => write!(f, "it broke the protocol: {e}"),
            KillReason::MissedProbe { check, failures, error } => {
                write!(f, "it failed its probe ({check}) {failures} times in a row: {error}")
            }
        }
    }
}
