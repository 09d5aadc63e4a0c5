//! The cluster's configuration (a rolling reload re-reads it through a [`Reconfigure`] hook).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use corral_protocol::{DEFAULT_MAX_FRAME_LENGTH, Scheduling};

use crate::config::autoscale::Autoscale;
use crate::config::control_socket::ControlSocket;
use crate::config::error::{ConfigError, ConfigNumber, ConfigProblem};
use crate::config::foreign::ForeignWorker;
use crate::config::node::NodeConfig;
use crate::config::probe::{Check, ProbeConfig};
use crate::config::probe_rules::{check_problem, probe_problem};
use crate::config::sticky_key::StickyKey;
use crate::supervision::backoff::Backoff;
use crate::supervision::escalation::Escalation;
use crate::supervision::restart::Restart;

/// The reload's hook: declared here, as a child of this module (it yields a [`ClusterConfig`]).
pub(crate) mod reconfigure;

use reconfigure::Reconfigure;

/// Which program a worker process runs.
///
/// ```
/// use corral_runtime::WorkerExec;
/// assert_eq!(WorkerExec::default(), WorkerExec::CurrentExe);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WorkerExec {
    /// The primary's own image (`/proc/self/exe`) with the primary's own arguments: one binary
    /// that is primary or worker by its environment, as in Node's `cluster.fork()`.
    #[default]
    CurrentExe,
    /// Another executable (Node's `setupPrimary({ exec, args })`). It must speak corral's
    /// protocol on fds 3 and 4, e.g. by calling `corral::main` too.
    Program {
        /// Path of the executable.
        path: PathBuf,
        /// Its arguments (without argv\[0\]).
        args: Vec<OsString>,
    },
    /// Any program, in any language, started by socket activation (see [`ForeignWorker`]).
    /// The cluster's scheduling must be [`Scheduling::ReusePort`] (each slot its own socket,
    /// which the primary keeps open across restarts) or [`Scheduling::Shared`].
    Foreign(ForeignWorker),
}

impl WorkerExec {
    /// The foreign program, when the workers are one.
    pub fn foreign(&self) -> Option<&ForeignWorker> {
        match self {
            WorkerExec::Foreign(foreign) => Some(foreign),
            WorkerExec::CurrentExe | WorkerExec::Program { .. } => None,
        }
    }
}

/// Where a worker's stdout and stderr go.
///
/// ```
/// use corral_runtime::WorkerOutput;
/// assert_eq!(WorkerOutput::default(), WorkerOutput::Inherit);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerOutput {
    /// The primary's own stdout and stderr (Node's default).
    #[default]
    Inherit,
    /// Captured by the primary and re-emitted line by line, as `tracing` events (target
    /// `corral::worker`, with slot, pid and stream) and as [`ClusterEvent::Output`] events
    /// (Node's `silent: true`, without the plumbing).
    ///
    /// [`ClusterEvent::Output`]: crate::api::events::ClusterEvent::Output
    Capture,
}

/// Where the workers' output is written, besides the primary's log and `corral logs`.
///
/// ```
/// use corral_runtime::LogFiles;
/// let logs = LogFiles::new("/var/log/web");
/// assert_eq!(logs.max_bytes, 10 << 20);
/// assert_eq!(logs.keep, 5);
/// assert!(!logs.per_slot);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// One file per slot (`<name>-<slot>.log`) instead of one per cluster (`<name>.log`).
    pub per_slot: bool,
    /// A file that reaches this size is rotated (`.1`, `.2`, …). Default: 10 MiB.
    pub max_bytes: u64,
    /// Rotated files kept. Default: 5.
    pub keep: usize,
}

impl LogFiles {
    /// One file per cluster in `dir`, rotated at 10 MiB, 5 kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogFiles { dir: dir.into(), per_slot: false, max_bytes: 10 << 20, keep: 5 }
    }
}

