//! Health checks of one worker, made by the primary through the port the worker's clients
//! use: what a check is ([`Check`]), and how often a live worker is checked ([`ProbeConfig`]).
//!
//! A check decides readiness ([`ClusterConfig::ready_check`](crate::ClusterConfig::ready_check),
//! `--ready http:/healthz`) and liveness ([`ClusterConfig::probe`](crate::ClusterConfig::probe),
//! `--probe`); the probing itself lives in [`crate::probe`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One health check of one worker.
///
/// ```
/// use corral_runtime::Check;
///
/// assert_eq!("http:/healthz".parse::<Check>().unwrap(), Check::Http { path: "/healthz".into() });
/// assert_eq!("tcp".parse::<Check>().unwrap(), Check::Tcp);
/// assert_eq!("exec:test -f /tmp/up".parse::<Check>().unwrap().to_string(), "exec:test -f /tmp/up");
/// assert!("http:healthz".parse::<Check>().is_err()); // a path starts with '/'
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    /// `GET PATH` answered 2xx or 3xx (redirects are not followed). The request carries `Host`
    /// and `User-Agent: corral-probe`; at most 64 KiB of the answer is read.
    Http {
        /// The request target: an absolute path, with its query if any.
        path: String,
    },
    /// The connection is accepted: the worker took it off its socket.
    Tcp,
    /// `sh -c COMMAND` exits 0. It runs in a process group of its own (killed with it at the
    /// timeout), with `CORRAL_SLOT`, `CORRAL_PID` and `CORRAL_LISTEN` (the listener's address)
    /// in its environment.
    Exec {
        /// The shell command.
        command: String,
    },
}

impl Check {
    /// Whether the check needs a connection to one chosen worker (an HTTP or TCP check), which
    /// `shared` scheduling cannot make: every worker accepts on one socket there.
    ///
    /// ```
    /// use corral_runtime::Check;
    /// assert!(Check::Tcp.targets_one_worker());
    /// assert!(!Check::Exec { command: "true".into() }.targets_one_worker());
    /// ```
    pub fn targets_one_worker(&self) -> bool {
        !matches!(self, Check::Exec { .. })
    }

    /// The check's kind, as metrics label it: `http`, `tcp` or `exec`.
    ///
    /// ```
    /// assert_eq!(corral_runtime::Check::Tcp.kind(), "tcp");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http { .. } => "http",
            Check::Tcp => "tcp",
            Check::Exec { .. } => "exec",
        }
    }
}

/// A check that is not `http:/PATH`, `tcp` or `exec:COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a health check: use http:/PATH, tcp or exec:COMMAND")]
pub struct CheckError(pub String);

impl FromStr for Check {
    type Err = CheckError;

    fn from_str(s: &str) -> Result<Self, CheckError> {
        let bad = || CheckError(s.to_string());
        if s == "tcp" {
            return Ok(Check::Tcp);
        }
        if let Some(path) = s.strip_prefix("http:") {
            // A request target goes on the request line as it is: no spaces, no control
            // characters, and an absolute path.
            if !path.starts_with('/') || path.len() > 2048 || path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(bad());
            }
            return Ok(Check::Http { path: path.to_string() });
        }
        if let Some(command) = s.strip_prefix("exec:") {
            if command.trim().is_empty() || command.contains('\0') {
                return Err(bad());
            }
            return Ok(Check::Exec { command: command.to_string() });
        }
        Err(bad())
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Http { path } => write!(f, "http:{path}"),
            Check::Tcp => f.write_str("tcp"),
            Check::Exec { command } => write!(f, "exec:{command}"),
        }
    }
}

/// Liveness probes of every ready worker: the `[probe]` table of `corral.toml`, `--probe` and
/// its companions.
///
/// A worker that fails [`failures`](Self::failures) probes in a row is steered out at once,
/// diagnosed (a `Hung` report of what it is doing), drained and replaced by the slot's restart
/// policy (kill reason [`MissedProbe`](crate::KillReason::MissedProbe)). A probe that succeeds
/// before that resets the count.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{Check, ProbeConfig};
///
/// let probe = ProbeConfig::new(Check::Http { path: "/healthz".into() }).every(Duration::from_secs(1)).failures(2);
/// assert_eq!(probe.timeout, Duration::from_secs(1));
/// assert_eq!(probe.grace, Duration::ZERO);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// What is checked.
    pub check: Check,
    /// How often. Default: 5 s.
    pub every: Duration,
    /// How long one probe may take. Default: 1 s.
    pub timeout: Duration,
    /// Failures in a row that condemn the worker. Default: 3.
    pub failures: u32,
    /// How long after a worker is ready its first probe waits. Default: none.
    pub grace: Duration,
}

impl ProbeConfig {
    /// The default interval between probes.
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);
    /// The default time one probe may take.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default number of failures in a row.
    pub const DEFAULT_FAILURES: u32 = 3;

    /// `check` every 5 s, 1 s each, 3 failures in a row, no grace.
    pub fn new(check: Check) -> Self {
        ProbeConfig {
            check,
            every: Self::DEFAULT_EVERY,
            timeout: Self::DEFAULT_TIMEOUT,
            failures: Self::DEFAULT_FAILURES,
            grace: Duration::ZERO,
        }
    }

    /// Sets [`every`](Self::every).
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`failures`](Self::failures).
    #[must_use]
    pub fn failures(mut self, failures: u32) -> Self {
        self.failures = failures;
        self
    }

    /// Sets [`grace`](Self::grace).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_and_print_back() {
        for text in ["http:/healthz", "http:/ready?full=1", "tcp", "exec:curl -fs localhost", "exec:true"] {
            let check: Check = text.parse().expect(text);
            assert_eq!(check.to_string(), text);
        }
        for bad in ["", "http", "http:", "http:/a b", "http:x", "exec:", "exec:  ", "udp", "tcp:80", "notify"] {
            assert_eq!(bad.parse::<Check>(), Err(CheckError(bad.to_string())), "{bad:?}");
        }
    }
}
