//! Autoscaling: a cluster whose worker count moves between a minimum and a maximum with its
//! saturation ([`Autoscale`]), read from the signal it says ([`ScaleSignal`]); the range as
//! `workers = "2..8"` spells it ([`WorkerRange`]).
//!
//! The scaling itself lives in the cluster (`cluster/autoscale/`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::error::ConfigProblem;

/// A range of workers: at least `min`, at most `max`, as `"2..8"` (or `"2..=8"`) spells it.
///
/// ```
/// use corral_runtime::WorkerRange;
///
/// let r: WorkerRange = "2..8".parse().unwrap();
/// assert_eq!((r.min, r.max), (2, 8));
/// assert_eq!(r.to_string(), "2..8");
/// assert!("0..4".parse::<WorkerRange>().is_err());
/// assert!("5..2".parse::<WorkerRange>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerRange {
    /// The fewest workers.
    pub min: usize,
    /// The most workers.
    pub max: usize,
}

/// A worker range that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerRangeError {
    /// Not `MIN..MAX`.
    #[error("{0:?} is not a worker count N or a range MIN..MAX like \"2..8\"")]
    Syntax(String),
    /// A minimum of 0.
    #[error("{0:?}: the minimum must be at least 1")]
    ZeroMin(String),
    /// A maximum below the minimum.
    #[error("{0:?}: the maximum is below the minimum")]
    Inverted(String),
}

impl FromStr for WorkerRange {
    type Err = WorkerRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || WorkerRangeError::Syntax(s.to_string());
        let (min, max) = s.trim().split_once("..").ok_or_else(syntax)?;
        let max = max.strip_prefix('=').unwrap_or(max);
        let (min, max): (usize, usize) =
            (min.trim().parse().map_err(|_| syntax())?, max.trim().parse().map_err(|_| syntax())?);
        if min == 0 {
            return Err(WorkerRangeError::ZeroMin(s.to_string()));
        }
        if max < min {
            return Err(WorkerRangeError::Inverted(s.to_string()));
        }
        Ok(WorkerRange { min, max })
    }
}

impl fmt::Display for WorkerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min, self.max)
    }
}

/// What says a cluster is saturated or idle.
///
/// ```
/// use corral_runtime::ScaleSignal;
/// assert_eq!("queue".parse::<ScaleSignal>().unwrap(), ScaleSignal::Queue);
/// assert_eq!(ScaleSignal::default().to_string(), "auto");
/// assert!("load".parse::<ScaleSignal>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ScaleSignal {
    /// Either: connections waiting, or the workers' CPU (saturated when one says so, idle
    /// when both do).
    #[default]
    Auto,
    /// Connections waiting: in the listeners' accept queues (every socket the primary owns),
    /// and handed to a worker but not taken yet (primary-accept scheduling).
    Queue,
    /// The workers' CPU time, against their share of the machine (one core each, or the
    /// cores shared out when there are more workers than cores).
    Cpu,
}

/// A scale signal that is not `auto`, `queue` or `cpu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a scale signal: auto, queue or cpu")]
pub struct ScaleSignalError(pub String);

impl FromStr for ScaleSignal {
    type Err = ScaleSignalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ScaleSignal::Auto),
            "queue" => Ok(ScaleSignal::Queue),
            "cpu" => Ok(ScaleSignal::Cpu),
            other => Err(ScaleSignalError(other.to_string())),
        }
    }
}

impl fmt::Display for ScaleSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScaleSignal::Auto => "auto",
            ScaleSignal::Queue => "queue",
            ScaleSignal::Cpu => "cpu",
        })
    }
}

/// Autoscaling of a cluster between [`min`](Self::min) and [`max`](Self::max) workers, as
/// uWSGI's *cheaper* subsystem does for its own workers, for any program.
///
/// Every 250 ms the primary samples the connections waiting (the accept queue of every
/// listening socket it owns; in primary-accept modes also the connections handed to a worker
/// and not taken yet) and the workers' CPU time. **Saturated**: connections wait (on average
/// at least one over the last second), or the workers use more than 85 % of their share of
/// the CPUs (one core each, or the cores shared out when there are more workers than cores).
/// **Idle**: (almost) nothing waits and they use under 30 %. Saturated for
/// [`up_after`](Self::up_after) adds [`step`](Self::step) workers (ready-gated, as a scale);
/// idle for [`down_after`](Self::down_after) drains the youngest (the last slot added); each
/// further step comes after [`cooldown`](Self::cooldown) while the condition lasts. A manual
/// scale inside the range pins the count until [`Scale::Auto`](crate::Scale::Auto).
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{Autoscale, ClusterConfig, ScaleSignal};
///
/// let scale = Autoscale::new(2, 8).up_after(Duration::from_secs(1)).signal(ScaleSignal::Queue);
/// let config = ClusterConfig::default().autoscale(Some(scale));
/// assert_eq!(config.workers, 2); // it starts at the minimum
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscale {
    /// The fewest workers (at least 1).
    pub min: usize,
    /// The most workers (at least `min`, at most [`MAX_WORKERS`](crate::MAX_WORKERS)).
    pub max: usize,
    /// Saturated this long before a step up. Default: 2 s.
    pub up_after: Duration,
    /// Idle this long before a step down. Default: 30 s.
    pub down_after: Duration,
    /// Workers added or removed per step. Default: 1.
    pub step: usize,
    /// The least time between two steps. Default: 5 s.
    pub cooldown: Duration,
    /// What says saturated or idle. Default: [`ScaleSignal::Auto`].
    pub signal: ScaleSignal,
}

