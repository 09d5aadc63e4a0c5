//! The settings, one field each, grouped by topic. Every field is the one declaration of its
//! setting: its name is the `corral.toml` key (`[table]` groups nest under their table), its
//! `#[arg]` the `corral run` flag, its doc comment the text of the flag's help, the `corral
//! init` template, the JSON Schema and the reference page. Absent (`None`) means "the
//! default": [`Settings::defaults`](super::Settings::defaults) says which.
//!
//! Where a flag and a key differ in shape, the field says how they map.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{
    self, checked_check, checked_listen, checked_metrics, checked_ready, checked_signal, checked_sticky_key,
    parse_duration, parse_env, parse_size,
};

/// The program: what every worker runs, with what, where and as whom.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct ProgramSettings {
    /// The program every worker runs, a path or a name in `PATH`. It gets the listeners by
    /// socket activation (fds 3, 4, …, `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`) and a
    /// `NOTIFY_SOCKET` for `READY=1`. On the command line: the first word after `--`.
    #[arg(skip)]
    #[schemars(example = &"python3")]
    pub program: Option<PathBuf>,
    /// The program's arguments. On the command line: the words after the program.
    #[arg(skip)]
    #[schemars(example = ["app.py"])]
    pub args: Option<Vec<String>>,
    /// Worker processes (0: one per CPU), or a range `MIN..MAX` to autoscale (`[autoscale]`).
    #[arg(short, long, value_name = "N|MIN..MAX")]
    pub workers: Option<values::Workers>,
    /// Warm spares: started, ready, idle workers beyond `workers`; one takes a worker's place
    /// at once when it dies, is recycled or fails its probe (its socket is steered in), and
    /// the one that left restarts in the background as the new spare. Not counted by
    /// `corral scale`.
    #[arg(long, value_name = "N")]
    pub spares: Option<usize>,
    /// The workers' working directory.
    #[arg(long, value_name = "DIR")]
    #[schemars(example = &"/srv/app")]
    pub cwd: Option<PathBuf>,
    /// The user the workers run as (corral binds privileged ports first).
    #[arg(long, value_name = "USER")]
    #[schemars(example = &"www-data")]
    pub user: Option<String>,
    /// The group the workers run as.
    #[arg(long, value_name = "GROUP")]
    #[schemars(example = &"www-data")]
    pub group: Option<String>,
    /// Extra environment variables of every worker: the `[env]` table in the file
    /// (`NAME = "value"`), `-e NAME=VALUE` on the command line (repeatable, added to the
    /// file's).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    #[serde(default, with = "values::env_table", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>", example = serde_json::json!({"APP_ENV": "production"}))]
    pub env: Option<Vec<(String, String)>>,
    /// Environment files in dotenv syntax (`KEY=VALUE` lines, `#` comments, quotes, `export`),
    /// read in order at the start and at every reload that re-reads the configuration: a
    /// later file overrides an earlier one, and `[env]` / `-e` override them all. A missing or
    /// malformed file refuses the start (exit 2) or the reload, naming the file and the line.
    /// Relative paths are relative to corral's working directory. The flag is repeatable;
    /// its files come after the file's.
    #[arg(long = "env-file", value_name = "PATH")]
    #[schemars(example = ["/etc/app/app.env"])]
    pub env_files: Option<Vec<PathBuf>>,
    /// Worker output: `capture` (each line logged with slot, pid and stream, and kept for
    /// `corral logs`) or `inherit` (straight to the terminal or journal).
    #[arg(long, value_name = "MODE", value_parser = ["inherit", "capture"])]
    pub output: Option<String>,
}

