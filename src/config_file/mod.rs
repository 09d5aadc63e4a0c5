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

mod env_files;
mod programs;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_runtime::{
    Autoscale, Backoff, Check, CheckError, ClusterConfig, ConfigProblem, CookieError, Escalation, ForeignWorker,
    ListenSpec, ListenSpecError, LogFiles, MetricsAddrError, ProbeConfig, Readiness, ReadinessError, Restart,
    ScaleSignal, Scheduling, StickyKey, StickyKeyError, WorkerExec, WorkerOutput, WorkerRange,
};

use crate::settings::Settings;
use crate::settings::Workers;
use crate::settings::groups::{AutoscaleSettings, NodeSettings};
pub use crate::settings::values::{ValueError, parse_duration, parse_signal, parse_size};
pub use env_files::read_env_files;
pub use programs::{CorralFile, ProgramEntry, TreeFile};

/// A configuration file, as written: its [`Settings`] (every key optional: what is absent
/// keeps its default), and where it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The text it was parsed from (to find a key's line).
    source: String,
    /// What it says.
    pub settings: Settings,
}

/// A configuration file that was refused: where, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The key, when known.
    pub key: Option<String>,
    /// What is wrong.
    #[source]
    pub problem: FileProblem,
}

/// What is wrong in a configuration file ([`ConfigFileError::problem`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// The file cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[source] Arc<std::io::Error>),
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{}", first_line(.0))]
    Toml(#[source] Box<toml::de::Error>),
    /// A word that is not one of the choices.
    #[error("{given:?} is not one of {choices}")]
    NotOneOf {
        /// The word in the file.
        given: String,
        /// The choices, comma separated.
        choices: &'static str,
    },
    /// A key needed with another that is set.
    #[error("is needed {0}")]
    Needed(&'static str),
    /// A key that only a foreign program's workers have.
    #[error("needs a program (socket activation is for `corral run` workers)")]
    NeedsProgram,
    /// Not an `IP:PORT` address.
    #[error("{0:?} is not an IP:PORT address")]
    NotAnAddress(String),
    /// Not a signal.
    #[error("{0:?} is not a signal")]
    NotASignal(String),
    /// A bad sticky key.
    #[error(transparent)]
    StickyKey(#[from] StickyKeyError),
    /// A bad metrics address.
    #[error(transparent)]
    Metrics(#[from] MetricsAddrError),
    /// The cookie cannot be read.
    #[error(transparent)]
    Cookie(Arc<CookieError>),
    /// A bad listener.
    #[error(transparent)]
    Listen(#[from] ListenSpecError),
    /// A bad readiness.
    #[error(transparent)]
    Ready(#[from] ReadinessError),
    /// A bad health check.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// An environment file's line that is not dotenv syntax (`KEY=VALUE`); never shown, as
    /// its value may be a secret.
    #[error("not a KEY=VALUE line (dotenv syntax)")]
    NotDotenv,
    /// An environment file that cannot be read or substituted.
    #[error("{0}")]
    EnvFile(#[source] Arc<dotenvy::Error>),
    /// Not a value of the expected kind.
    #[error("is not {0}")]
    NotA(&'static str),
    /// A key that a file with `[programs]` has only inside a program's table.
    #[error("is not for the top of a file with [programs] (it has {0}); put it in each [programs.NAME]")]
    NotAtTop(&'static str),
    /// The tree of programs is refused (a cycle, an unknown name).
    #[error(transparent)]
    Tree(Box<corral_runtime::tree::TreeConfigError>),
    /// A value [`ClusterConfig::validate`] refuses.
    #[error(transparent)]
    Config(#[from] ConfigProblem),
}

/// toml's message is the first line of its report; the rest repeats the source.
fn first_line(e: &toml::de::Error) -> &str {
    e.message().lines().next().unwrap_or("invalid TOML")
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        let problem = self.problem.to_string();
        if let Some(key) = &self.key
            && !problem.contains(&format!("`{key}`"))
        {
            write!(f, "{key}: ")?;
        }
        f.write_str(&problem)
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
            problem: FileProblem::Read(Arc::new(e)),
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
        let settings: Settings = toml::from_str(text).map_err(|e| {
            // The groups of keys are flattened into one table, which toml sees as a whole:
            // the key at fault is found by trying each on its own.
            if let Some((key, e)) = culprit(text) {
                let line = line_of_key(text, &key);
                return ConfigFileError {
                    path: path.to_path_buf(),
                    line,
                    key: Some(key),
                    problem: FileProblem::Toml(Box::new(e)),
                };
            }
            let line = e.span().map(|span| line_of_offset(text, span.start));
            ConfigFileError { path: path.to_path_buf(), line, key: None, problem: FileProblem::Toml(Box::new(e)) }
        })?;
        let mut file = ConfigFile { settings, ..ConfigFile::default() };
        file.path = path.to_path_buf();
        file.source = text.to_string();
        Ok(file)
    }

    /// A table already parsed (a `[programs.NAME]` of a tree file), read as a file of its
    /// own would be; named `path` in messages, without lines (the caller knows where the
    /// table is).
    ///
    /// # Errors
    ///
    /// An unknown key or a bad value, with the key.
    pub fn from_table(path: impl AsRef<Path>, table: toml::Table) -> Result<Self, ConfigFileError> {
        let path = path.as_ref().to_path_buf();
        let settings: Settings = toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| {
            let (key, e) = culprit_in(&table).map_or((None, e), |(k, e)| (Some(k), e));
            ConfigFileError { path: path.clone(), line: None, key, problem: FileProblem::Toml(Box::new(e)) }
        })?;
        Ok(ConfigFile { path, source: String::new(), settings })
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
        let bad = |key: &str, problem: FileProblem| self.error(key, problem);
        let not_one_of = |key: &str, given: &str, choices: &'static str| {
            self.error(key, FileProblem::NotOneOf { given: given.to_string(), choices })
        };
        let Settings {
            program: p,
            listeners,
            readiness,
            stopping,
            restarts,
            recycling,
            probe,
            autoscale,
            backoff,
            logs,
            log: _,
            metrics,
            node,
        } = &self.settings;
        match p.workers {
            Some(Workers::Count(n)) => {
                c.workers = if n == 0 { std::thread::available_parallelism().map(usize::from).unwrap_or(1) } else { n };
                c.autoscale = None;
            }
            Some(Workers::Range(range)) => c = c.autoscale(Some(self.autoscale_of(range, autoscale)?)),
            None => {}
        }
        if !matches!(p.workers, Some(Workers::Range(_))) && *autoscale != AutoscaleSettings::default() {
            // `--workers 4` over a file's range: a fixed count, its [autoscale] unused.
            tracing::warn!(file = %self.path.display(), "[autoscale] is unused: workers is a fixed count, not a range MIN..MAX");
        }
        set(&mut c.spares, p.spares);
        let foreign = p.program.is_some();
        c.scheduling = match listeners.sched.as_deref() {
            Some(s) => parse_sched(s).ok_or_else(|| not_one_of("sched", s, "reuseport, shared, rr, lc, sticky"))?,
            None if foreign => Scheduling::ReusePort,
            None => c.scheduling,
        };
        set(&mut c.kill_timeout, stopping.kill_timeout);
        set(&mut c.listen_timeout, readiness.listen_timeout);
        set(&mut c.heartbeat_interval, readiness.heartbeat_interval);
        set(&mut c.heartbeat_timeout, readiness.heartbeat_timeout);
        set(&mut c.min_uptime, restarts.min_uptime);
        set(&mut c.period, restarts.period);
        set(&mut c.max_restarts, restarts.max_restarts);
        set(&mut c.max_requests_jitter, recycling.max_requests_jitter);
        set(&mut c.recycle_concurrency, recycling.recycle_concurrency);
        if let Some(key) = &listeners.sticky_key {
            c.sticky_key = key.parse::<StickyKey>().map_err(|e| bad("sticky_key", e.into()))?;
        }
        if recycling.max_memory.is_some() {
            c.max_memory = recycling.max_memory;
        }
        if recycling.max_requests.is_some() {
            c.max_requests = recycling.max_requests;
        }
        if let Some(r) = &restarts.restart {
            c.restart = match r.as_str() {
                "permanent" => Restart::Permanent,
                "transient" => Restart::Transient,
                "temporary" => Restart::Temporary,
                _ => return Err(not_one_of("restart", r, "permanent, transient, temporary")),
            };
        }
        if let Some(e) = &restarts.escalation {
            c.escalation = match e.as_str() {
                "stop" => Escalation::Stop,
                "degraded" => Escalation::Degraded,
                _ => return Err(not_one_of("escalation", e, "stop, degraded")),
            };
        }
        if foreign {
            // `corral run` keeps its workers' output, for `corral logs` (and the primary's log).
            c.output = WorkerOutput::Capture;
        }
        if let Some(o) = &p.output {
            c.output = match o.as_str() {
                "inherit" => WorkerOutput::Inherit,
                "capture" => WorkerOutput::Capture,
                _ => return Err(not_one_of("output", o, "inherit, capture")),
            };
        }
        let d = c.backoff;
        c.backoff = Backoff {
            base: backoff.base.unwrap_or(d.base),
            factor: backoff.factor.unwrap_or(d.factor),
            max: backoff.max.unwrap_or(d.max),
            jitter: backoff.jitter.unwrap_or(d.jitter),
        };
        if *logs != Default::default() {
            let dir = logs.dir.clone().ok_or_else(|| bad("logs.dir", FileProblem::Needed("for log files")))?;
            let mut files = LogFiles::new(dir);
            files.per_slot = match logs.per.as_deref() {
                None | Some("cluster") => false,
                Some("slot") => true,
                Some(other) => return Err(not_one_of("logs.per", other, "cluster, slot")),
            };
            set(&mut files.max_bytes, logs.max_size);
            set(&mut files.keep, logs.keep);
            c.log_files = Some(files);
        }
        if let Some(listen) = metrics.listen.as_deref() {
            c.metrics = Some(corral_runtime::parse_metrics_addr(listen).map_err(|e| bad("metrics.listen", e.into()))?);
        }
        if *node != NodeSettings::default() {
            c.node = Some(self.node_config(node)?);
        }
        // The env files first, in order, then `[env]` / `-e`: a later pair wins.
        for (k, v) in read_env_files(p.env_files.as_deref().unwrap_or_default())? {
            c.env.push((k.into(), v.into()));
        }
        for (k, v) in p.env.iter().flatten() {
            c.env.push((k.into(), v.into()));
        }
        if let Some(check) = &probe.check {
            let check = check.parse::<Check>().map_err(|e| bad("probe.check", e.into()))?;
            let d = ProbeConfig::new(check);
            c.probe = Some(ProbeConfig {
                every: probe.every.unwrap_or(d.every),
                timeout: probe.timeout.unwrap_or(d.timeout),
                failures: probe.failures.unwrap_or(d.failures),
                grace: probe.grace.unwrap_or(d.grace),
                ..d
            });
        } else if probe.every.is_some() || probe.timeout.is_some() || probe.failures.is_some() || probe.grace.is_some()
        {
            return Err(bad("probe.check", FileProblem::Needed("by the other probe settings (--probe CHECK)")));
        }
        if probe.listener.is_some() {
            c.probe_listener = probe.listener.clone();
        }
        if let Some(n) = readiness.ready_min {
            c.ready_min = (n > 0).then_some(n);
        }
        // A library cluster's workers say when they are ready; a check may come on top.
        let ready = match (&p.program, &readiness.ready) {
            (None, Some(r)) => Some(r.parse::<Readiness>().map_err(|e| bad("ready", e.into()))?),
            _ => None,
        };
        if let Some(Readiness::Check(check)) = ready {
            c.ready_check = Some(check);
        }
        if let Some(program) = &p.program {
            c.exec = WorkerExec::Foreign(self.foreign(program)?);
        } else if let Some(key) = [
            ("listen", listeners.listen.is_some()),
            ("ready", readiness.ready.is_some() && c.ready_check.is_none()),
            ("stop_signal", stopping.stop_signal.is_some()),
            ("watchdog", readiness.watchdog.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k))
        {
            return Err(bad(key, FileProblem::NeedsProgram));
        }
        c.validate().map_err(|corral_runtime::ConfigError::Invalid { field, problem }| {
            let key = field.strip_prefix("exec.").unwrap_or(field);
            let key = key.replace("log_files.max_bytes", "logs.max_size").replace("log_files", "logs");
            let key = key.as_str();
            bad(key, problem.into())
        })?;
        Ok(c)
    }

    /// `workers = "MIN..MAX"` with the `[autoscale]` table.
    fn autoscale_of(&self, range: WorkerRange, a: &AutoscaleSettings) -> Result<Autoscale, ConfigFileError> {
        let d = Autoscale::range(range);
        let signal = match a.signal.as_deref() {
            None => d.signal,
            Some(s) => s.parse::<ScaleSignal>().map_err(|_| {
                self.error(
                    "autoscale.signal",
                    FileProblem::NotOneOf { given: s.to_string(), choices: "auto, queue, cpu" },
                )
            })?,
        };
        Ok(Autoscale {
            up_after: a.up_after.unwrap_or(d.up_after),
            down_after: a.down_after.unwrap_or(d.down_after),
            step: a.step.unwrap_or(d.step),
            cooldown: a.cooldown.unwrap_or(d.cooldown),
            signal,
            ..d
        })
    }

    fn node_config(&self, node: &NodeSettings) -> Result<corral_runtime::NodeConfig, ConfigFileError> {
        let bad = |key: &str, problem: FileProblem| self.error(key, problem);
        let addr = |key: &str, a: &str| {
            a.parse::<std::net::SocketAddr>().map_err(|_| bad(key, FileProblem::NotAnAddress(a.to_string())))
        };
        let needed = FileProblem::Needed("in a node set");
        let name = node.name.clone().ok_or_else(|| bad("node.name", needed.clone()))?;
        let listen = node.listen.as_deref().ok_or_else(|| bad("node.listen", needed))?;
        let listen = addr("node.listen", listen)?;
        let cookie = match &node.cookie_file {
            Some(path) => corral_runtime::Cookie::from_file(path),
            None => corral_runtime::Cookie::from_env(),
        }
        .map_err(|e| bad("node.cookie_file", FileProblem::Cookie(Arc::new(e))))?;
        let mut config = corral_runtime::NodeConfig::new(name, listen, cookie);
        for seed in node.seeds.iter().flatten() {
            config.seeds.push(addr("node.seeds", seed)?);
        }
        set(&mut config.heartbeat_interval, node.heartbeat_interval);
        set(&mut config.heartbeat_timeout, node.heartbeat_timeout);
        Ok(config)
    }

    fn foreign(&self, program: &Path) -> Result<ForeignWorker, ConfigFileError> {
        let s = &self.settings;
        let mut w = ForeignWorker::new(program);
        w.args = s.program.args.iter().flatten().map(Into::into).collect();
        for spec in s.listeners.listen.iter().flatten() {
            w.listen.push(spec.parse::<ListenSpec>().map_err(|e| self.error("listen", e.into()))?);
        }
        if let Some(r) = &s.readiness.ready {
            w.ready = r.parse::<Readiness>().map_err(|e| self.error("ready", e.into()))?;
        }
        if let Some(sig) = &s.stopping.stop_signal {
            w.stop_signal =
                parse_signal(sig).ok_or_else(|| self.error("stop_signal", FileProblem::NotASignal(sig.to_string())))?;
        }
        w.watchdog = s.readiness.watchdog;
        w.cwd = s.program.cwd.clone();
        w.user = s.program.user.clone();
        w.group = s.program.group.clone();
        Ok(w)
    }

    /// An error about `key` (dotted for tables: `backoff.max`), with its line when the file
    /// has it.
    fn error(&self, key: &str, problem: FileProblem) -> ConfigFileError {
        let line = line_of_key(&self.source, key);
        ConfigFileError { path: self.path.clone(), line, key: Some(key.to_string()), problem }
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
/// use corral::config::{Scheduling, StickyKey};
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

/// The first key of `text` that, on its own, does not fit the settings (dotted in a table),
/// with toml's error about it.
fn culprit(text: &str) -> Option<(String, toml::de::Error)> {
    culprit_in(&text.parse().ok()?)
}

/// As [`culprit`], of a table already parsed.
fn culprit_in(table: &toml::Table) -> Option<(String, toml::de::Error)> {
    let alone = |key: &str, value: &toml::Value| {
        let mut one = toml::Table::new();
        one.insert(key.to_string(), value.clone());
        toml::Value::Table(one).try_into::<Settings>().err()
    };
    for (key, value) in table {
        let Some(e) = alone(key, value) else { continue };
        if let toml::Value::Table(inner) = value
            && key != "env"
        {
            for (k, v) in inner {
                let mut sub = toml::Table::new();
                sub.insert(k.clone(), v.clone());
                if let Some(e) = alone(key, &toml::Value::Table(sub)) {
                    return Some((format!("{key}.{k}"), e));
                }
            }
        }
        return Some((key.clone(), e));
    }
    None
}

pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` (dotted: `table.key`) is set, if the file sets it on a line of its own.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, name) = match key.rsplit_once('.') {
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

/// A commented `corral.toml` with every option at its default (what `corral init` writes),
/// generated from the settings' declaration ([`crate::settings::template`]).
pub fn template() -> String {
    crate::settings::template()
}
