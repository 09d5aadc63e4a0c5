//! The bounds every cluster configuration is checked against: how long a duration, how many
//! workers.

use std::time::Duration;

/// The longest duration a [`ClusterConfig`](crate::ClusterConfig) accepts, for every timeout, interval and delay in
/// it: 100 years. Longer ones (a config file may say `"18446744073709551615s"`, 585 billion
/// years) are typos, and cannot be turned into deadlines: `Instant::now() + d` panics past the
/// clock's range, and the cluster adds allowances to some of them.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{ClusterConfig, MAX_DURATION};
///
/// assert!(ClusterConfig::default().kill_timeout(MAX_DURATION).validate().is_ok());
/// let err = ClusterConfig::default().kill_timeout(Duration::MAX).validate().unwrap_err();
/// assert!(err.to_string().contains("kill_timeout"), "{err}");
/// ```
// 100 years of 365.25 days, as humantime counts a `y`: a config file's "100y" passes.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// The most workers one cluster may have: far above any machine's useful count, low enough
/// that a typo does not fork-bomb the host.
pub const MAX_WORKERS: usize = 1024;
