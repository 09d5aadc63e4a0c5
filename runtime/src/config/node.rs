//! Where a primary stands in a node set: its node name, the address its node server listens
//! on, the seeds it joins and the shared cookie ([`NodeConfig`]). Plain data, in every build;
//! running it needs the `cluster` feature (`corral::node` describes the node set).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::error::ConfigProblem;

/// The environment variable a cookie is read from when no cookie file is given.
pub const COOKIE_ENV: &str = "CORRAL_COOKIE";

/// A primary's place in a node set (one corral per host, all of them joined through
/// ractor_cluster; see the README's "Beyond one host").
///
/// ```
/// use corral_runtime::{ClusterConfig, Cookie, NodeConfig};
///
/// let node = NodeConfig::new("web-1", "10.0.0.1:4370".parse().unwrap(), Cookie::new("s3cret").unwrap())
///     .seed("10.0.0.2:4370".parse().unwrap());
/// let config = ClusterConfig::default().node(node);
/// assert_eq!(config.node.as_ref().unwrap().seeds.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's name, unique in the set: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The address the node server listens on (a fixed port: peers reconnect to it).
    pub listen: SocketAddr,
    /// Node servers to join at start and to reconnect to while they are away. Other members
    /// are learnt from the heartbeats of those.
    pub seeds: Vec<SocketAddr>,
    /// The shared secret of the set: a peer with another cookie is refused (and logged).
    pub cookie: Cookie,
    /// How often each host agent sends its heartbeat to the others. Default 500 ms.
    pub heartbeat_interval: Duration,
    /// A peer silent this long is reported down and its connection dropped; it is back at its
    /// next heartbeat. Default 2.5 s (five intervals).
    pub heartbeat_timeout: Duration,
}

impl NodeConfig {
    /// A node named `name` listening on `listen`, without seeds (it waits to be joined).
    pub fn new(name: impl Into<String>, listen: SocketAddr, cookie: Cookie) -> Self {
        NodeConfig {
            name: name.into(),
            listen,
            seeds: Vec::new(),
            cookie,
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_millis(2500),
        }
    }

    /// Adds a seed to join.
    #[must_use]
    pub fn seed(mut self, addr: SocketAddr) -> Self {
        self.seeds.push(addr);
        self
    }

    /// Sets [`heartbeat_interval`](Self::heartbeat_interval) and
    /// [`heartbeat_timeout`](Self::heartbeat_timeout).
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// Why this is not a usable node configuration, if it is not: `(field, reason)`.
    pub(crate) fn problem(&self) -> Option<(&'static str, ConfigProblem)> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Some(("node.name", ConfigProblem::NodeName(self.name.clone())));
        }
        if self.listen.port() == 0 {
            return Some(("node.listen", ConfigProblem::NodeFixedPort));
        }
        if let Some(seed) = self.seeds.iter().find(|s| s.port() == 0) {
            return Some(("node.seeds", ConfigProblem::SeedWithoutPort(*seed)));
        }
        if self.heartbeat_interval.is_zero() {
            return Some(("node.heartbeat_interval", ConfigProblem::Zero));
        }
        if self.heartbeat_timeout < self.heartbeat_interval.saturating_mul(2) {
            return Some(("node.heartbeat_timeout", ConfigProblem::NodeHeartbeatTimeout(self.heartbeat_timeout)));
        }
        if !cfg!(feature = "cluster") {
            return Some(("node", ConfigProblem::NoNodeSupport));
        }
        None
    }
}

/// The shared secret of a node set. Never printed (its `Debug` says `Cookie(..)`), and read
/// from a file or the environment, never from a command line where `ps` would show it.
///
/// ```
/// use corral_runtime::Cookie;
///
/// let cookie = Cookie::new("  s3cret\n").unwrap();
/// assert_eq!(cookie.secret(), "s3cret");
/// assert_eq!(format!("{cookie:?}"), "Cookie(..)");
/// assert!(Cookie::new(" \n").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// Why a cookie could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// Empty (or only white space).
    #[error("the cookie is empty")]
    Empty,
    /// The cookie file could not be read.
    #[error("cookie file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cookie file is readable by others than its owner (as ssh refuses such keys).
    #[error("cookie file {path} is readable by group or others (mode {mode:o}): chmod 600 it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Neither a file nor the environment variable gave one.
    #[error("no cookie: give a cookie file or set {COOKIE_ENV}")]
    Missing,
}

