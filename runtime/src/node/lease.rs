//! The node set's reload lease: at most one `reload --all` runs in the whole set, whoever
//! starts what when. Each host agent keeps one lease record; a `reload --all` takes the lease
//! of every node it can reach, in node-name order (so that two takers never deadlock: both
//! ask the same first node, which grants one of them), and only with a majority of the nodes
//! the set knows (so that the minority side of a partition refuses). The holder renews it while
//! it reloads; it lapses [`TTL`] after the last renewal, or at once when its holder is reported
//! down, so a dead holder never blocks the set.

use std::time::{Duration, Instant};

/// How long a granted lease lasts without renewal.
pub(crate) const TTL: Duration = Duration::from_secs(10);
/// How often the holder renews it.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Who holds a node's lease, until when.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub holder: String,
    pub token: u64,
    pub until: Instant,
}

/// One node's lease record.
/// The lease is held by another node (named) until it lapses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reload lease is held by {0}")]
pub(crate) struct HeldBy(pub String);

#[derive(Debug, Default)]
pub(crate) struct LeaseRecord {
    held: Option<Lease>,
}

impl LeaseRecord {
    /// Grants (or renews) the lease to `holder`'s `token` for `ttl`; [`HeldBy`] naming who
    /// holds it when another does.
    pub(crate) fn grant(&mut self, holder: &str, token: u64, ttl: Duration, now: Instant) -> Result<(), HeldBy> {
        if let Some(lease) = &self.held
            && lease.until > now
            && (lease.holder != holder || lease.token != token)
        {
            return Err(HeldBy(lease.holder.clone()));
        }
        self.held = Some(Lease { holder: holder.to_string(), token, until: now + ttl });
        Ok(())
    }

    /// Gives the lease back, if `holder`'s `token` holds it.
    pub(crate) fn release(&mut self, holder: &str, token: u64) {
        if self.held.as_ref().is_some_and(|l| l.holder == holder && l.token == token) {
            self.held = None;
        }
    }

    /// `node` is down: a lease it held lapses now.
    pub(crate) fn holder_down(&mut self, node: &str) -> bool {
        if self.held.as_ref().is_some_and(|l| l.holder == node) {
            self.held = None;
            return true;
        }
        false
    }
}

/// Whether `reached` of `known` nodes is a majority.
pub(crate) fn majority(reached: usize, known: usize) -> bool {
    reached * 2 > known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_renewable_and_lapsing() {
        let now = Instant::now();
        let mut lease = LeaseRecord::default();
        assert_eq!(lease.grant("web-1", 7, TTL, now), Ok(()));
        assert_eq!(lease.grant("web-2", 9, TTL, now), Err(HeldBy("web-1".to_string())));
        // The same holder and token renews it.
        assert_eq!(lease.grant("web-1", 7, TTL, now + Duration::from_secs(5)), Ok(()));
        // Another reload of the same node (another token) waits too.
        assert_eq!(lease.grant("web-1", 8, TTL, now + Duration::from_secs(5)), Err(HeldBy("web-1".to_string())));
        // Lapsed: anyone may take it.
        assert_eq!(lease.grant("web-2", 9, TTL, now + Duration::from_secs(16)), Ok(()));
        lease.release("web-1", 7);
        assert_eq!(lease.grant("web-1", 7, TTL, now + Duration::from_secs(17)), Err(HeldBy("web-2".to_string())));
        lease.release("web-2", 9);
        assert_eq!(lease.grant("web-1", 7, TTL, now + Duration::from_secs(17)), Ok(()));
    }

    #[test]
    fn a_holder_reported_down_loses_it_at_once() {
        let now = Instant::now();
        let mut lease = LeaseRecord::default();
        lease.grant("web-0", 1, TTL, now).unwrap();
        assert!(!lease.holder_down("web-1"));
        assert!(lease.holder_down("web-0"));
        assert_eq!(lease.grant("web-1", 2, TTL, now), Ok(()));
    }

    #[test]
    fn majority_of_the_known_nodes() {
        assert!(!majority(1, 3));
        assert!(majority(2, 3));
        assert!(majority(1, 1));
        assert!(!majority(2, 4));
    }
}