/// Listeners: the sockets corral owns and shares among the workers.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct ListenerSettings {
    /// Listeners, `[NAME=]ADDR` each: `127.0.0.1:8080`, `[::1]:0`, `unix:/run/app.sock`. Port
    /// 0 resolves once, for every worker. The flag is repeatable.
    #[arg(short, long = "listen", value_name = "[NAME=]ADDR", value_parser = checked_listen)]
    #[schemars(example = ["http=127.0.0.1:8080"])]
    pub listen: Option<Vec<String>>,
    /// How connections are shared: `reuseport` (each slot its own `SO_REUSEPORT` socket,
    /// kept by corral across restarts and reloads, and steered: new connections go only to
    /// ready workers that take them), `shared` (one socket for all) or `sticky` (reuse-port,
    /// steered by the client's address: a client keeps its worker); in the file also `rr`
    /// and `lc`, for corral workers only.
    #[arg(long, value_name = "MODE", value_parser = ["shared", "reuseport", "sticky"])]
    pub sched: Option<String>,
    /// What keeps a client on one worker with `sched = "sticky"`: `ip`, or `ip+port/BITS`
    /// (the address and the top BITS of the source port).
    #[arg(long, value_name = "KEY", value_parser = checked_sticky_key)]
    pub sticky_key: Option<String>,
}

/// Readiness and health: when a worker counts as ready, and when it is deemed stuck.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct ReadinessSettings {
    /// When a new worker counts as ready: `notify` (it sends `READY=1`), `delay:MS`, or a check
    /// of it through its listener until one passes (`http:/PATH`, `tcp`, `exec:CMD`).
    #[arg(long, value_name = "WHEN", value_parser = checked_ready)]
    #[schemars(example = &"http:/healthz")]
    pub ready: Option<String>,
    /// How many ready workers make the cluster ready for the metrics endpoint's `GET /readyz`
    /// (200; else 503 with the status as JSON); 0 or absent: every configured worker.
    #[arg(long, value_name = "N")]
    #[schemars(example = 1)]
    pub ready_min: Option<usize>,
    /// A new worker not ready within this is killed and counted as an early death.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub listen_timeout: Option<Duration>,
    /// Workers must send `WATCHDOG=1` at least this often (`WATCHDOG_USEC`), or are replaced.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>", example = &"10s")]
    pub watchdog: Option<Duration>,
    /// How often corral workers are pinged.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub heartbeat_interval: Option<Duration>,
    /// A corral worker whose ping is unanswered this long is killed and replaced.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub heartbeat_timeout: Option<Duration>,
}

/// `[probe]`: liveness probes of every ready worker, each reaching that one worker through
/// the listener its clients use. After `failures` in a row the worker is steered out at once,
/// diagnosed (a hang report), drained and replaced by the restart policy (`MissedProbe`).
/// `http` and `tcp` checks need reuse-port (or sticky) scheduling; `exec` works with any.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// What is checked: `http:/PATH` (2xx/3xx), `tcp` (the worker takes the connection) or
    /// `exec:CMD` (exits 0).
    #[arg(id = "probe.check", long = "probe", value_name = "CHECK", value_parser = checked_check)]
    #[schemars(example = &"http:/healthz")]
    pub check: Option<String>,
    /// How often each worker is probed.
    #[arg(id = "probe.every", long = "probe-every", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub every: Option<Duration>,
    /// How long one probe may take.
    #[arg(id = "probe.timeout", long = "probe-timeout", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Failures in a row that get a worker replaced.
    #[arg(id = "probe.failures", long = "probe-failures", value_name = "N")]
    pub failures: Option<u32>,
    /// How long after a worker is ready its first probe waits.
    #[arg(id = "probe.grace", long = "probe-grace", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub grace: Option<Duration>,
    /// The listener `http` and `tcp` probes go through (its name); default: the first.
    #[arg(id = "probe.listener", long = "probe-listener", value_name = "NAME")]
    #[schemars(example = &"web")]
    pub listener: Option<String>,
}