/// Configuration of a [`Cluster`](crate::cluster::Cluster).
///
/// Every field has a chained setter of the same name. [`ClusterConfig::validate`] refuses a
/// bad value with a message naming the field; spawning a cluster validates first.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{ClusterConfig, Restart};
///
/// let config = ClusterConfig::default()
///     .workers(4)
///     .restart(Restart::Transient)
///     .max_restarts(3)
///     .period(Duration::from_secs(30));
/// assert!(config.validate().is_ok());
///
/// let err = ClusterConfig::default().workers(0).validate().unwrap_err();
/// assert!(err.to_string().contains("workers"));
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of worker slots. Default: the number of CPUs.
    pub workers: usize,
    /// Warm spares: this many more workers are started, become ready, and wait, idle (no
    /// connection is dispatched or steered to them). When a worker dies, is recycled or fails
    /// its probe, a ready spare takes its place at once (it is dispatched to, or its socket is
    /// steered in), and the worker that left restarts in the background as the new spare, so
    /// a crash is served again without waiting for a process to start. A rolling reload
    /// replaces the spares too. [`workers`](Self::workers) (and `corral scale`) count the
    /// active workers only. Refused with [`Scheduling::Shared`], where every worker accepts
    /// on the one socket. Default: 0.
    ///
    /// ```
    /// use corral_runtime::ClusterConfig;
    ///
    /// let config = ClusterConfig::default().workers(4).spares(1);
    /// assert!(config.validate().is_ok());
    /// ```
    pub spares: usize,
    /// Restart type of every slot. Default: [`Restart::Permanent`].
    pub restart: Restart,
    /// Backoff between restarts after early deaths.
    pub backoff: Backoff,
    /// A worker that was up at least this long before it died is restarted at once and its
    /// backoff resets. Default: 1 s (PM2's `min_uptime`).
    pub min_uptime: Duration,
    /// At most this many restarts of one slot within [`period`](Self::period); one more and
    /// the slot gives up. Default: 5 (systemd's `StartLimitBurst`).
    pub max_restarts: u32,
    /// The window for [`max_restarts`](Self::max_restarts). Default: 10 s (systemd's
    /// `StartLimitIntervalSec`).
    pub period: Duration,
    /// How connections to shared listeners reach the workers. Default:
    /// [`Scheduling::RoundRobin`] (as Node on Linux).
    pub scheduling: Scheduling,
    /// What of a client's address keeps it on one worker under [`Scheduling::Sticky`]. A
    /// rolling reload that re-reads the configuration ([`reconfigure`](Self::reconfigure))
    /// may change it: connections accepted from then on are placed by the new key (open ones
    /// stay where they are). Default: [`StickyKey::Ip`].
    pub sticky_key: StickyKey,
    /// With [`Scheduling::ReusePort`]: the primary steers each new connection by the client's
    /// address ([`sticky_key`](Self::sticky_key)) instead of the kernel's flow hash, so one
    /// client keeps its worker and a worker that goes moves only its own clients (rendezvous
    /// over 1,024 buckets; what `corral run --sched sticky` does). The kernel hands the
    /// connections out, not the primary; [`Scheduling::Sticky`] is the primary-accept
    /// variant, placed by the same hash as [`send_keyed`](crate::ClusterHandle::send_keyed).
    /// Default: `false`.
    pub steer_by_client: bool,
    /// What happens when a slot gives up. Default: [`Escalation::Stop`].
    pub escalation: Escalation,
    /// How long a stopping worker may take to drain before it is killed. Default: 5 s.
    pub kill_timeout: Duration,
    /// How long a new worker may take to say hello and become ready before it is killed (and
    /// counted as an early death). Default: 10 s.
    pub listen_timeout: Duration,
    /// Recycle a worker (replacement first) whose RSS, read by the primary from `/proc`, stays
    /// over this many bytes for two heartbeats in a row. Default: no limit.
    pub max_memory: Option<u64>,
    /// Recycle a worker (replacement first) after it handled this many connections, plus a
    /// random 0..=`max_requests_jitter`, so that workers do not recycle together (gunicorn's
    /// `max_requests`). Default: no limit.
    pub max_requests: Option<u64>,
    /// See [`max_requests`](Self::max_requests). Default: 0.
    pub max_requests_jitter: u64,
    /// At most this many workers are recycled (`max_memory`, `max_requests`) at a time; a
    /// worker due while that many are being replaced waits its turn, in order, so that
    /// workers never restart together even when they all cross their limit at once (jitter
    /// alone does not promise that). Rolling reloads and explicit restarts are not counted.
    /// A rolling reload that re-reads the configuration ([`reconfigure`](Self::reconfigure))
    /// may change it, from then on: raised, waiting workers go at once; lowered, recycles
    /// under way finish and no new one starts until fewer than the new limit run. Default: 1.
    ///
    /// ```
    /// use corral_runtime::ClusterConfig;
    ///
    /// // 16 workers, recycled past 512 MiB, two at a time at most.
    /// let config = ClusterConfig::default().workers(16).max_memory(Some(512 << 20)).recycle_concurrency(2);
    /// assert!(config.validate().is_ok());
    /// assert!(ClusterConfig::default().recycle_concurrency(0).validate().is_err());
    /// ```
    pub recycle_concurrency: usize,
    /// How often the primary pings each worker. Default: 2 s.
    pub heartbeat_interval: Duration,
    /// A worker whose ping has gone unanswered this long (its event loop is stuck) is killed
    /// and replaced. Default: 10 s.
    pub heartbeat_timeout: Duration,
    /// The largest frame either side accepts, in bytes. Default: 8 MiB.
    pub max_frame_length: usize,
    /// What program the workers run. Default: the primary's own image.
    pub exec: WorkerExec,
    /// Threads of each worker's CPU pool. Default: the CPUs shared out among the workers, at
    /// least 1.
    pub cpu_threads: Option<usize>,
    /// Where the workers' stdout and stderr go. Default: [`WorkerOutput::Inherit`].
    pub output: WorkerOutput,
    /// Extra environment variables for every worker.
    pub env: Vec<(OsString, OsString)>,
    /// How many user messages from workers may wait, unread, in one event subscriber before the
    /// workers' IPC readers pause (backpressure to the workers). Default: 1024.
    pub event_buffer: usize,
    /// Outgoing frames queued per worker before senders wait. Default: 1024.
    pub send_buffer: usize,
    /// Prefix of the registered ractor actor names, so that a host application's names do not
    /// collide with ours, and the name of the default control socket. Default: `"corral"`.
    pub name: String,
    /// The control socket `corral status / reload / scale / …` talk to. Default:
    /// [`ControlSocket::Default`] (`$XDG_RUNTIME_DIR/corral/<name>.sock`, `/run/corral/…` for
    /// root); one that cannot be made is logged and the cluster runs without it.
    pub control: ControlSocket,
    /// Re-read at the start of every rolling reload: the new workers start from what it
    /// yields (a refused configuration refuses the reload; the old workers serve on).
    /// Listeners and scheduling cannot change in a reload. Default: none.
    pub reconfigure: Option<Reconfigure>,
    /// Log files of the workers' captured output (needs [`WorkerOutput::Capture`]). Default:
    /// none.
    pub log_files: Option<LogFiles>,
    /// The addresses workers may ask the primary to listen on, so that a compromised worker
    /// cannot open new ports through it: `IP:PORT` allows that address, `IP:0` any port of
    /// that IP, any other string only a request spelled the same. A request outside the list
    /// is refused ([`ListenRefusal::NotAllowed`](corral_protocol::ListenRefusal::NotAllowed),
    /// logged) and the cluster goes on. Default: `None`, any address (`corral run` allows only
    /// its configured listeners).
    pub listen_allow: Option<Vec<String>>,
    /// Where the primary serves its metrics endpoint: `GET /metrics` (Prometheus text),
    /// `GET /status.json` (the status snapshot) and `GET /` (a status page). Served by the
    /// primary itself, so it answers while workers restart. Port 0 picks a free port
    /// ([`ClusterHandle::metrics_addr`](crate::api::handle::ClusterHandle::metrics_addr) tells which). Use a
    /// loopback address unless the page is meant to be reached from elsewhere: it shows pids,
    /// memory and traffic to whoever reaches it ([`parse_metrics_addr`](crate::operator::metrics::parse_metrics_addr)
    /// reads a bare port as 127.0.0.1). Default: none (off).
    pub metrics: Option<std::net::SocketAddr>,
    /// How many ready workers make the cluster ready for the metrics endpoint's `GET /readyz`
    /// (Kubernetes' `readinessProbe`): 200 once at least this many are ready, else 503 with
    /// the status as JSON. Default: `None`, every configured worker
    /// ([`workers`](Self::workers), as scaled).
    pub ready_min: Option<usize>,
    /// Whether a primary run by `corral::run` / `corral::run_primary` (and `corral run`)
    /// adopts its workers' orphans: as PID 1 it reaps them, elsewhere it makes itself a child
    /// subreaper; either way it ends them with the stop. It waits for every child it did not
    /// start itself, so turn it off in a primary whose own code starts child processes and
    /// waits for them (`std::process::Command`): their exit statuses would be taken. A
    /// cluster spawned directly ([`Cluster::spawn`](crate::cluster::Cluster::spawn)) never
    /// reaps; [`Reaper`](crate::process::reaper::Reaper) does it for your own primary.
    /// Default: `true`.
    pub reap_orphans: bool,
    /// A check a new worker must pass before it counts as ready, after it said so itself (a
    /// corral worker's ready message; for a foreign worker, [`Readiness::Check`] in its
    /// [`ForeignWorker::ready`] sets it instead). Tried every 100 ms, backing off to 1 s, until
    /// `listen_timeout`. Reloads, restarts and scale-ups wait for it. Default: none.
    ///
    /// [`Readiness::Check`]: crate::config::foreign::Readiness::Check
    /// [`ForeignWorker::ready`]: crate::config::foreign::ForeignWorker::ready
    pub ready_check: Option<Check>,
    /// Liveness probes of every ready worker, beside the heartbeat: a worker that fails
    /// [`ProbeConfig::failures`] in a row is steered out, diagnosed, drained and replaced.
    /// HTTP and TCP checks need a listener each worker has its own socket in (reuse-port
    /// scheduling; `shared` is refused). Default: none.
    pub probe: Option<ProbeConfig>,
    /// The listener HTTP and TCP probes go through (its name, or the address a worker asked
    /// for). Default: the first (by name order for a foreign cluster, by address otherwise).
    pub probe_listener: Option<String>,
    /// Autoscaling by saturation ([`Autoscale`]); its setter starts the cluster at the
    /// minimum. Default: none (a fixed count).
    pub autoscale: Option<Autoscale>,
    /// This primary's place in a node set (needs the `cluster` feature): its host agent joins
    /// the process group named after the cluster, and `status --all`, `reload --all` and
    /// `broadcast` reach every node. Default: none (a single host).
    pub node: Option<NodeConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            workers: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            spares: 0,
            restart: Restart::Permanent,
            backoff: Backoff::default(),
            min_uptime: Duration::from_secs(1),
            max_restarts: 5,
            period: Duration::from_secs(10),
            scheduling: Scheduling::RoundRobin,
            sticky_key: StickyKey::Ip,
            steer_by_client: false,
            escalation: Escalation::Stop,
            kill_timeout: Duration::from_secs(5),
            listen_timeout: Duration::from_secs(10),
            max_memory: None,
            max_requests: None,
            max_requests_jitter: 0,
            recycle_concurrency: 1,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(10),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            exec: WorkerExec::CurrentExe,
            cpu_threads: None,
            output: WorkerOutput::Inherit,
            env: Vec::new(),
            event_buffer: 1024,
            send_buffer: 1024,
            name: "corral".to_string(),
            control: ControlSocket::Default,
            reconfigure: None,
            log_files: None,
            listen_allow: None,
            metrics: None,
            ready_min: None,
            reap_orphans: true,
            ready_check: None,
            probe: None,
            probe_listener: None,
            autoscale: None,
            node: None,
        }
    }
}

