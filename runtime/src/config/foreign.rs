//! Foreign workers: any program, in any language, started by socket activation (the protocol
//! of systemd's `sd_listen_fds` and `sd_notify`) instead of corral's own IPC.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::config::probe::Check;

/// A program that does not speak corral's protocol, run as the cluster's workers.
///
/// Each worker gets the cluster's listening sockets as systemd passes them: fds 3, 4, …,
/// `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` (its own pid); a `NOTIFY_SOCKET` for
/// `READY=1`, `STATUS=`, `STOPPING=1` and `WATCHDOG=1`; and `CORRAL_SLOT`,
/// `CORRAL_GENERATION`, `CORRAL_WORKERS`.
///
/// ```
/// use corral_runtime::{ForeignWorker, ListenSpec, Readiness};
///
/// let web = ForeignWorker::new("python3")
///     .arg("app.py")
///     .listen("http=127.0.0.1:0".parse::<ListenSpec>().unwrap())
///     .ready(Readiness::Notify);
/// assert_eq!(web.listen[0].name, "http");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignWorker {
    /// The program: a path, or a name looked up in `PATH`.
    pub program: PathBuf,
    /// Its arguments (without argv\[0\]).
    pub args: Vec<OsString>,
    /// The sockets the primary binds before any worker starts, passed as fds 3, 4, … in order.
    pub listen: Vec<ListenSpec>,
    /// When a new worker counts as ready. Default: [`Readiness::Notify`].
    pub ready: Readiness,
    /// The signal that asks a worker to drain and exit. Default: SIGTERM (15). At
    /// `kill_timeout` its whole process group gets SIGKILL.
    pub stop_signal: i32,
    /// When set, `WATCHDOG_USEC` tells each worker to send `WATCHDOG=1` at least this often;
    /// one that misses it is killed and replaced. Default: none.
    pub watchdog: Option<Duration>,
    /// The workers' working directory. Default: the primary's.
    pub cwd: Option<PathBuf>,
    /// The user the workers run as (the primary binds privileged ports first). Default: the
    /// primary's.
    pub user: Option<String>,
    /// The group the workers run as. Default: the user's primary group, or the primary's.
    pub group: Option<String>,
}

impl ForeignWorker {
    /// `program` with no arguments, no listeners, ready by `READY=1`, stopped by SIGTERM.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ForeignWorker {
            program: program.into(),
            args: Vec::new(),
            listen: Vec::new(),
            ready: Readiness::Notify,
            stop_signal: libc::SIGTERM,
            watchdog: None,
            cwd: None,
            user: None,
            group: None,
        }
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds a listener.
    #[must_use]
    pub fn listen(mut self, spec: ListenSpec) -> Self {
        self.listen.push(spec);
        self
    }

    /// Sets [`ready`](Self::ready).
    #[must_use]
    pub fn ready(mut self, ready: Readiness) -> Self {
        self.ready = ready;
        self
    }
}

/// When a foreign worker counts as ready.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::Readiness;
/// assert_eq!("delay:300".parse::<Readiness>().unwrap(), Readiness::Delay(Duration::from_millis(300)));
/// assert_eq!("notify".parse::<Readiness>().unwrap(), Readiness::Notify);
/// assert_eq!("tcp".parse::<Readiness>().unwrap(), Readiness::Check(corral_runtime::Check::Tcp));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// When it sends `READY=1` to its `NOTIFY_SOCKET` (systemd's `Type=notify`).
    Notify,
    /// This long after it started (einhorn's timer ACK), for programs that speak nothing.
    Delay(Duration),
    /// When a health check of it passes, tried every 100 ms (backing off to 1 s) from its
    /// start until `listen_timeout`: `http:/PATH`, `tcp` or `exec:COMMAND`.
    Check(Check),
}

/// A `--ready` value that is not `notify`, `delay:MS` or a [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a readiness: use notify, delay:MS, http:/PATH, tcp or exec:COMMAND")]
pub struct ReadinessError(pub String);

impl FromStr for Readiness {
    type Err = ReadinessError;

    fn from_str(s: &str) -> Result<Self, ReadinessError> {
        if s == "notify" {
            return Ok(Readiness::Notify);
        }
        if let Some(ms) = s.strip_prefix("delay:") {
            return ms
                .parse::<u64>()
                .map(|ms| Readiness::Delay(Duration::from_millis(ms)))
                .map_err(|_| ReadinessError(s.to_string()));
        }
        s.parse::<Check>().map(Readiness::Check).map_err(|_| ReadinessError(s.to_string()))
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Notify => f.write_str("notify"),
            Readiness::Delay(d) => write!(f, "delay:{}", d.as_millis()),
            Readiness::Check(check) => check.fmt(f),
        }
    }
}

/// One listener of a foreign cluster: `[NAME=]ADDR`.
///
/// ```
/// use corral_runtime::{ListenAddr, ListenSpec};
///
/// let spec: ListenSpec = "127.0.0.1:8080".parse().unwrap();
/// assert_eq!(spec.name, "unknown"); // systemd's default name
/// let spec: ListenSpec = "admin=unix:/run/app.sock".parse().unwrap();
/// assert_eq!(spec.addr, ListenAddr::Unix("/run/app.sock".into()));
/// let spec: ListenSpec = "[::1]:0".parse().unwrap();
/// assert_eq!(spec.to_string(), "unknown=[::1]:0");
/// assert!("web=".parse::<ListenSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// Where.
    pub addr: ListenAddr,
}

/// Where a foreign cluster listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; port 0 resolves once, for every worker.
    Tcp(SocketAddr),
    /// A Unix stream socket at this path (an old socket file there is replaced).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => addr.fmt(f),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.addr)
    }
}

/// Why a `[NAME=]ADDR` listener was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenSpecError {
    /// The address part is not `HOST:PORT` with a numeric host, `[V6]:PORT` or `unix:/path`.
    #[error("{0:?} is not an address: use 127.0.0.1:8080, [::1]:0 or unix:/path")]
    Address(String),
    /// The name is empty or has a character `LISTEN_FDNAMES` cannot carry (`:`, control
    /// characters, over 255 bytes).
    #[error("{0:?} is not a listener name: 1-255 printable characters, no ':'")]
    Name(String),
}

impl FromStr for ListenSpec {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<Self, ListenSpecError> {
        // A name has no ':' and the address always has one, so the first '=' before any ':'
        // separates them.
        let (name, addr) = match s.split_once('=') {
            Some((name, addr)) if !name.contains(':') => (name, addr),
            _ => ("unknown", s),
        };
        if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control() || c == ':') {
            return Err(ListenSpecError::Name(name.to_string()));
        }
        let addr = match addr.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => ListenAddr::Unix(PathBuf::from(path)),
            Some(_) => return Err(ListenSpecError::Address(addr.to_string())),
            None => ListenAddr::Tcp(addr.parse().map_err(|_| ListenSpecError::Address(addr.to_string()))?),
        };
        Ok(ListenSpec { name: name.to_string(), addr })
    }
}
