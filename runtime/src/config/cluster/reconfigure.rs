//! How a rolling reload re-reads the configuration ([`Reconfigure`]), and what it cannot change
//! ([`Unchangeable`]).

use std::fmt;
use std::sync::Arc;

use super::ClusterConfig;

/// The error a [`Reconfigure`] hook gives for a configuration it refuses.
pub type ReconfigureError = Box<dyn std::error::Error + Send + Sync>;

/// A hook that yields the configuration a rolling reload starts from.
///
/// ```
/// use corral_runtime::{ClusterConfig, Reconfigure};
///
/// let hook = Reconfigure::new(|| Ok(ClusterConfig::default().workers(3)));
/// let config = ClusterConfig::default().workers(2).reconfigure(Some(hook));
/// assert!(config.reconfigure.is_some());
/// ```
#[derive(Clone)]
pub struct Reconfigure(Arc<dyn Fn() -> Result<ClusterConfig, ReconfigureError> + Send + Sync>);

impl Reconfigure {
    /// A hook from a function. It runs in the primary's event loop at the start of each
    /// reload: keep it short (read a file, parse it).
    pub fn new(hook: impl Fn() -> Result<ClusterConfig, ReconfigureError> + Send + Sync + 'static) -> Self {
        Reconfigure(Arc::new(hook))
    }

    /// Runs the hook.
    ///
    /// # Errors
    ///
    /// Whatever the hook refuses.
    pub fn load(&self) -> Result<ClusterConfig, ReconfigureError> {
        (self.0)()
    }
}

impl fmt::Debug for Reconfigure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reconfigure(..)")
    }
}

/// What a reload cannot change: the sockets are bound and shared already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot change in a reload (restart the cluster for that)")]
pub struct Unchangeable {
    /// What changed: `scheduling` or `listen`.
    pub what: &'static str,
}