/// The longest duration a [`ClusterConfig`] accepts, for every timeout, interval and delay in
/// it: 100 years. Longer ones (a config file may say `"18446744073709551615s"`, 585 billion
/// years) are typos, and cannot be turned into deadlines: `Instant::now() + d` panics past the
/// clock's range, and the cluster adds allowances to some of them.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{ClusterConfig, MAX_DURATION};
///
/// assert!(ClusterConfig::default().kill_timeout(MAX_DURATION).validate().is_ok());
/// let err = ClusterConfig::default().kill_timeout(Duration::MAX).validate().unwrap_err();
/// assert!(err.to_string().contains("kill_timeout"), "{err}");
/// ```
// 100 years of 365.25 days, as humantime counts a `y`: a config file's "100y" passes.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// The most workers one cluster may have: far above any machine's useful count, low enough
/// that a typo does not fork-bomb the host.
pub const MAX_WORKERS: usize = 1024;

impl ClusterConfig {
    /// Sets [`ClusterConfig::autoscale`], and [`workers`](Self::workers) to its minimum.
    #[must_use]
    pub fn autoscale(mut self, value: Option<Autoscale>) -> Self {
        if let Some(a) = &value {
            self.workers = a.min;
        }
        self.autoscale = value;
        self
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        impl ClusterConfig {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`ClusterConfig::workers`].
    workers: usize,
    /// Sets [`ClusterConfig::spares`].
    spares: usize,
    /// Sets [`ClusterConfig::restart`].
    restart: Restart,
    /// Sets [`ClusterConfig::backoff`].
    backoff: Backoff,
    /// Sets [`ClusterConfig::min_uptime`].
    min_uptime: Duration,
    /// Sets [`ClusterConfig::max_restarts`].
    max_restarts: u32,
    /// Sets [`ClusterConfig::period`].
    period: Duration,
    /// Sets [`ClusterConfig::scheduling`].
    scheduling: Scheduling,
    /// Sets [`ClusterConfig::sticky_key`].
    sticky_key: StickyKey,
    /// Sets [`ClusterConfig::steer_by_client`].
    steer_by_client: bool,
    /// Sets [`ClusterConfig::escalation`].
    escalation: Escalation,
    /// Sets [`ClusterConfig::kill_timeout`].
    kill_timeout: Duration,
    /// Sets [`ClusterConfig::listen_timeout`].
    listen_timeout: Duration,
    /// Sets [`ClusterConfig::max_memory`].
    max_memory: Option<u64>,
    /// Sets [`ClusterConfig::max_requests`].
    max_requests: Option<u64>,
    /// Sets [`ClusterConfig::max_requests_jitter`].
    max_requests_jitter: u64,
    /// Sets [`ClusterConfig::recycle_concurrency`].
    recycle_concurrency: usize,
    /// Sets [`ClusterConfig::listen_allow`].
    listen_allow: Option<Vec<String>>,
    /// Sets [`ClusterConfig::metrics`].
    metrics: Option<std::net::SocketAddr>,
    /// Sets [`ClusterConfig::ready_min`].
    ready_min: Option<usize>,
    /// Sets [`ClusterConfig::reap_orphans`].
    reap_orphans: bool,
    /// Sets [`ClusterConfig::ready_check`].
    ready_check: Option<Check>,
    /// Sets [`ClusterConfig::probe`].
    probe: Option<ProbeConfig>,
    /// Sets [`ClusterConfig::probe_listener`].
    probe_listener: Option<String>,
    /// Sets [`ClusterConfig::heartbeat_interval`].
    heartbeat_interval: Duration,
    /// Sets [`ClusterConfig::heartbeat_timeout`].
    heartbeat_timeout: Duration,
    /// Sets [`ClusterConfig::max_frame_length`].
    max_frame_length: usize,
    /// Sets [`ClusterConfig::exec`].
    exec: WorkerExec,
    /// Sets [`ClusterConfig::cpu_threads`].
    cpu_threads: Option<usize>,
    /// Sets [`ClusterConfig::output`].
    output: WorkerOutput,
    /// Sets [`ClusterConfig::event_buffer`].
    event_buffer: usize,
    /// Sets [`ClusterConfig::send_buffer`].
    send_buffer: usize,
    /// Sets [`ClusterConfig::name`].
    name: String,
    /// Sets [`ClusterConfig::control`].
    control: ControlSocket,
    /// Sets [`ClusterConfig::reconfigure`].
    reconfigure: Option<Reconfigure>,
    /// Sets [`ClusterConfig::log_files`].
    log_files: Option<LogFiles>,
}

impl ClusterConfig {
    /// Whether [`listen_allow`](Self::listen_allow) lets a worker listen on `requested`.
    ///
    /// ```
    /// use corral_runtime::ClusterConfig;
    /// let config = ClusterConfig::default().listen_allow(Some(vec!["127.0.0.1:0".into(), "[::1]:8080".into()]));
    /// assert!(config.may_listen("127.0.0.1:41234"));
    /// assert!(config.may_listen("[::1]:8080"));
    /// assert!(!config.may_listen("[::1]:22"));
    /// assert!(!config.may_listen("0.0.0.0:8080"));
    /// assert!(ClusterConfig::default().may_listen("0.0.0.0:8080"));
    /// ```
    pub fn may_listen(&self, requested: &str) -> bool {
        let Some(allowed) = &self.listen_allow else { return true };
        let wanted = requested.parse::<std::net::SocketAddr>().ok();
        allowed.iter().any(|entry| {
            if entry == requested {
                return true;
            }
            match (entry.parse::<std::net::SocketAddr>(), wanted) {
                (Ok(entry), Some(wanted)) => {
                    entry.ip() == wanted.ip() && (entry.port() == 0 || entry.port() == wanted.port())
                }
                _ => false,
            }
        })
    }

