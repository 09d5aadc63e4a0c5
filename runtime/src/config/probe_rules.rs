//! What [`ClusterConfig::validate`](crate::ClusterConfig::validate) refuses in health checks
//! ([`Check`], [`ProbeConfig`]).

use std::time::Duration;

use corral_protocol::Scheduling;

use crate::config::error::ConfigProblem;
use crate::config::probe::{Check, ProbeConfig};

/// Why `check` cannot be made with `scheduling`: an HTTP or TCP check with `shared`, where no
/// connection can reach one chosen worker.
pub(crate) fn check_problem(check: &Check, scheduling: Scheduling) -> Option<ConfigProblem> {
    (check.targets_one_worker() && scheduling == Scheduling::Shared)
        .then(|| ConfigProblem::ProbeNeedsOwnSocket { check: check.to_string() })
}

/// The first bad value of `probe`, and why: a zero `every` or `timeout`, zero `failures`, a
/// duration over `limit`.
pub(crate) fn probe_problem(probe: &ProbeConfig, limit: Duration) -> Option<(&'static str, ConfigProblem)> {
    let durations = [("probe.every", probe.every), ("probe.timeout", probe.timeout), ("probe.grace", probe.grace)];
    if let Some((field, _)) = durations.iter().take(2).find(|(_, d)| d.is_zero()) {
        return Some((field, ConfigProblem::Zero));
    }
    if let Some(&(field, value)) = durations.iter().find(|(_, d)| *d > limit) {
        return Some((field, ConfigProblem::TooLong { value, limit }));
    }
    (probe.failures == 0).then_some(("probe.failures", ConfigProblem::AtLeastOne))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_probes_and_checks_that_cannot_reach_one_worker() {
        let probe = ProbeConfig::new(Check::Tcp);
        assert_eq!(probe_problem(&probe, Duration::MAX), None);
        let zero = probe.clone().every(Duration::ZERO);
        assert_eq!(probe_problem(&zero, Duration::MAX), Some(("probe.every", ConfigProblem::Zero)));
        assert_eq!(probe_problem(&probe.clone().failures(0), Duration::MAX).map(|p| p.0), Some("probe.failures"));
        assert_eq!(probe_problem(&probe, Duration::from_millis(10)).map(|p| p.0), Some("probe.every"));
        assert!(check_problem(&Check::Tcp, Scheduling::Shared).is_some());
        assert!(check_problem(&Check::Tcp, Scheduling::RoundRobin).is_none());
        assert!(check_problem(&Check::Exec { command: "true".into() }, Scheduling::Shared).is_none());
    }
}