/// `[autoscale]`: with `workers = "MIN..MAX"`, the count follows the load. Every 250 ms the
/// primary samples the connections waiting (its sockets' accept queues, and connections handed
/// to a worker not taken yet) and the ready workers' CPU against their share (a core each, or
/// the cores shared out). Saturated (connections wait, or CPU over 85 %) for `up_after`: a
/// step up; idle (nothing waits, CPU under 30 %) for `down_after`: the youngest worker drains;
/// each further step after `cooldown`. `corral scale N` pins the count until `corral scale auto`.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleSettings {
    /// Saturated this long before a step up.
    #[arg(id = "autoscale.up_after", long = "autoscale-up-after", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub up_after: Option<Duration>,
    /// Idle this long before a step down.
    #[arg(id = "autoscale.down_after", long = "autoscale-down-after", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub down_after: Option<Duration>,
    /// Workers added or drained per step.
    #[arg(id = "autoscale.step", long = "autoscale-step", value_name = "N")]
    pub step: Option<usize>,
    /// The least time between two steps.
    #[arg(id = "autoscale.cooldown", long = "autoscale-cooldown", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub cooldown: Option<Duration>,
    /// What says saturated or idle: `auto` (either), `queue` or `cpu`.
    #[arg(id = "autoscale.signal", long = "autoscale-signal", value_name = "SIGNAL", value_parser = ["auto", "queue", "cpu"])]
    pub signal: Option<String>,
}

/// Stopping: how a worker is asked to drain, and when it is killed.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct StopSettings {
    /// The signal that asks a worker to drain: `SIGTERM`, `SIGINT`, `SIGQUIT`, … or a number.
    #[arg(long, value_name = "SIG", value_parser = checked_signal)]
    pub stop_signal: Option<String>,
    /// How long a draining worker has before its whole process group gets SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub kill_timeout: Option<Duration>,
}

