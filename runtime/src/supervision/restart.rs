//! Restart types, after Erlang/OTP's child specifications.

use crate::supervision::exit::ExitStatus;

/// When a worker slot's process is restarted after it exits (OTP's `restart` child spec).
///
/// A process that exits because the cluster told it to (shutdown, scale-down, reload) is never
/// restarted, whatever the restart type.
///
/// # Example
///
/// ```
/// use corral_runtime::{ExitStatus, Restart};
///
/// let clean = ExitStatus { code: Some(0), signal: None };
/// let crashed = ExitStatus { code: None, signal: Some(9) };
/// assert!(Restart::Permanent.should_restart(&clean));
/// assert!(!Restart::Transient.should_restart(&clean));
/// assert!(Restart::Transient.should_restart(&crashed));
/// assert!(!Restart::Temporary.should_restart(&crashed));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted (the default, as Node users expect of a server).
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit: a non-zero exit code or a signal.
    Transient,
    /// Never restarted.
    Temporary,
}

impl Restart {
    /// Whether a process that ended with `status` is restarted under this type.
    pub fn should_restart(self, status: &ExitStatus) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !status.success(),
            Restart::Temporary => false,
        }
    }
}
