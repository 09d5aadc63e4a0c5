//! corral's own log lines on stderr: `text` for people, `json` for log collectors.
//!
//! `--log-format json` (or `CORRAL_LOG_FORMAT=json`, or `[log] format = "json"` in
//! `corral.toml`) prints one JSON object per line ([`json`]): `ts` (RFC 3339, UTC), `level`,
//! `target`, `message`, then the event's fields and those of the spans it is in, flattened
//! (`slot`, `pid`, `generation`, …). A captured worker line is such an object too, its text as
//! `message` and its `stream`, so that Loki, Fluent Bit, CloudWatch and GKE read every line
//! without a regex.
//!
//! ```
//! use corral::logging::LogFormat;
//!
//! assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
//! assert!("yaml".parse::<LogFormat>().is_err());
//! assert_eq!(LogFormat::default(), LogFormat::Text);
//! ```

pub mod json;

use std::fmt;
use std::io::Write as _;

/// The environment variable that picks the log format when no flag does (`json` or `text`).
pub const LOG_FORMAT_ENV: &str = "CORRAL_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (coloured on a terminal). The default.
    #[default]
    Text,
    /// One JSON object per line ([`json`]).
    Json,
}

/// A log format that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a log format: json or text")]
pub struct UnknownLogFormat(pub String);

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(s.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl LogFormat {
    /// The format `$CORRAL_LOG_FORMAT` names; `text` when it is unset or names none.
    ///
    /// ```
    /// // (unset in the doc-test's environment)
    /// assert_eq!(corral::logging::LogFormat::from_env(), corral::logging::LogFormat::Text);
    /// ```
    pub fn from_env() -> LogFormat {
        std::env::var(LOG_FORMAT_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or_default()
    }
}

/// Installs a `tracing` subscriber that writes `format` lines to stderr, filtered by
/// `RUST_LOG` (default `info`); text in colour only on a terminal without `NO_COLOR`. With the
/// `telemetry` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP
/// too. Does nothing when a global subscriber is already installed.
/// [`init_tracing`](crate::init_tracing) is this with the format of `$CORRAL_LOG_FORMAT`.
///
/// ```no_run
/// corral::logging::init(corral::logging::LogFormat::Json);
/// tracing::info!(slot = 3, "one JSON object on stderr");
/// ```
pub fn init(format: LogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::prelude::*;
    if tracing::dispatcher::has_been_set() {
        return; // Someone else set tracing up; don't start an exporter nobody feeds.
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonLines)
            .with_filter(filter)
            .boxed(),
    };
    #[cfg(feature = "telemetry")]
    {
        let (otel, failed) = match crate::telemetry::layer() {
            Ok(otel) => (otel, None),
            Err(e) => (None, Some(e)),
        };
        if tracing_subscriber::registry().with(fmt).with(otel).try_init().is_ok()
            && let Some(e) = failed
        {
            tracing::error!(error = %e, "OpenTelemetry export is off");
        }
    }
    #[cfg(not(feature = "telemetry"))]
    {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
    }
}

/// Prints a program's last word on stderr — why it cannot start or stopped — in `format`:
/// `PREFIX: MESSAGE` as text, one JSON object (`level` `error`) as JSON, so that a log
/// collector reading JSON sees it whole.
///
/// ```
/// corral::logging::last_word(corral::logging::LogFormat::Json, "corral", "no program to run");
/// ```
pub fn last_word(format: LogFormat, prefix: &str, message: &str) {
    let line = match format {
        LogFormat::Text => format!("{prefix}: {message}\n"),
        LogFormat::Json => json::error_line(prefix, message),
    };
    // Nothing to do when stderr is gone; the exit code still says it.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Whether log lines get ANSI colours: only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
