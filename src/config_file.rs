//! `corral.toml`: a cluster's configuration as a file, mapped onto [`ClusterConfig`] through
//! serde. Durations are written `"5s"`, `"250ms"`, `"1m 30s"`; sizes `"512MiB"`, `"2GB"`.
//!
//! Unknown keys and bad values are refused with the file, the line and the key, before
//! anything starts. Command-line flags override what the file says.
//!
//! ```
//! use corral::config_file::ConfigFile;
//!
//! let file = ConfigFile::parse("corral.toml", r#"
//! program = "python3"
//! args = ["app.py"]
//! workers = 4
//! listen = ["127.0.0.1:8080"]
//! kill_timeout = "3s"
//! max_memory = "512MiB"
//! "#).unwrap();
//! let config = file.cluster_config().unwrap();
//! assert_eq!(config.workers, 4);
//! assert_eq!(config.max_memory, Some(512 * 1024 * 1024));
//!
//! let err = ConfigFile::parse("corral.toml", "workers = 4\nwrokers = 5\n").unwrap_err();
//! assert_eq!(err.line, Some(2));
//! assert!(err.to_string().starts_with("corral.toml:2: unknown field `wrokers`"), "{err}");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_runtime::{
    Backoff, ClusterConfig, Escalation, ForeignWorker, ListenSpec, LogFiles, Readiness, Restart, Scheduling, StickyKey,
    WorkerExec, WorkerOutput,
};
use serde::{Deserialize, Deserializer};

/// A configuration file, as written (every key optional: what is absent keeps its default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where it was read from (for messages); not a key of the file.
    #[serde(skip)]
    pub path: PathBuf,
    /// The text it was parsed from (to find a key's line); not a key of the file.
    #[serde(skip)]
    source: String,
    /// The program the workers run (`corral run`); a path or a name in `PATH`.
    pub program: Option<PathBuf>,
    /// Its arguments.
    pub args: Option<Vec<String>>,
    /// Worker processes; 0 or absent: one per CPU.
    pub workers: Option<usize>,
    /// Listeners, `[NAME=]ADDR` each: `127.0.0.1:8080`, `[::1]:0`, `unix:/path`.
    pub listen: Option<Vec<String>>,
    /// `reuseport` (default for `corral run`), `shared`, `rr`, `lc` or `sticky` (the last
    /// three for corral workers only).
    pub sched: Option<String>,
    /// What keeps a client on one worker with `sched = "sticky"`: `ip` (default) or
    /// `ip+port/BITS` (the address and the top BITS of the source port).
    pub sticky_key: Option<String>,
    /// `notify` (default) or `delay:MS`.
    pub ready: Option<String>,
    /// The signal that asks a worker to drain, e.g. `SIGTERM`, `SIGINT`, `SIGQUIT`.
    pub stop_signal: Option<String>,
    /// How long a draining worker has before its process group is killed.
    #[serde(default, deserialize_with = "duration")]
    pub kill_timeout: Option<Duration>,
    /// How long a new worker has to become ready before it is killed.
    #[serde(default, deserialize_with = "duration")]
    pub listen_timeout: Option<Duration>,
    /// Recycle a worker whose RSS stays over this size.
    #[serde(default, deserialize_with = "size")]
    pub max_memory: Option<u64>,
    /// Recycle a (corral) worker after this many connections.
    pub max_requests: Option<u64>,
    /// A random 0..=N added to `max_requests` per worker.
    pub max_requests_jitter: Option<u64>,
    /// At most this many workers recycled (`max_memory`, `max_requests`) at a time; the others
    /// wait their turn. Default 1.
    pub recycle_concurrency: Option<usize>,
    /// `WATCHDOG_USEC` for foreign workers: they must send `WATCHDOG=1` this often.
    #[serde(default, deserialize_with = "duration")]
    pub watchdog: Option<Duration>,
    /// How often corral workers are pinged.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat_interval: Option<Duration>,
    /// A corral worker whose ping is unanswered this long is killed.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat_timeout: Option<Duration>,
    /// `permanent` (default), `transient` or `temporary`.
    pub restart: Option<String>,
    /// A worker up at least this long is restarted at once, and its backoff resets.
    #[serde(default, deserialize_with = "duration")]
    pub min_uptime: Option<Duration>,
    /// At most this many restarts of one slot within `period`.
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts`.
    #[serde(default, deserialize_with = "duration")]
    pub period: Option<Duration>,
    /// `stop` (default: the cluster stops when a slot gives up) or `degraded`.
    pub escalation: Option<String>,
    /// `capture` (each line logged with slot, pid and stream, and kept for `corral logs`; the
    /// default with a `program`) or `inherit` (the default of a library cluster).
    pub output: Option<String>,
    /// The workers' working directory.
    pub cwd: Option<PathBuf>,
    /// The user the workers run as.
    pub user: Option<String>,
    /// The group the workers run as.
    pub group: Option<String>,
    /// Backoff between restarts after early deaths.
    pub backoff: Option<BackoffFile>,
    /// Extra environment variables of every worker.
    pub env: Option<BTreeMap<String, String>>,
    /// Log files of the workers' output.
    pub logs: Option<LogsFile>,
    /// The primary's metrics endpoint.
    pub metrics: Option<MetricsFile>,
    /// This primary's place in a node set (needs the `cluster` feature).
    pub node: Option<NodeFile>,
}

/// `[metrics]`.
///
/// ```
/// use corral::config_file::ConfigFile;
///
/// let file = ConfigFile::parse("corral.toml", "[metrics]\nlisten = \"9464\"\n").unwrap();
/// assert_eq!(file.cluster_config().unwrap().metrics, Some("127.0.0.1:9464".parse().unwrap()));
///
/// let file = ConfigFile::parse("corral.toml", "workers = 2\n[metrics]\nlisten = \"nowhere\"\n").unwrap();
/// let err = file.cluster_config().unwrap_err();
/// assert!(err.to_string().starts_with("corral.toml"), "{err}");
/// assert!(err.to_string().contains("metrics.listen: \"nowhere\" is not a metrics address"), "{err}");
/// assert!(ConfigFile::parse("corral.toml", "[metrics]\nlisen = \"9464\"\n").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// Where the endpoint listens: `IP:PORT`, or a bare `PORT` for 127.0.0.1.
    pub listen: Option<String>,
}

