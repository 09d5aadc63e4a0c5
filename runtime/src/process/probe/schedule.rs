//! When probes are made: until a starting worker is ready, then every `every` for as long as
//! it lives. Each result goes to `report`, which answers whether anyone still listens (the
//! slot is gone otherwise, and so is the reason to probe).

use std::time::Duration;

use super::{ProbeResult, ProbeTarget, probe_once};
use crate::config::probe::{Check, ProbeConfig};

/// The first interval between readiness probes.
const READY_FIRST: Duration = Duration::from_millis(100);

/// The longest interval between readiness probes (the interval grows by half each time).
const READY_MAX: Duration = Duration::from_secs(1);

/// What a probe decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Whether a started worker is ready.
    Ready,
    /// Whether a ready worker still serves.
    Live,
}

/// Probes `target` with `check` every 100 ms, backing off to 1 s, until one passes (or
/// `report` says nobody listens). The slot's `listen_timeout` bounds the whole.
pub(crate) async fn readiness(
    target: ProbeTarget,
    check: Check,
    timeout: Duration,
    report: impl Fn(ProbeResult) -> bool,
) {
    let mut interval = READY_FIRST;
    loop {
        let started = tokio::time::Instant::now();
        let result = probe_once(&target, &check, timeout).await;
        let passed = result.outcome.is_ok();
        if !report(result) || passed {
            return;
        }
        tokio::time::sleep_until(started + interval).await;
        interval = (interval * 3 / 2).min(READY_MAX);
    }
}

/// Probes `target` as `probe` says: `grace` after it became ready, then every `every` (from
/// the start of one probe to the start of the next), until `report` says nobody listens.
pub(crate) async fn liveness(target: ProbeTarget, probe: ProbeConfig, report: impl Fn(ProbeResult) -> bool) {
    tokio::time::sleep(probe.grace).await;
    loop {
        let started = tokio::time::Instant::now();
        let result = probe_once(&target, &probe.check, probe.timeout).await;
        if !report(result) {
            return;
        }
        tokio::time::sleep_until(started + probe.every).await;
    }
}