    /// The CPU pool size each worker gets: [`cpu_threads`](Self::cpu_threads), or the CPUs
    /// shared out among the workers, at least 1.
    ///
    /// ```
    /// let c = corral_runtime::ClusterConfig::default().workers(64);
    /// assert_eq!(c.effective_cpu_threads(), 1);
    /// ```
    pub fn effective_cpu_threads(&self) -> usize {
        self.cpu_threads.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
            (cpus / self.workers.max(1)).max(1)
        })
    }

    /// Joins a node set (see [`NodeConfig`]; needs the `cluster` feature).
    #[must_use]
    pub fn node(mut self, node: NodeConfig) -> Self {
        self.node = Some(node);
        self
    }

    /// Adds an environment variable for every worker.
    ///
    /// ```
    /// let c = corral_runtime::ClusterConfig::default().env_var("RUST_LOG", "info");
    /// assert_eq!(c.env.len(), 1);
    /// ```
    #[must_use]
    pub fn env_var(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Checks every value; the error names the first bad field and why.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for: `workers` 0 or over [`MAX_WORKERS`]; `backoff.base`
    /// zero; `backoff.max` below `backoff.base`; `backoff.factor` below 1 or not finite;
    /// `backoff.jitter` outside 0 – 1; `max_restarts` 0 with a restarting type; `period`
    /// zero; `kill_timeout` or `listen_timeout` zero; `heartbeat_interval` zero or above
    /// `heartbeat_timeout`; any duration over [`MAX_DURATION`]; `max_frame_length` under 64 bytes or
    /// over 4 GiB; `event_buffer` or `send_buffer` zero; an empty `name`; a `sticky_key`
    /// port prefix outside 1 – 16 bits; `steer_by_client` without reuse-port scheduling;
    /// a `probe` with a zero `every` or `timeout` or zero `failures`; an HTTP or TCP ready
    /// check or probe with `shared` scheduling;
    /// `recycle_concurrency` 0 or over [`MAX_WORKERS`]; `workers` + `spares` over
    /// [`MAX_WORKERS`], or spares with [`Scheduling::Shared`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: ConfigProblem| Err(ConfigError::Invalid { field, problem });
        let limits = (MAX_WORKERS, MAX_DURATION);
        if let Some((field, problem)) = self.autoscale.as_ref().and_then(|a| a.problem(self.workers, limits)) {
            return bad(field, problem);
        }
        if self.workers == 0 {
            return bad("workers", ConfigProblem::AtLeastOne);
        }
        if self.workers > MAX_WORKERS {
            return bad("workers", ConfigProblem::TooManyWorkers { workers: self.workers, limit: MAX_WORKERS });
        }
        if self.workers.saturating_add(self.spares) > MAX_WORKERS {
            let workers = self.workers.saturating_add(self.spares);
            return bad("spares", ConfigProblem::TooManyWorkers { workers, limit: MAX_WORKERS });
        }
        if self.spares > 0 && self.scheduling == Scheduling::Shared {
            return bad("spares", ConfigProblem::SparesNeedDispatch);
        }
        let durations = [
            ("min_uptime", self.min_uptime),
            ("period", self.period),
            ("kill_timeout", self.kill_timeout),
            ("listen_timeout", self.listen_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("backoff.base", self.backoff.base),
            ("backoff.max", self.backoff.max),
        ];
        let node_durations = self.node.iter().flat_map(|n| {
            [("node.heartbeat_interval", n.heartbeat_interval), ("node.heartbeat_timeout", n.heartbeat_timeout)]
        });
        let foreign = self.exec.foreign();
        let watchdog = foreign.and_then(|f| f.watchdog).map(|w| ("exec.watchdog", w));
        let ready = match foreign.map(|f| &f.ready) {
            Some(crate::config::foreign::Readiness::Delay(d)) => Some(("exec.ready", *d)),
            _ => None,
        };
        if let Some((field, d)) =
            durations.into_iter().chain(node_durations).chain(watchdog).chain(ready).find(|(_, d)| *d > MAX_DURATION)
        {
            return bad(field, ConfigProblem::TooLong { value: d, limit: MAX_DURATION });
        }
        if self.backoff.base.is_zero() {
            return bad("backoff.base", ConfigProblem::Zero);
        }
        if self.backoff.max < self.backoff.base {
            let (value, other_value) = (self.backoff.max, self.backoff.base);
            return bad("backoff.max", ConfigProblem::Below { value, other: "backoff.base", other_value });
        }
        if !self.backoff.factor.is_finite() || self.backoff.factor < 1.0 {
            return bad("backoff.factor", ConfigProblem::BackoffFactor(ConfigNumber(self.backoff.factor)));
        }
        if !(0.0..=1.0).contains(&self.backoff.jitter) {
            return bad("backoff.jitter", ConfigProblem::Jitter(ConfigNumber(self.backoff.jitter)));
        }
        if self.max_restarts == 0 && self.restart != Restart::Temporary {
            return bad("max_restarts", ConfigProblem::NoRestarts);
        }
        if self.period.is_zero() {
            return bad("period", ConfigProblem::Zero);
        }
        if self.kill_timeout.is_zero() {
            return bad("kill_timeout", ConfigProblem::Zero);
        }
        if self.listen_timeout.is_zero() {
            return bad("listen_timeout", ConfigProblem::Zero);
        }
        if self.cpu_threads == Some(0) || self.cpu_threads.is_some_and(|n| n > 1024) {
            return bad("cpu_threads", ConfigProblem::CpuThreads);
        }
        if let Err(problem) = self.sticky_key.check() {
            return bad("sticky_key", problem);
        }
        if self.steer_by_client && self.scheduling != Scheduling::ReusePort {
            return bad("steer_by_client", ConfigProblem::SteerNeedsReusePort);
        }
        if self.max_memory == Some(0) {
            return bad("max_memory", ConfigProblem::ZeroLimit);
        }
        if self.max_requests == Some(0) {
            return bad("max_requests", ConfigProblem::ZeroLimit);
        }
        if self.recycle_concurrency == 0 || self.recycle_concurrency > MAX_WORKERS {
            return bad("recycle_concurrency", ConfigProblem::RecycleConcurrency { limit: MAX_WORKERS });
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval", ConfigProblem::Zero);
        }
        if self.heartbeat_timeout < self.heartbeat_interval {
            let (value, other_value) = (self.heartbeat_timeout, self.heartbeat_interval);
            return bad("heartbeat_timeout", ConfigProblem::Below { value, other: "heartbeat_interval", other_value });
        }
        if self.max_frame_length < 64 || self.max_frame_length > u32::MAX as usize {
            return bad("max_frame_length", ConfigProblem::FrameLength(self.max_frame_length));
        }
        if self.event_buffer == 0 {
            return bad("event_buffer", ConfigProblem::AtLeastOne);
        }
        if self.send_buffer == 0 {
            return bad("send_buffer", ConfigProblem::AtLeastOne);
        }
        if self.name.is_empty() {
            return bad("name", ConfigProblem::Empty);
        }
        if let Some((field, problem)) = self.node.as_ref().and_then(NodeConfig::problem) {
            return bad(field, problem);
        }
        if let Some(files) = &self.log_files {
            if self.output != WorkerOutput::Capture {
                return bad("log_files", ConfigProblem::LogFilesNeedCapture);
            }
            if files.max_bytes == 0 {
                return bad("log_files.max_bytes", ConfigProblem::Zero);
            }
        }
        if let Some((field, problem)) = self.probe.as_ref().and_then(|p| probe_problem(p, MAX_DURATION)) {
            return bad(field, problem);
        }
        let ready_check = match self.exec.foreign().map(|f| &f.ready) {
            Some(crate::config::foreign::Readiness::Check(check)) => Some(("exec.ready", check)),
            _ => self.ready_check.as_ref().map(|c| ("ready_check", c)),
        };
        let checks = ready_check.into_iter().chain(self.probe.as_ref().map(|p| ("probe.check", &p.check)));
        if let Some((field, problem)) =
            checks.into_iter().find_map(|(f, c)| check_problem(c, self.scheduling).map(|p| (f, p)))
        {
            return bad(field, problem);
        }
        if let Some(foreign) = self.exec.foreign() {
            // Sticky is steered by the kernel for a foreign program (its reuse-port group).
            if self.scheduling.primary_accepts() && self.scheduling != Scheduling::Sticky {
                return bad("scheduling", ConfigProblem::ForeignAccepts);
            }
            if foreign.program.as_os_str().is_empty() {
                return bad("exec.program", ConfigProblem::Empty);
            }
            if nix::sys::signal::Signal::try_from(foreign.stop_signal).is_err() {
                return bad("exec.stop_signal", ConfigProblem::NotASignal(foreign.stop_signal));
            }
            if foreign.watchdog.is_some_and(|w| w.is_zero()) {
                return bad("exec.watchdog", ConfigProblem::ZeroWatchdog);
            }
            if let Some(dup) = foreign.listen.iter().enumerate().find_map(|(i, l)| {
                foreign.listen[..i].iter().any(|m| m.addr == l.addr && !is_port_zero(&l.addr)).then_some(l)
            }) {
                return bad("exec.listen", ConfigProblem::ListedTwice(dup.addr.clone()));
            }
        }
        Ok(())
    }
}

fn is_port_zero(addr: &crate::config::foreign::ListenAddr) -> bool {
    matches!(addr, crate::config::foreign::ListenAddr::Tcp(a) if a.port() == 0)
}