/// `[node]`: the node set (one corral per host). The cookie comes from `cookie_file` or,
/// without one, from the `CORRAL_COOKIE` environment variable; never from the file itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// This node's name, unique in the set.
    pub name: Option<String>,
    /// The node server's address, `IP:PORT` (a fixed port).
    pub listen: Option<String>,
    /// Node servers to join, `IP:PORT` each.
    pub seeds: Option<Vec<String>>,
    /// A file (mode 0600) holding the shared cookie.
    pub cookie_file: Option<PathBuf>,
    /// How often host agents heartbeat each other.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat_interval: Option<Duration>,
    /// A peer silent this long is reported down.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat_timeout: Option<Duration>,
}

/// `[logs]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsFile {
    /// The directory.
    pub dir: Option<PathBuf>,
    /// `cluster` (one file, the default) or `slot` (one per slot).
    pub per: Option<String>,
    /// Rotate a file at this size.
    #[serde(default, deserialize_with = "size")]
    pub max_size: Option<u64>,
    /// Rotated files kept.
    pub keep: Option<usize>,
}

/// `[backoff]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffFile {
    /// The first delay.
    #[serde(default, deserialize_with = "duration")]
    pub base: Option<Duration>,
    /// Growth per consecutive early death.
    pub factor: Option<f64>,
    /// The cap.
    #[serde(default, deserialize_with = "duration")]
    pub max: Option<Duration>,
    /// Fraction (0 – 1) of each delay taken off at random.
    pub jitter: Option<f64>,
}

