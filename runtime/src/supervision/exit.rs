//! How a worker process ended.

use std::fmt;

/// The exit of a worker process: its exit code, or the signal that killed it.
///
/// ```
/// use corral_runtime::ExitStatus;
/// let s = ExitStatus { code: None, signal: Some(9) };
/// assert!(!s.success());
/// assert_eq!(s.to_string(), "killed by signal 9 (SIGKILL)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when the process exited.
    pub code: Option<i32>,
    /// The signal, when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus { code: status.code(), signal: status.signal() }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "killed by signal {sig} ({name})")
            }
            (None, None) => write!(f, "ended with an unknown status"),
        }
    }
}
