//! Whether a cluster has a control socket, and where it lives (see [`control`](crate::operator::control)).

use std::path::PathBuf;

/// Whether a cluster has a control socket, and where.
///
/// ```
/// use corral_runtime::ControlSocket;
/// assert_eq!(ControlSocket::default(), ControlSocket::Default);
/// let path = ControlSocket::Default.path("web").unwrap();
/// assert!(path.ends_with("corral/web.sock"));
/// assert_eq!(ControlSocket::Off.path("web"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ControlSocket {
    /// `$XDG_RUNTIME_DIR/corral/<name>.sock`, else `/run/corral/<name>.sock` for root, else
    /// `~/.corral/<name>.sock` (`<name>`: the cluster's [`name`](crate::config::cluster::ClusterConfig::name)).
    #[default]
    Default,
    /// This path.
    Path(PathBuf),
    /// No control socket.
    Off,
}

impl ControlSocket {
    /// The socket's path for a cluster named `name`; `None` when off.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        match self {
            ControlSocket::Off => None,
            ControlSocket::Path(path) => Some(path.clone()),
            ControlSocket::Default => Some(default_dir().join(format!("{name}.sock"))),
        }
    }
}

/// The directory default control sockets go in.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("corral");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/corral");
    }
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".corral")
}
