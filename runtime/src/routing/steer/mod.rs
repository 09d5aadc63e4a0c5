//! Steering reuse-port groups: corral chooses, for each new connection, the socket (and so
//! the worker) that gets it, with a classic BPF program attached to the group ([`program`],
//! [`attach`]), and changes the program whenever the set of sockets that should get *new*
//! connections changes.
//!
//! A slot's sockets are **steered in** while a worker of the slot takes connections (ready,
//! not draining) and its accept queue has not stayed non-empty for [`STALL_AFTER`] (a
//! stopped or wedged worker: steered out until its queue empties — it resumed, or its
//! replacement took the queue over); a slot being removed is steered out for good. When no
//! slot is chosen (every worker restarting), new connections queue on the sockets of the
//! slots that exist, for their replacements. Where attaching fails (an old kernel, a seccomp
//! filter), that is logged once and the kernel's own spreading goes on; [`STEER_ENV`]`=off`
//! turns steering off.

pub(crate) mod attach;
pub(crate) mod group;
pub(crate) mod pins;
pub(crate) mod program;
pub(crate) mod queue;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use group::{Group, Member};
use pins::{PinTable, PinsFull};
use program::{Chosen, Key};

/// How often the accept queues are read.
pub(crate) const MONITOR_EVERY: Duration = Duration::from_millis(50);

/// A queue that stays non-empty this long belongs to a worker that stopped taking its
/// connections: a serving worker empties its queue within milliseconds of each arrival.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(500);

/// One slot's steering, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotSteering {
    /// The worker slot.
    pub slot: usize,
    /// Whether new connections go to its sockets.
    pub steered_in: bool,
    /// Connections waiting in its sockets' accept queues.
    pub queued: u32,
}

/// Set to `off` (or `0`), the reuse-port groups are not steered: the kernel spreads new
/// connections on its own, as before steering existed (a comparison, and an escape hatch).
pub(crate) const STEER_ENV: &str = "CORRAL_STEER";

/// Which slots get new connections.
#[derive(Debug)]
pub(crate) struct Steering {
    accepting: BTreeSet<usize>,
    /// Slots whose queue stays non-empty, since when.
    backlogged: BTreeMap<usize, Instant>,
    stalled: BTreeSet<usize>,
    removed: BTreeSet<usize>,
    /// Attaching failed: the kernel spreads on its own (told once).
    off: bool,
    /// The key in force (sticky scheduling: the client address).
    client_key: Option<u8>,
    /// corral's own connections pinned to one worker's socket.
    pins: PinTable,
}

impl Default for Steering {
    fn default() -> Self {
        let off = std::env::var(STEER_ENV).is_ok_and(|v| v == "off" || v == "0");
        if off {
            tracing::info!("{STEER_ENV}=off: reuse-port groups are not steered; the kernel spreads connections alone");
        }
        Steering {
            accepting: BTreeSet::new(),
            backlogged: BTreeMap::new(),
            stalled: BTreeSet::new(),
            removed: BTreeSet::new(),
            off,
            client_key: None,
            pins: PinTable::default(),
        }
    }
}

impl Steering {
    /// Steers by the client's address, with `Some(port bits)`; by the flow hash with `None`.
    pub(crate) fn set_client_key(&mut self, port_bits: Option<u8>) {
        self.client_key = port_bits;
    }

    /// Whether new connections are steered by the client's address.
    pub(crate) fn by_client(&self) -> bool {
        self.client_key.is_some()
    }

    /// Records whether a worker of `slot` takes connections; `true` when that changed.
    pub(crate) fn set_accepting(&mut self, slot: usize, accepting: bool) -> bool {
        if accepting { self.accepting.insert(slot) } else { self.accepting.remove(&slot) }
    }

    /// Records that `slot` is being removed (or no longer exists); `true` when that changed.
    pub(crate) fn set_removed(&mut self, slot: usize, removed: bool) -> bool {
        if removed {
            self.removed.insert(slot)
        } else {
            self.stalled.remove(&slot);
            self.backlogged.remove(&slot);
            self.accepting.remove(&slot);
            self.removed.remove(&slot)
        }
    }

    /// Whether the groups are steered (not turned off, attaching has not failed).
    pub(crate) fn is_on(&self) -> bool {
        !self.off
    }

    /// Pins connections from `source`:`port` on the group at `addr` to `member`'s socket
    /// (in force once the groups are steered again).
    ///
    /// # Errors
    ///
    /// [`PinsFull`]: too many pinned at once on that group.
    pub(crate) fn pin(
        &mut self,
        addr: &str,
        source: std::net::IpAddr,
        port: u16,
        member: Member,
    ) -> Result<(), PinsFull> {
        self.pins.pin(addr, source, port, member)
    }

