//! Connections pinned to one worker's socket: corral's own connections (probes) that must
//! reach one chosen worker through the port its clients use. Each is pinned by its source
//! address and port for as long as its handshake takes, then unpinned.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::group::{Group, Member};
use super::program::Pins;

/// The most connections pinned at once on one group (each costs two instructions of the
/// group's program).
pub(crate) const MAX_PINNED: usize = 256;

/// The pinned connections of every group, by the group's address.
#[derive(Debug, Default)]
pub(crate) struct PinTable {
    groups: BTreeMap<String, GroupPins>,
}

#[derive(Debug)]
struct GroupPins {
    source: IpAddr,
    ports: BTreeMap<u16, Member>,
}

/// A probe connection could not be pinned to its worker: too many are pinned on the listener
/// already (256), or pinned from another source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections pinned on this listener at once (at most {MAX_PINNED}, from one source address)")]
pub struct PinsFull;

impl PinTable {
    /// Pins connections from `source`:`port` on the group at `addr` to `member`'s socket.
    ///
    /// # Errors
    ///
    /// [`PinsFull`]: too many pinned at once, or pinned from another source address.
    pub(crate) fn pin(&mut self, addr: &str, source: IpAddr, port: u16, member: Member) -> Result<(), PinsFull> {
        let pins = self.groups.entry(addr.to_string()).or_insert_with(|| GroupPins { source, ports: BTreeMap::new() });
        if pins.ports.is_empty() {
            pins.source = source;
        }
        if pins.source != source || pins.ports.len() >= MAX_PINNED {
            return Err(PinsFull);
        }
        pins.ports.insert(port, member);
        Ok(())
    }

    /// Ends the pin of `port` on the group at `addr`.
    pub(crate) fn unpin(&mut self, addr: &str, port: u16) {
        if let Some(pins) = self.groups.get_mut(addr) {
            pins.ports.remove(&port);
            if pins.ports.is_empty() {
                self.groups.remove(addr);
            }
        }
    }

    /// The program's pins for the group at `addr`, as it is now (a member whose socket has
    /// left is not pinned: its connection falls through to the key).
    pub(crate) fn for_group(&self, addr: &str, group: &Group) -> Pins {
        let Some(pins) = self.groups.get(addr) else { return Pins::default() };
        let ports = pins.ports.iter().filter_map(|(&port, &member)| Some((port, group.index_of(member)?))).collect();
        Pins { source: Some(pins.source), ports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_pins_from_one_source_and_at_most_max_pinned() {
        let mut table = PinTable::default();
        let member = Member { slot: 0, generation: 1 };
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        table.pin("g", a, 1000, member).unwrap();
        assert_eq!(table.pin("g", b, 1001, member), Err(PinsFull));
        for port in 1..MAX_PINNED as u16 {
            table.pin("g", a, 2000 + port, member).unwrap();
        }
        assert_eq!(table.pin("g", a, 5000, member), Err(PinsFull));
        table.unpin("g", 1000);
        table.pin("g", a, 5000, member).unwrap();
    }
}
