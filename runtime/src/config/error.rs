//! Why a configuration value was refused.

/// A configuration value was refused.
///
/// ```
/// use corral_runtime::ConfigError;
/// let e = ConfigError::Invalid { field: "workers", reason: "must be at least 1".into() };
/// assert_eq!(e.to_string(), "invalid cluster config: workers: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `field` holds a bad value.
    #[error("invalid cluster config: {field}: {reason}")]
    Invalid {
        /// The field, as named in [`ClusterConfig`](crate::config::cluster::ClusterConfig) (dotted for nested
        /// fields, e.g. `backoff.max`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
