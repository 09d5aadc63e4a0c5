//! How connections reach workers: chosen once per cluster from its [`Scheduling`] (a sticky
//! cluster's key may change in a reload: [`LiveKey`](super::live_key::LiveKey)).

use std::net::SocketAddr;

use corral_protocol::{BindMode, Scheduling};

use super::target::Target;
use crate::config::sticky_key::StickyKey;
use crate::routing::rendezvous::KeyHash;

/// How the primary picks the worker for a connection it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// The next ready worker in turn; a worker dispatched nothing yet (a spare promoted into a
    /// dead worker's place, a replacement, one scaled up) takes the next connection out of
    /// turn, once.
    RoundRobin,
    /// The ready worker with the lowest load estimate (ties in turn).
    LeastConnections,
    /// For a connection handed out again because its worker died without taking it: the
    /// ready worker with the lowest load estimate, ties to the one dispatched the fewest
    /// connections (a spare promoted in the dead worker's place, a fresh replacement). Never
    /// a cluster's own strategy.
    Redispatch,
    /// The ready worker whose slot owns the client's key (rendezvous hashing); the key in
    /// force is the cluster's [`LiveKey`](super::live_key::LiveKey), which a reload may change.
    Sticky,
}

impl Strategy {
    /// The worker for the next connection, from `peer`, among the `ready` ones (`turn` grows
    /// by one per connection; `key` is the sticky key in force); `None` when none is ready.
    pub(crate) fn pick<'a>(
        self,
        ready: &[&'a Target],
        turn: usize,
        peer: SocketAddr,
        key: StickyKey,
    ) -> Option<&'a Target> {
        if ready.is_empty() {
            return None;
        }
        match self {
            // The idle newcomer serves at once instead of up to a whole round later: after a
            // crash, the promoted spare answers the very next connection.
            Strategy::RoundRobin => {
                ready.iter().copied().find(|t| t.load.dispatched() == 0).or(Some(ready[turn % ready.len()]))
            }
            Strategy::LeastConnections => {
                // Ties broken in turn, so equal loads still spread.
                (0..ready.len()).map(|i| ready[(turn + i) % ready.len()]).min_by_key(|t| t.load.estimate())
            }
            Strategy::Redispatch => ready.iter().copied().min_by_key(|t| (t.load.estimate(), t.load.dispatched())),
            // Over slots, not processes: a restarted slot takes its own clients back, and a
            // slot with two ready processes (a replacement) scores once.
            Strategy::Sticky => KeyHash::of(&key.of(peer)).owner(ready.iter().copied(), |t| t.slot),
        }
    }
}

/// Who accepts the connections of a cluster's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distribution {
    /// The primary accepts and passes each connection to a worker it picks.
    Accept(Strategy),
    /// The listening socket itself is passed; the workers accept on it.
    PassListener,
    /// Each worker binds its own `SO_REUSEPORT` socket; the kernel spreads connections.
    ReusePort,
}

impl Distribution {
    /// The one place that reads the configured [`Scheduling`].
    pub(crate) fn of(scheduling: Scheduling) -> Self {
        match scheduling {
            Scheduling::Sticky => Distribution::Accept(Strategy::Sticky),
            Scheduling::RoundRobin => Distribution::Accept(Strategy::RoundRobin),
            Scheduling::LeastConnections => Distribution::Accept(Strategy::LeastConnections),
            Scheduling::Shared => Distribution::PassListener,
            Scheduling::ReusePort => Distribution::ReusePort,
        }
    }

    /// How the primary's own socket for an address is bound.
    pub(crate) fn bind_mode(self) -> BindMode {
        match self {
            Distribution::Accept(_) | Distribution::PassListener => BindMode::Listen,
            // Held, never listening: the kernel must not queue connections on it.
            Distribution::ReusePort => BindMode::ReusePortHold,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use corral_protocol::{HandleChannel, seqpacket_pair};

    use super::super::target::{Load, Target};
    use super::super::untaken::Untaken;
    use super::Strategy;
    use crate::config::sticky_key::StickyKey;

    fn target(slot: usize, dispatched: u64) -> Target {
        let pair = seqpacket_pair().expect("socketpair");
        let load = Arc::new(Load::default());
        for _ in 0..dispatched {
            load.dispatched_one();
        }
        // Every dispatched connection reported taken and closed: no load left.
        load.report(0, dispatched);
        Target {
            slot,
            generation: 1,
            listen_id: 1,
            channel: Arc::new(HandleChannel::new(pair.primary).expect("channel")),
            accepting: Arc::new(AtomicBool::new(true)),
            load,
            untaken: Arc::new(Untaken::default()),
        }
    }

    #[tokio::test]
    async fn a_connection_handed_out_again_goes_to_the_freshest_of_the_least_busy() {
        let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let (busy, spare) = (target(0, 500), target(2, 0));
        let ready = [&busy, &spare];
        for turn in 0..4 {
            let picked = Strategy::Redispatch.pick(&ready, turn, peer, StickyKey::default()).expect("picked");
            assert_eq!(picked.slot, 2, "turn {turn}: the promoted spare, dispatched nothing yet");
        }
        // Round robin alternates between them whatever their history.
        spare.load.dispatched_one();
        let slots: Vec<usize> = (0..4)
            .map(|turn| Strategy::RoundRobin.pick(&ready, turn, peer, StickyKey::default()).expect("picked").slot)
            .collect();
        assert_eq!(slots, [0, 2, 0, 2]);
    }

    #[tokio::test]
    async fn round_robin_gives_a_worker_dispatched_nothing_yet_the_next_connection_then_takes_turns() {
        let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let (old, promoted) = (target(1, 500), target(2, 0));
        let ready = [&old, &promoted];
        // Turn 0 would be slot 1's: the newcomer takes it.
        let first = Strategy::RoundRobin.pick(&ready, 0, peer, StickyKey::default()).expect("picked");
        assert_eq!(first.slot, 2);
        first.load.dispatched_one();
        let slots: Vec<usize> = (1..5)
            .map(|turn| Strategy::RoundRobin.pick(&ready, turn, peer, StickyKey::default()).expect("picked").slot)
            .collect();
        assert_eq!(slots, [2, 1, 2, 1], "then in turn");
    }
}