/// A configuration file that was refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key
            && !self.message.contains(&format!("`{key}`"))
        {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigFile {
    /// A file that says nothing (every default), named `path` in messages.
    pub fn empty(path: impl Into<PathBuf>) -> Self {
        ConfigFile { path: path.into(), ..ConfigFile::default() }
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or [`parse`](Self::parse) refuses it.
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` (from `path`, for messages).
    ///
    /// # Errors
    ///
    /// A TOML syntax error, an unknown key or a bad value, with its line.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of_offset(text, span.start));
            // toml's message is the first line of its report; the rest repeats the source.
            let message = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            ConfigFileError { path: path.to_path_buf(), line, key: None, message }
        })?;
        file.path = path.to_path_buf();
        file.source = text.to_string();
        Ok(file)
    }

    /// The [`ClusterConfig`] this file describes, validated. With a `program`, its workers
    /// are that program, started by socket activation ([`WorkerExec::Foreign`]); without one,
    /// the primary's own image (a library cluster).
    ///
    /// # Errors
    ///
    /// A value that does not parse or that [`ClusterConfig::validate`] refuses, with the key
    /// and, when the file has it, the line.
    pub fn cluster_config(&self) -> Result<ClusterConfig, ConfigFileError> {
        self.cluster_config_from(ClusterConfig::default())
    }

    /// As [`cluster_config`](Self::cluster_config), on top of `base` (what the file does not
    /// say stays as `base` has it).
    ///
    /// # Errors
    ///
    /// As [`cluster_config`](Self::cluster_config).
    pub fn cluster_config_from(&self, mut c: ClusterConfig) -> Result<ClusterConfig, ConfigFileError> {
        let bad = |key: &str, message: String| self.error(key, message);
        if let Some(n) = self.workers {
            c.workers = if n == 0 { std::thread::available_parallelism().map(usize::from).unwrap_or(1) } else { n };
        }
        let foreign = self.program.is_some();
        c.scheduling = match self.sched.as_deref() {
            Some(s) => parse_sched(s)
                .ok_or_else(|| bad("sched", format!("{s:?} is not one of reuseport, shared, rr, lc, sticky")))?,
            None if foreign => Scheduling::ReusePort,
            None => c.scheduling,
        };
        set(&mut c.kill_timeout, self.kill_timeout);
        set(&mut c.listen_timeout, self.listen_timeout);
        set(&mut c.heartbeat_interval, self.heartbeat_interval);
        set(&mut c.heartbeat_timeout, self.heartbeat_timeout);
        set(&mut c.min_uptime, self.min_uptime);
        set(&mut c.period, self.period);
        set(&mut c.max_restarts, self.max_restarts);
        set(&mut c.max_requests_jitter, self.max_requests_jitter);
        set(&mut c.recycle_concurrency, self.recycle_concurrency);
        if let Some(key) = &self.sticky_key {
            c.sticky_key = key.parse::<StickyKey>().map_err(|e| bad("sticky_key", e.to_string()))?;
        }
        if self.max_memory.is_some() {
            c.max_memory = self.max_memory;
        }
        if self.max_requests.is_some() {
            c.max_requests = self.max_requests;
        }
        if let Some(r) = &self.restart {
            c.restart = match r.as_str() {
                "permanent" => Restart::Permanent,
                "transient" => Restart::Transient,
                "temporary" => Restart::Temporary,
                _ => return Err(bad("restart", format!("{r:?} is not one of permanent, transient, temporary"))),
            };
        }
        if let Some(e) = &self.escalation {
            c.escalation = match e.as_str() {
                "stop" => Escalation::Stop,
                "degraded" => Escalation::Degraded,
                _ => return Err(bad("escalation", format!("{e:?} is not one of stop, degraded"))),
            };
        }
        if foreign {
            // `corral run` keeps its workers' output, for `corral logs` (and the primary's log).
            c.output = WorkerOutput::Capture;
        }
        if let Some(o) = &self.output {
            c.output = match o.as_str() {
                "inherit" => WorkerOutput::Inherit,
                "capture" => WorkerOutput::Capture,
                _ => return Err(bad("output", format!("{o:?} is not one of inherit, capture"))),
            };
        }
        if let Some(b) = &self.backoff {
            let d = c.backoff;
            c.backoff = Backoff {
                base: b.base.unwrap_or(d.base),
                factor: b.factor.unwrap_or(d.factor),
                max: b.max.unwrap_or(d.max),
                jitter: b.jitter.unwrap_or(d.jitter),
            };
        }
        if let Some(logs) = &self.logs {
            let dir = logs.dir.clone().ok_or_else(|| bad("logs.dir", "is needed for log files".into()))?;
            let mut files = LogFiles::new(dir);
            files.per_slot = match logs.per.as_deref() {
                None | Some("cluster") => false,
                Some("slot") => true,
                Some(other) => return Err(bad("logs.per", format!("{other:?} is not one of cluster, slot"))),
            };
            set(&mut files.max_bytes, logs.max_size);
            set(&mut files.keep, logs.keep);
            c.log_files = Some(files);
        }
        if let Some(listen) = self.metrics.as_ref().and_then(|m| m.listen.as_deref()) {
            c.metrics =
                Some(corral_runtime::parse_metrics_addr(listen).map_err(|e| bad("metrics.listen", e.to_string()))?);
        }
        if let Some(node) = &self.node {
            c.node = Some(self.node_config(node)?);
        }
        for (k, v) in self.env.iter().flatten() {
            c.env.push((k.into(), v.into()));
        }
        if let Some(program) = &self.program {
            c.exec = WorkerExec::Foreign(self.foreign(program)?);
        } else if self.listen.is_some() || self.ready.is_some() || self.stop_signal.is_some() || self.watchdog.is_some()
        {
            let key =
                ["listen", "ready", "stop_signal", "watchdog"].into_iter().find(|k| self.has(k)).unwrap_or("listen");
            return Err(bad(key, "needs a program (socket activation is for `corral run` workers)".into()));
        }
        c.validate().map_err(|corral_runtime::ConfigError::Invalid { field, reason }| {
            let key = field.strip_prefix("exec.").unwrap_or(field);
            let key = key.replace("log_files.max_bytes", "logs.max_size").replace("log_files", "logs");
            let key = key.as_str();
            bad(key, reason)
        })?;
        Ok(c)
    }

    fn node_config(&self, node: &NodeFile) -> Result<corral_runtime::NodeConfig, ConfigFileError> {
        let bad = |key: &str, message: String| self.error(key, message);
        let addr = |key: &str, a: &str| {
            a.parse::<std::net::SocketAddr>().map_err(|_| bad(key, format!("{a:?} is not an IP:PORT address")))
        };
        let name = node.name.clone().ok_or_else(|| bad("node.name", "is needed in a node set".into()))?;
        let listen = node.listen.as_deref().ok_or_else(|| bad("node.listen", "is needed in a node set".into()))?;
        let listen = addr("node.listen", listen)?;
        let cookie = match &node.cookie_file {
            Some(path) => corral_runtime::Cookie::from_file(path),
            None => corral_runtime::Cookie::from_env(),
        }
        .map_err(|e| bad("node.cookie_file", e.to_string()))?;
        let mut config = corral_runtime::NodeConfig::new(name, listen, cookie);
        for seed in node.seeds.iter().flatten() {
            config.seeds.push(addr("node.seeds", seed)?);
        }
        set(&mut config.heartbeat_interval, node.heartbeat_interval);
        set(&mut config.heartbeat_timeout, node.heartbeat_timeout);
        Ok(config)
    }

    fn has(&self, key: &str) -> bool {
        match key {
            "listen" => self.listen.is_some(),
            "ready" => self.ready.is_some(),
            "stop_signal" => self.stop_signal.is_some(),
            "watchdog" => self.watchdog.is_some(),
            _ => false,
        }
    }

    fn foreign(&self, program: &Path) -> Result<ForeignWorker, ConfigFileError> {
        let mut w = ForeignWorker::new(program);
        w.args = self.args.iter().flatten().map(Into::into).collect();
        for spec in self.listen.iter().flatten() {
            w.listen.push(spec.parse::<ListenSpec>().map_err(|e| self.error("listen", e.to_string()))?);
        }
        if let Some(r) = &self.ready {
            w.ready = r.parse::<Readiness>().map_err(|e| self.error("ready", e.to_string()))?;
        }
        if let Some(s) = &self.stop_signal {
            w.stop_signal =
                parse_signal(s).ok_or_else(|| self.error("stop_signal", format!("{s:?} is not a signal")))?;
        }
        w.watchdog = self.watchdog;
        w.cwd = self.cwd.clone();
        w.user = self.user.clone();
        w.group = self.group.clone();
        Ok(w)
    }

    /// An error about `key` (dotted for tables: `backoff.max`), with its line when the file
    /// has it.
    fn error(&self, key: &str, message: String) -> ConfigFileError {
        let line = line_of_key(&self.source, key);
        ConfigFileError { path: self.path.clone(), line, key: Some(key.to_string()), message }
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `reuseport`, `shared`, `rr`/`round-robin`, `lc`/`least-connections`, `sticky`.
///
/// ```
/// use corral::config_file::{ConfigFile, parse_sched};
/// use corral::{Scheduling, StickyKey};
///
/// assert_eq!(parse_sched("sticky"), Some(Scheduling::Sticky));
/// let file = ConfigFile::parse(
///     "corral.toml",
///     "sched = \"sticky\"\nsticky_key = \"ip+port/5\"\nrecycle_concurrency = 2\n",
/// )
/// .unwrap();
/// let config = file.cluster_config().unwrap();
/// assert_eq!(config.scheduling, Scheduling::Sticky);
/// assert_eq!(config.sticky_key, StickyKey::IpPortPrefix { bits: 5 });
/// assert_eq!(config.recycle_concurrency, 2);
///
/// let bad = ConfigFile::parse("corral.toml", "sticky_key = \"ip+port/40\"\n").unwrap();
/// let err = bad.cluster_config().unwrap_err();
/// assert!(err.to_string().starts_with("corral.toml:1: sticky_key"), "{err}");
/// ```
pub fn parse_sched(s: &str) -> Option<Scheduling> {
    match s {
        "reuseport" => Some(Scheduling::ReusePort),
        "shared" => Some(Scheduling::Shared),
        "rr" | "round-robin" => Some(Scheduling::RoundRobin),
        "lc" | "least-connections" => Some(Scheduling::LeastConnections),
        "sticky" => Some(Scheduling::Sticky),
        _ => None,
    }
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
///
/// ```
/// assert_eq!(corral::config_file::parse_signal("SIGQUIT"), Some(3));
/// assert_eq!(corral::config_file::parse_signal("term"), Some(15));
/// assert_eq!(corral::config_file::parse_signal("SIGNOPE"), None);
/// ```
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|sig| sig as i32);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>().ok().map(|sig| sig as i32)
}

/// A duration as `"5s"`, `"250ms"`, `"1m 30s"`.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(corral::config_file::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(corral::config_file::parse_duration("soon").is_err());
/// ```
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like \"5s\" or \"250ms\": {e}"))
}

/// A size as `"512MiB"`, `"2GB"`, `"1048576"`.
///
/// ```
/// assert_eq!(corral::config_file::parse_size("512MiB"), Ok(512 * 1024 * 1024));
/// assert!(corral::config_file::parse_size("lots").is_err());
/// ```
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("{s:?} is not a size like \"512MiB\" or \"2GB\""))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` (dotted: `table.key`) is set, if the file sets it on a line of its own.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, name) = match key.split_once('.') {
        Some((t, n)) => (Some(t), n),
        None => (None, key),
    };
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(header.trim().to_string());
            continue;
        }
        let Some((k, _)) = line.split_once('=') else { continue };
        if k.trim() == name && current.as_deref() == table {
            return Some(i + 1);
        }
    }
    None
}

/// A commented `corral.toml` with every option at its default (what `corral init` writes).
pub const TEMPLATE: &str = include_str!("cli/corral.toml");