impl Cookie {
    /// A cookie of `secret`, surrounding white space trimmed.
    ///
    /// # Errors
    ///
    /// [`CookieError::Empty`].
    pub fn new(secret: impl AsRef<str>) -> Result<Self, CookieError> {
        let secret = secret.as_ref().trim();
        if secret.is_empty() {
            return Err(CookieError::Empty);
        }
        Ok(Cookie(secret.to_string()))
    }

    /// The cookie in the file at `path`, which must not be readable by group or others.
    ///
    /// # Errors
    ///
    /// [`CookieError::Read`], [`CookieError::Exposed`], [`CookieError::Empty`].
    pub fn from_file(path: &Path) -> Result<Self, CookieError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| CookieError::Read { path: path.to_path_buf(), source };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CookieError::Exposed { path: path.to_path_buf(), mode });
        }
        Cookie::new(std::fs::read_to_string(path).map_err(read)?)
    }

    /// The cookie in [`COOKIE_ENV`], if set.
    ///
    /// # Errors
    ///
    /// [`CookieError::Missing`] when unset, [`CookieError::Empty`].
    pub fn from_env() -> Result<Self, CookieError> {
        match std::env::var(COOKIE_ENV) {
            Ok(secret) => Cookie::new(secret),
            Err(_) => Err(CookieError::Missing),
        }
    }

    /// The secret itself.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

/// What a cluster's message type (primary → worker) must be so that a broadcast can cross the
/// node set: with the `cluster` feature, decodable (`serde::de::DeserializeOwned`), as each
/// node turns the broadcast back into its own type; without it, anything (the bound is empty).
#[cfg(feature = "cluster")]
pub trait NodeMessage: serde::de::DeserializeOwned {}
#[cfg(feature = "cluster")]
impl<T: serde::de::DeserializeOwned> NodeMessage for T {}

/// What a cluster's message type (primary → worker) must be so that a broadcast can cross the
/// node set: with the `cluster` feature, decodable (`serde::de::DeserializeOwned`), as each
/// node turns the broadcast back into its own type; without it, anything (the bound is empty).
#[cfg(not(feature = "cluster"))]
pub trait NodeMessage {}
#[cfg(not(feature = "cluster"))]
impl<T> NodeMessage for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        NodeConfig::new("web-1", "127.0.0.1:4370".parse().unwrap(), Cookie::new("c").unwrap())
    }

    fn refusal(node: NodeConfig) -> String {
        let (field, reason) = node.problem().expect("refused");
        format!("{field}: {reason}")
    }

    #[test]
    fn bad_node_configs_are_refused_with_the_field() {
        assert!(refusal(NodeConfig { name: "a b".into(), ..node() }).contains("node.name"));
        assert!(refusal(NodeConfig { name: String::new(), ..node() }).contains("node.name"));
        assert!(refusal(NodeConfig { listen: "127.0.0.1:0".parse().unwrap(), ..node() }).contains("node.listen"));
        assert!(refusal(node().seed("127.0.0.2:0".parse().unwrap())).contains("node.seeds"));
        let quick = node().heartbeat(Duration::from_secs(1), Duration::from_millis(1500));
        assert!(refusal(quick).contains("node.heartbeat_timeout"));
        assert!(refusal(node().heartbeat(Duration::ZERO, Duration::from_secs(1))).contains("node.heartbeat_interval"));
    }

    #[test]
    fn a_good_node_config_needs_the_feature() {
        let checked = node().problem();
        if cfg!(feature = "cluster") {
            assert!(checked.is_none(), "{checked:?}");
        } else {
            assert_eq!(checked, Some(("node", ConfigProblem::NoNodeSupport)));
        }
    }

    #[test]
    fn cookie_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("corral-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cookie");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Cookie::from_file(&path), Err(CookieError::Exposed { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Cookie::from_file(&path).unwrap().secret(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(Cookie::from_file(&path), Err(CookieError::Empty)));
        assert!(matches!(Cookie::from_file(&dir.join("missing")), Err(CookieError::Read { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
