//! Every setting of `corral run` and `corral.toml`, declared once.
//!
//! [`Settings`] is the declaration: one field per setting in topic groups
//! ([`groups`]), each with its TOML key (serde), its `corral run` flag (clap), its type in
//! the JSON Schema (schemars) and its doc comment, the one text that the flag's help, the
//! `corral init` template ([`template`]), the schema (`corral schema`, [`schema`]) and the
//! book's reference page ([`reference_page`]) all show. [`Settings::defaults`] gives each
//! setting's default, read from the runtime's own defaults. [`ConfigFile`] reads a file into
//! it and turns it into a [`ClusterConfig`](crate::ClusterConfig), in one place.
//!
//! Flags and keys have the same names (`kill_timeout` ↔ `--kill-timeout`; in a table,
//! `backoff.max` ↔ `--backoff-max`) except where a field says otherwise: `program` and
//! `args` are the words after `--`, `[env]` is `-e KEY=VALUE`, `metrics.listen` is
//! `--metrics`, `node.name` is `--node`, `node.seeds` is `--join`.
//!
//! [`ConfigFile`]: crate::config_file::ConfigFile

mod generate;
pub mod groups;
pub(crate) mod values;

use clap::Args;
use corral_runtime::{Backoff, ClusterConfig, LogFiles};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use generate::{Group, Setting, reference_page, schema, settings_of, template, toml_value, with_defaults};
use groups::{
    AutoscaleSettings, BackoffSettings, ListenerSettings, LogSettings, LogsSettings, MetricsSettings, NodeSettings,
    ProbeSettings, ProgramSettings, ReadinessSettings, RecycleSettings, RestartSettings, StopSettings,
};
pub use values::Workers;