    /// Ends a pin (in force once the groups are steered again).
    pub(crate) fn unpin(&mut self, addr: &str, port: u16) {
        self.pins.unpin(addr, port);
    }

    /// The sockets of `group` that get new connections.
    fn chosen(&self, group: &Group) -> Vec<Chosen> {
        let live = |slot: &usize| !self.removed.contains(slot);
        let pick = |slot: &usize| live(slot) && self.accepting.contains(slot) && !self.stalled.contains(slot);
        let chosen = |keep: &dyn Fn(&usize) -> bool| -> Vec<Chosen> {
            group
                .slots()
                .filter(|slot| keep(slot))
                .filter_map(|slot| Some(Chosen { slot, index: group.index(slot)? }))
                .collect()
        };
        let picked = chosen(&pick);
        if picked.is_empty() { chosen(&live) } else { picked }
    }

    /// Attaches `group`'s program for the slots chosen now (`v6`: its address family).
    pub(crate) fn attach(&mut self, group: &Group, v6: bool, addr: &str) {
        if self.off {
            return;
        }
        let Some(socket) = group.any() else { return };
        let key = match self.client_key {
            Some(port_bits) => Key::Client { v6, port_bits },
            None => Key::Flow,
        };
        let chosen = self.chosen(group);
        let program = program::build(key, &chosen, &self.pins.for_group(addr, group));
        match attach::attach(socket.as_fd(), &program) {
            Ok(()) => tracing::debug!(addr, chosen = ?chosen.iter().map(|c| c.slot).collect::<Vec<_>>(), "steering"),
            Err(e) => {
                self.off = true;
                tracing::warn!(
                    addr,
                    error = %e,
                    "cannot steer the reuse-port group (SO_ATTACH_REUSEPORT_CBPF): the kernel spreads connections \
                     on its own, also to workers that are not ready, draining or stalled"
                );
            }
        }
    }

    /// Takes each slot's queued connections at `now`; `true` when a slot became stalled or
    /// recovered.
    pub(crate) fn sample(&mut self, queued: &BTreeMap<usize, u32>, now: Instant) -> bool {
        let mut changed = false;
        for (&slot, &n) in queued {
            if n == 0 {
                self.backlogged.remove(&slot);
                if self.stalled.remove(&slot) {
                    tracing::info!(slot, "worker took its queued connections again; steered back in");
                    changed = true;
                }
                continue;
            }
            let since = *self.backlogged.entry(slot).or_insert(now);
            if now.duration_since(since) >= STALL_AFTER
                && self.accepting.contains(&slot)
                && !self.removed.contains(&slot)
                && self.stalled.insert(slot)
            {
                tracing::warn!(slot, queued = n, after = ?STALL_AFTER, "worker stopped taking its connections; steered out");
                changed = true;
            }
        }
        changed
    }

    /// Each slot's steering, with its queued connections.
    pub(crate) fn report_counts(&self, queued: &BTreeMap<usize, u32>) -> Vec<SlotSteering> {
        queued
            .iter()
            .map(|(&slot, &queued)| SlotSteering {
                slot,
                steered_in: !self.off
                    && self.accepting.contains(&slot)
                    && !self.stalled.contains(&slot)
                    && !self.removed.contains(&slot),
                queued,
            })
            .collect()
    }
}

/// The connections queued on each slot's **current** socket, over every group (a worker that
/// leaves them waiting is stalled).
pub(crate) fn queued_by_slot<'a>(groups: impl Iterator<Item = &'a Group>) -> BTreeMap<usize, u32> {
    let mut queued = BTreeMap::new();
    for group in groups {
        for slot in group.slots() {
            let n = group.current(slot).map_or(0, |(_, socket)| queue::accept_queue(socket.as_fd()).unwrap_or(0));
            *queued.entry(slot).or_insert(0) += n;
        }
    }
    queued
}

/// The connections queued on `member`'s sockets, over every group.
pub(crate) fn queued_on<'a>(groups: impl Iterator<Item = &'a Group>, member: group::Member) -> u32 {
    groups.filter_map(|g| g.socket(member)).map(|s| queue::accept_queue(s.as_fd()).unwrap_or(0)).sum()
}

/// The connections queued on every socket of every group.
pub(crate) fn queued_in_all<'a>(groups: impl Iterator<Item = &'a Group>) -> u32 {
    groups.flat_map(Group::iter).map(|(_, socket)| queue::accept_queue(socket.as_fd()).unwrap_or(0)).sum()
}

/// The connections queued on any socket of `slot`, over every group.
pub(crate) fn queued_in_slot<'a>(groups: impl Iterator<Item = &'a Group>, slot: usize) -> u32 {
    let mut n = 0;
    for group in groups {
        for (member, socket) in group.iter() {
            if member.slot == slot {
                n += queue::accept_queue(socket.as_fd()).unwrap_or(0);
            }
        }
    }
    n
}
