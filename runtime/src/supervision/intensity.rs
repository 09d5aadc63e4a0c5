//! Restart intensity: at most `max_restarts` restarts within `period` (OTP's
//! `intensity`/`period`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sliding window of recent restarts. When one more restart would make more than
/// `max_restarts` within `period`, the slot gives up instead of restarting.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use corral_runtime::RestartIntensity;
///
/// let mut window = RestartIntensity::new(2, Duration::from_secs(10));
/// let t0 = Instant::now();
/// assert!(window.allow(t0));
/// assert!(window.allow(t0 + Duration::from_secs(1)));
/// assert!(!window.allow(t0 + Duration::from_secs(2))); // a third within 10 s
/// assert!(window.allow(t0 + Duration::from_secs(20))); // the old ones have left the window
/// ```
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max_restarts: u32,
    period: Duration,
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    /// A window allowing `max_restarts` restarts per `period`.
    pub fn new(max_restarts: u32, period: Duration) -> Self {
        RestartIntensity { max_restarts, period, recent: VecDeque::new() }
    }

    /// Records a restart at `now` and says whether it is allowed. A refused restart is not
    /// recorded.
    pub fn allow(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= self.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.max_restarts as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Restarts counted in the current window.
    pub fn count(&self) -> usize {
        self.recent.len()
    }
}