impl Autoscale {
    /// [`Autoscale::up_after`]'s default.
    pub const DEFAULT_UP_AFTER: Duration = Duration::from_secs(2);
    /// [`Autoscale::down_after`]'s default.
    pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_secs(30);
    /// [`Autoscale::step`]'s default.
    pub const DEFAULT_STEP: usize = 1;
    /// [`Autoscale::cooldown`]'s default.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

    /// Between `min` and `max` workers, with the default timings.
    pub fn new(min: usize, max: usize) -> Self {
        Autoscale {
            min,
            max,
            up_after: Self::DEFAULT_UP_AFTER,
            down_after: Self::DEFAULT_DOWN_AFTER,
            step: Self::DEFAULT_STEP,
            cooldown: Self::DEFAULT_COOLDOWN,
            signal: ScaleSignal::Auto,
        }
    }

    /// Between the bounds of `range`.
    ///
    /// ```
    /// let scale = corral_runtime::Autoscale::range("1..4".parse().unwrap());
    /// assert_eq!((scale.min, scale.max), (1, 4));
    /// ```
    pub fn range(range: WorkerRange) -> Self {
        Self::new(range.min, range.max)
    }

    /// Sets [`Autoscale::up_after`].
    #[must_use]
    pub fn up_after(mut self, d: Duration) -> Self {
        self.up_after = d;
        self
    }

    /// Sets [`Autoscale::down_after`].
    #[must_use]
    pub fn down_after(mut self, d: Duration) -> Self {
        self.down_after = d;
        self
    }

    /// Sets [`Autoscale::step`].
    #[must_use]
    pub fn step(mut self, n: usize) -> Self {
        self.step = n;
        self
    }

    /// Sets [`Autoscale::cooldown`].
    #[must_use]
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }

    /// Sets [`Autoscale::signal`].
    #[must_use]
    pub fn signal(mut self, signal: ScaleSignal) -> Self {
        self.signal = signal;
        self
    }

    /// `n` brought into the range.
    ///
    /// ```
    /// let scale = corral_runtime::Autoscale::new(2, 8);
    /// assert_eq!((scale.clamp(1), scale.clamp(5), scale.clamp(20)), (2, 5, 8));
    /// ```
    pub fn clamp(&self, n: usize) -> usize {
        n.clamp(self.min, self.max.max(self.min))
    }

    /// Whether `n` is inside the range.
    pub fn contains(&self, n: usize) -> bool {
        (self.min..=self.max).contains(&n)
    }

    /// The range, as `workers = "MIN..MAX"` spells it.
    pub fn workers(&self) -> WorkerRange {
        WorkerRange { min: self.min, max: self.max }
    }

    /// What [`ClusterConfig::validate`](crate::ClusterConfig::validate) refuses, with the
    /// field, for a cluster of `workers` now, within these limits.
    pub(crate) fn problem(
        &self,
        workers: usize,
        (max_workers, max_duration): (usize, Duration),
    ) -> Option<(&'static str, ConfigProblem)> {
        if self.min == 0 {
            return Some(("autoscale.min", ConfigProblem::AtLeastOne));
        }
        if self.max > max_workers {
            return Some(("autoscale.max", ConfigProblem::TooManyWorkers { workers: self.max, limit: max_workers }));
        }
        if self.max < self.min {
            return Some(("autoscale.max", ConfigProblem::RangeInverted { min: self.min, max: self.max }));
        }
        if self.step == 0 {
            return Some(("autoscale.step", ConfigProblem::AtLeastOne));
        }
        if !self.contains(workers) {
            return Some(("workers", ConfigProblem::OutsideRange { workers, min: self.min, max: self.max }));
        }
        [
            ("autoscale.up_after", self.up_after),
            ("autoscale.down_after", self.down_after),
            ("autoscale.cooldown", self.cooldown),
        ]
        .into_iter()
        .find(|(_, d)| *d > max_duration)
        .map(|(field, value)| (field, ConfigProblem::TooLong { value, limit: max_duration }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_with_or_without_the_equals_sign_and_refuse_nonsense() {
        assert_eq!("1..4".parse::<WorkerRange>(), Ok(WorkerRange { min: 1, max: 4 }));
        assert_eq!(" 2..=2 ".parse::<WorkerRange>(), Ok(WorkerRange { min: 2, max: 2 }));
        for bad in ["4", "..4", "1..", "a..b", "1...4", "-1..4"] {
            assert!(matches!(bad.parse::<WorkerRange>(), Err(WorkerRangeError::Syntax(_))), "{bad}");
        }
        assert!(matches!("0..3".parse::<WorkerRange>(), Err(WorkerRangeError::ZeroMin(_))));
        assert!(matches!("3..1".parse::<WorkerRange>(), Err(WorkerRangeError::Inverted(_))));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |a: Autoscale| a.problem(a.min.max(1), (1024, Duration::from_secs(3600))).map(|(f, _)| f);
        assert_eq!(field(Autoscale::new(1, 4)), None);
        assert_eq!(field(Autoscale::new(0, 4)), Some("autoscale.min"));
        assert_eq!(field(Autoscale::new(1, 2000)), Some("autoscale.max"));
        assert_eq!(field(Autoscale::new(3, 2)), Some("autoscale.max"));
        assert_eq!(field(Autoscale::new(1, 4).step(0)), Some("autoscale.step"));
        assert_eq!(field(Autoscale::new(1, 4).cooldown(Duration::from_secs(7200))), Some("autoscale.cooldown"));
        assert_eq!(Autoscale::new(2, 4).problem(5, (1024, Duration::MAX)).map(|(f, _)| f), Some("workers"));
    }
}