/// Restarts: which exits are restarted, and how many before a slot gives up.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct RestartSettings {
    /// `permanent` (always restarted), `transient` (after a failure) or `temporary` (never).
    #[arg(long, value_name = "TYPE", value_parser = ["permanent", "transient", "temporary"])]
    pub restart: Option<String>,
    /// A worker up at least this long is restarted at once and its backoff resets; earlier
    /// deaths back off.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub min_uptime: Option<Duration>,
    /// At most this many restarts of one slot within `period`; one more and the slot gives up.
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts`.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub period: Option<Duration>,
    /// When a slot gives up: `stop` the cluster (exit 1) or run `degraded`.
    #[arg(long, value_name = "stop|degraded", value_parser = ["stop", "degraded"])]
    pub escalation: Option<String>,
}

/// `[backoff]`: the delay before restarting a worker that died early.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSettings {
    /// The first delay.
    #[arg(id = "backoff.base", long = "backoff-base", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub base: Option<Duration>,
    /// Growth per consecutive early death.
    #[arg(id = "backoff.factor", long = "backoff-factor", value_name = "X")]
    pub factor: Option<f64>,
    /// The cap.
    #[arg(id = "backoff.max", long = "backoff-max", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub max: Option<Duration>,
    /// Fraction (0 – 1) of each delay taken off at random.
    #[arg(id = "backoff.jitter", long = "backoff-jitter", value_name = "X")]
    pub jitter: Option<f64>,
}

/// Recycling: replacing a worker (replacement first) that grew too big or served enough.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
pub struct RecycleSettings {
    /// Recycle a worker whose RSS stays over this size (`"512MiB"`, `"2GB"`, or bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(default, with = "values::size")]
    #[schemars(with = "Option<values::SizeValue>", example = &"512MiB")]
    pub max_memory: Option<u64>,
    /// Recycle a (corral) worker after this many connections.
    #[arg(long, value_name = "N")]
    #[schemars(example = 10000)]
    pub max_requests: Option<u64>,
    /// A random 0..=N added to `max_requests` per worker, so that workers do not recycle
    /// together.
    #[arg(long, value_name = "N")]
    pub max_requests_jitter: Option<u64>,
    /// At most this many workers recycled at a time; the others wait their turn.
    #[arg(long, value_name = "N")]
    pub recycle_concurrency: Option<usize>,
}

/// `[logs]`: log files of the workers' captured output (timestamped lines; SIGUSR1 reopens
/// them for logrotate).
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsSettings {
    /// The directory (needed for log files).
    #[arg(id = "logs.dir", long = "logs-dir", value_name = "DIR")]
    #[schemars(example = &"/var/log/app")]
    pub dir: Option<PathBuf>,
    /// `cluster` (one file) or `slot` (one file per slot).
    #[arg(id = "logs.per", long = "logs-per", value_name = "cluster|slot", value_parser = ["cluster", "slot"])]
    pub per: Option<String>,
    /// Rotate a file at this size.
    #[arg(id = "logs.max_size", long = "logs-max-size", value_name = "SIZE", value_parser = parse_size)]
    #[serde(default, with = "values::size")]
    #[schemars(with = "Option<values::SizeValue>")]
    pub max_size: Option<u64>,
    /// Rotated files kept.
    #[arg(id = "logs.keep", long = "logs-keep", value_name = "N")]
    pub keep: Option<usize>,
}

/// `[log]`: corral's own log lines on stderr (its workers' captured output among them).
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (for people) or `json`: one JSON object per line, with `ts` (RFC 3339, UTC),
    /// `level`, `target`, `message` and the fields (`slot`, `pid`, `generation`, and `stream`
    /// for a worker's output line), for Loki, Fluent Bit, CloudWatch or GKE. The flag, then
    /// `$CORRAL_LOG_FORMAT`, then the file.
    #[arg(id = "log.format", long = "log-format", env = "CORRAL_LOG_FORMAT", value_name = "json|text", value_parser = ["json", "text"])]
    pub format: Option<String>,
}

/// `[metrics]`: the primary's metrics endpoint, off by default: `GET /metrics` (Prometheus),
/// `/status.json`, a status page at `/`, and the probes `GET /healthz` (200 while the cluster
/// answers within 1 s) and `GET /readyz` (200 once `ready_min` workers are ready).
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where the endpoint listens: `IP:PORT`, or a bare `PORT` for 127.0.0.1. Another address
    /// exposes pids, memory and traffic to whoever reaches it.
    #[arg(id = "metrics.listen", long = "metrics", value_name = "ADDR", value_parser = checked_metrics)]
    #[schemars(example = &"127.0.0.1:9464")]
    pub listen: Option<String>,
}

/// `[node]`: one corral per host joined in a node set (needs a build with `--features
/// cluster`). The cookie comes from `cookie_file` or, without one, from `$CORRAL_COOKIE`;
/// never from the file itself.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// This node's name, unique in the set.
    #[arg(id = "node.name", long = "node", value_name = "NAME")]
    #[schemars(example = &"web-1")]
    pub name: Option<String>,
    /// The node server's address, `IP:PORT` (a fixed port).
    #[arg(id = "node.listen", long = "node-listen", value_name = "ADDR")]
    #[schemars(example = &"10.0.0.1:4370")]
    pub listen: Option<String>,
    /// Node servers to join, `IP:PORT` each (the flag is repeatable).
    #[arg(id = "node.seeds", long = "join", value_name = "ADDR")]
    #[schemars(example = ["10.0.0.2:4370"])]
    pub seeds: Option<Vec<String>>,
    /// A file (mode 0600) holding the node set's shared cookie.
    #[arg(id = "node.cookie_file", long = "cookie-file", value_name = "PATH")]
    #[schemars(example = &"/etc/corral/cookie")]
    pub cookie_file: Option<PathBuf>,
    /// How often host agents heartbeat each other.
    #[arg(id = "node.heartbeat_interval", long = "node-heartbeat-interval", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub heartbeat_interval: Option<Duration>,
    /// A peer silent this long is reported down.
    #[arg(id = "node.heartbeat_timeout", long = "node-heartbeat-timeout", value_name = "DUR", value_parser = parse_duration)]
    #[serde(default, with = "values::duration")]
    #[schemars(with = "Option<String>")]
    pub heartbeat_timeout: Option<Duration>,
}