/// The settings of a cluster run by `corral run`: `corral.toml` as a whole, and the flags of
/// `corral run` that are not about the invocation itself. Every field is optional: what is
/// absent keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "corral.toml", description = "The configuration of a cluster run by `corral run`.")]
pub struct Settings {
    /// The program.
    #[command(flatten, next_help_heading = "Program")]
    #[serde(flatten)]
    pub program: ProgramSettings,
    /// Listeners.
    #[command(flatten, next_help_heading = "Listeners")]
    #[serde(flatten)]
    pub listeners: ListenerSettings,
    /// Readiness and health.
    #[command(flatten, next_help_heading = "Readiness and health")]
    #[serde(flatten)]
    pub readiness: ReadinessSettings,
    /// Stopping.
    #[command(flatten, next_help_heading = "Stopping")]
    #[serde(flatten)]
    pub stopping: StopSettings,
    /// Restarts.
    #[command(flatten, next_help_heading = "Restarts")]
    #[serde(flatten)]
    pub restarts: RestartSettings,
    /// `[probe]`.
    #[command(flatten, next_help_heading = "Liveness probes")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub probe: ProbeSettings,
    /// `[autoscale]`.
    #[command(flatten, next_help_heading = "Autoscaling")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub autoscale: AutoscaleSettings,
    /// `[backoff]`.
    #[command(flatten, next_help_heading = "Backoff")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub backoff: BackoffSettings,
    /// Recycling.
    #[command(flatten, next_help_heading = "Recycling")]
    #[serde(flatten)]
    pub recycling: RecycleSettings,
    /// `[logs]`.
    #[command(flatten, next_help_heading = "Log files")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub logs: LogsSettings,
    /// `[log]`.
    #[command(flatten, next_help_heading = "Log format")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub log: LogSettings,
    /// `[metrics]`.
    #[command(flatten, next_help_heading = "Metrics")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics: MetricsSettings,
    /// `[node]`.
    #[command(flatten, next_help_heading = "Node set")]
    #[serde(default, skip_serializing_if = "is_default")]
    pub node: NodeSettings,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Settings that could not be combined.
#[derive(Debug, thiserror::Error)]
#[error("cannot combine the settings: {0}")]
pub struct OverlayError(#[from] serde_json::Error);

impl Settings {
    /// Every setting that has a default, at that default, as `corral run` applies it (its
    /// workers are a `program`); the others (`program`, `listen`, `max_memory`, …) `None`.
    /// Read from [`ClusterConfig::default`], [`Backoff::default`], [`LogFiles::new`] and the
    /// node set's defaults, so that it cannot drift from what the runtime does.
    pub fn defaults() -> Settings {
        let c = ClusterConfig::default();
        let foreign = corral_runtime::ForeignWorker::new("program");
        let Backoff { base, factor, max, jitter } = Backoff::default();
        let logs = LogFiles::new("logs");
        let node = corral_runtime::Cookie::new("a cookie of the default node settings")
            .ok()
            .map(|cookie| corral_runtime::NodeConfig::new("node", ([127, 0, 0, 1], 0).into(), cookie));
        let signal = nix::sys::signal::Signal::try_from(foreign.stop_signal).ok().map(|s| s.as_str().to_string());
        Settings {
            program: ProgramSettings {
                // 0 stands for the default, one worker per CPU.
                workers: Some(values::Workers::Count(0)),
                spares: Some(c.spares),
                output: Some("capture".into()),
                ..ProgramSettings::default()
            },
            listeners: ListenerSettings {
                sched: Some("reuseport".into()),
                sticky_key: Some(c.sticky_key.to_string()),
                ..ListenerSettings::default()
            },
            readiness: ReadinessSettings {
                ready: Some(foreign.ready.to_string()),
                ready_min: None,
                listen_timeout: Some(c.listen_timeout),
                watchdog: None,
                heartbeat_interval: Some(c.heartbeat_interval),
                heartbeat_timeout: Some(c.heartbeat_timeout),
            },
            stopping: StopSettings { stop_signal: signal, kill_timeout: Some(c.kill_timeout) },
            restarts: RestartSettings {
                restart: Some(format!("{:?}", c.restart).to_lowercase()),
                min_uptime: Some(c.min_uptime),
                max_restarts: Some(c.max_restarts),
                period: Some(c.period),
                escalation: Some(format!("{:?}", c.escalation).to_lowercase()),
            },
            recycling: RecycleSettings {
                max_memory: c.max_memory,
                max_requests: c.max_requests,
                max_requests_jitter: Some(c.max_requests_jitter),
                recycle_concurrency: Some(c.recycle_concurrency),
            },
            probe: ProbeSettings {
                check: None,
                every: Some(corral_runtime::ProbeConfig::DEFAULT_EVERY),
                timeout: Some(corral_runtime::ProbeConfig::DEFAULT_TIMEOUT),
                failures: Some(corral_runtime::ProbeConfig::DEFAULT_FAILURES),
                grace: Some(std::time::Duration::ZERO),
                listener: None,
            },
            autoscale: AutoscaleSettings {
                up_after: Some(corral_runtime::Autoscale::DEFAULT_UP_AFTER),
                down_after: Some(corral_runtime::Autoscale::DEFAULT_DOWN_AFTER),
                step: Some(corral_runtime::Autoscale::DEFAULT_STEP),
                cooldown: Some(corral_runtime::Autoscale::DEFAULT_COOLDOWN),
                signal: Some(corral_runtime::ScaleSignal::default().to_string()),
            },
            backoff: BackoffSettings { base: Some(base), factor: Some(factor), max: Some(max), jitter: Some(jitter) },
            logs: LogsSettings {
                dir: None,
                per: Some(if logs.per_slot { "slot" } else { "cluster" }.into()),
                max_size: Some(logs.max_bytes),
                keep: Some(logs.keep),
            },
            log: LogSettings { format: Some("text".into()) },
            metrics: MetricsSettings { listen: None },
            node: NodeSettings {
                heartbeat_interval: node.as_ref().map(|n| n.heartbeat_interval),
                heartbeat_timeout: node.as_ref().map(|n| n.heartbeat_timeout),
                ..NodeSettings::default()
            },
        }
    }

    /// `over` on top of `self`: what `over` sets replaces what `self` says, key by key (a
    /// list, `listen` say, as a whole); `[env]` adds up, `over`'s value winning for a name in
    /// both, and so do `env_files` (`over`'s after `self`'s). This is how `corral run`'s flags override its file.
    ///
    /// ```
    /// use corral::settings::Settings;
    ///
    /// let mut file: Settings = toml::from_str("workers = 2\nkill_timeout = \"3s\"\n[env]\nA = \"1\"\n").unwrap();
    /// let flags: Settings = toml::from_str("workers = 4\n[env]\nB = \"2\"\n").unwrap();
    /// file.overlay(&flags).unwrap();
    /// assert_eq!(file.program.workers, Some(corral::settings::Workers::Count(4)));
    /// assert_eq!(file.stopping.kill_timeout, Some(std::time::Duration::from_secs(3)));
    /// assert_eq!(file.program.env.unwrap().len(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// Not expected: every setting survives the trip through JSON that combining them takes.
    pub fn overlay(&mut self, over: &Settings) -> Result<(), OverlayError> {
        // Env files add up too: the file's first, then those of `over`.
        let files: Option<Vec<_>> = match (&self.program.env_files, &over.program.env_files) {
            (Some(mine), Some(theirs)) => Some(mine.iter().chain(theirs).cloned().collect()),
            _ => None,
        };
        let mut base = serde_json::to_value(&*self)?;
        merge(&mut base, serde_json::to_value(over)?);
        *self = serde_json::from_value(base)?;
        if files.is_some() {
            self.program.env_files = files;
        }
        Ok(())
    }
}

/// `over` into `base`: objects key by key, anything else (a null aside) replaced.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    use serde_json::Value;
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, over) => *base = over,
    }
}
