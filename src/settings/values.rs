//! The value syntaxes of settings, shared by `corral.toml` and the `corral run` flags:
//! durations (`"5s"`), sizes (`"512MiB"`), signals (`"SIGTERM"`), `KEY=VALUE` pairs. Each has a
//! parser (also a clap value parser) and, where the file needs one, a serde module.

use std::time::Duration;

use corral_runtime::{Check, CheckError, ListenSpec, ListenSpecError, MetricsAddrError, Readiness, ReadinessError};

/// A value that does not parse, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Not a duration.
    #[error("{text:?} is not a duration like \"5s\" or \"250ms\": {source}")]
    Duration {
        /// The text.
        text: String,
        /// humantime's reason.
        source: humantime::DurationError,
    },
    /// Not a size.
    #[error("{text:?} is not a size like \"512MiB\" or \"2GB\"")]
    Size {
        /// The text.
        text: String,
    },
    /// Not a signal.
    #[error("{text:?} is not a signal")]
    Signal {
        /// The text.
        text: String,
    },
    /// Not `KEY=VALUE`.
    #[error("{text:?} is not KEY=VALUE")]
    Env {
        /// The text.
        text: String,
    },
    /// Not a listener.
    #[error(transparent)]
    Listen(#[from] ListenSpecError),
    /// Not a readiness.
    #[error(transparent)]
    Ready(#[from] ReadinessError),
    /// Not a health check.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Not a metrics address.
    #[error(transparent)]
    Metrics(#[from] MetricsAddrError),
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
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s).map_err(|source| ValueError::Duration { text: s.to_string(), source })
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
pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    s.parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|_| ValueError::Size { text: s.to_string() })
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

/// A signal, as a clap value parser: the number (`corral run --stop-signal`).
///
/// # Errors
///
/// Not a signal.
pub fn parse_sig(s: &str) -> Result<i32, ValueError> {
    parse_signal(s).ok_or_else(|| ValueError::Signal { text: s.to_string() })
}

/// `KEY=VALUE` (`corral run -e`).
///
/// # Errors
///
/// No `=`, or an empty key.
pub fn parse_env(s: &str) -> Result<(String, String), ValueError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ValueError::Env { text: s.to_string() }),
    }
}

// Clap value parsers that check a flag's text at once and keep it as the file would have it.

pub(crate) fn checked_signal(s: &str) -> Result<String, ValueError> {
    parse_sig(s).map(|_| s.to_string())
}

pub(crate) fn checked_listen(s: &str) -> Result<String, ValueError> {
    Ok(s.parse::<ListenSpec>()?.to_string())
}

pub(crate) fn checked_ready(s: &str) -> Result<String, ValueError> {
    Ok(s.parse::<Readiness>()?.to_string())
}

pub(crate) fn checked_check(s: &str) -> Result<String, ValueError> {
    Ok(s.parse::<Check>()?.to_string())
}

pub(crate) fn checked_metrics(s: &str) -> Result<String, ValueError> {
    corral_runtime::parse_metrics_addr(s)?;
    Ok(s.to_string())
}

/// A size as the file writes it: `"10MiB"` when it is a whole number of KiB, MiB or GiB.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `Option<Duration>` as `"5s"`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| super::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// `Option<u64>` bytes as `"512MiB"` or a number.
pub(crate) mod size {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(n) => s.serialize_some(&super::format_size(*n)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<super::SizeValue>::deserialize(d)? {
            None => Ok(None),
            Some(super::SizeValue::Bytes(n)) => Ok(Some(n)),
            Some(super::SizeValue::Text(t)) => super::parse_size(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A size in the file: bytes, or a string with a unit.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `"512MiB"`, `"2GB"`.
    Text(String),
}

/// `KEY=VALUE` pairs (`-e`, repeatable) as the `[env]` table.
pub(crate) mod env_table {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    type Pairs = Option<Vec<(String, String)>>;

    pub(crate) fn serialize<S: Serializer>(value: &Pairs, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(pairs) => s.serialize_some(&pairs.iter().cloned().collect::<BTreeMap<_, _>>()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.map(|m| m.into_iter().collect()))
    }
}

pub(crate) fn checked_sticky_key(s: &str) -> Result<String, corral_runtime::StickyKeyError> {
    s.parse::<corral_runtime::StickyKey>().map(|_| s.to_string())
}

/// `workers`: a fixed count (`4`; `0` is one per CPU) or an autoscaling range (`"2..8"`).
///
/// ```
/// use corral::settings::Workers;
///
/// assert_eq!("4".parse::<Workers>(), Ok(Workers::Count(4)));
/// assert_eq!("2..8".parse::<Workers>().unwrap().to_string(), "2..8");
/// assert!("four".parse::<Workers>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// This many workers (0: one per CPU).
    Count(usize),
    /// Autoscaled between the range's bounds (the `[autoscale]` table says how).
    Range(corral_runtime::WorkerRange),
}

impl std::str::FromStr for Workers {
    type Err = corral_runtime::WorkerRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<usize>() {
            Ok(n) => Ok(Workers::Count(n)),
            Err(_) => s.parse().map(Workers::Range),
        }
    }
}

impl std::fmt::Display for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workers::Count(n) => write!(f, "{n}"),
            Workers::Range(r) => write!(f, "{r}"),
        }
    }
}

impl serde::Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Count(n) => s.serialize_u64(*n as u64),
            Workers::Range(r) => s.serialize_str(&r.to_string()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A count or a range, as the file writes it.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Count(n) => usize::try_from(n).map(Workers::Count).map_err(serde::de::Error::custom),
            Written::Text(t) => {
                t.parse::<corral_runtime::WorkerRange>().map(Workers::Range).map_err(serde::de::Error::custom)
            }
        }
    }
}

impl schemars::JsonSchema for Workers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Workers".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[1-9][0-9]*\\s*\\.\\.=?\\s*[0-9]+\\s*$" }
            ]
        })
    }
}
