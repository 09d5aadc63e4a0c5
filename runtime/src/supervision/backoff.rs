//! Exponential restart backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// How long to wait before restarting a worker that died early.
///
/// The `n`-th consecutive early death (counting from 0) waits `base · factor^n`, capped at
/// `max`, with up to `jitter` of it (a fraction, 0.0 – 1.0) taken off at random so that slots
/// that crashed together do not restart together. The count `n` is kept by the supervisor and
/// reset once a worker has stayed up for `min_uptime` (see [`ClusterConfig`]).
///
/// Defaults: base 100 ms, factor 2, max 15 s, jitter 0.2 (PM2's exponential backoff starts at
/// 100 ms and caps at 15 s; systemd's RestartSec is 100 ms).
///
/// [`ClusterConfig`]: crate::config::cluster::ClusterConfig
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::Backoff;
///
/// let b = Backoff { base: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(1), jitter: 0.0 };
/// assert_eq!(b.delay(0), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(800));
/// assert_eq!(b.delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// Growth per consecutive early death (≥ 1.0).
    pub factor: f64,
    /// The cap.
    pub max: Duration,
    /// Fraction of each delay (0.0 – 1.0) that is taken off at random.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(15), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay before the restart that follows the `attempt`-th consecutive early death
    /// (0-based), jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::rng().random_range(0.0..=1.0))
    }

    /// The delay with the jitter drawn as `draw` (0.0 – 1.0): `draw · jitter` of the nominal
    /// delay is taken off. [`delay`](Self::delay) draws it at random; this is for callers
    /// that must be deterministic (the restart policy's tests).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use corral_runtime::Backoff;
    /// let b = Backoff { base: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(1), jitter: 0.5 };
    /// assert_eq!(b.delay_with(0, 0.0), Duration::from_millis(100));
    /// assert_eq!(b.delay_with(0, 1.0), Duration::from_millis(50));
    /// ```
    pub fn delay_with(&self, attempt: u32, draw: f64) -> Duration {
        let nominal = self.nominal(attempt);
        if self.jitter <= 0.0 || nominal.is_zero() {
            return nominal;
        }
        let cut = self.jitter.min(1.0) * draw.clamp(0.0, 1.0);
        nominal.mul_f64(1.0 - cut)
    }

    /// The delay without jitter: `min(base · factor^attempt, max)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use corral_runtime::Backoff;
    /// let b = Backoff::default();
    /// assert_eq!(b.nominal(1), Duration::from_millis(200));
    /// assert_eq!(b.nominal(1000), Duration::from_secs(15));
    /// ```
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() { self.max } else { Duration::from_secs_f64(secs) }
    }
}
