//! The sticky key in force: read by the acceptors for every connection, changed by a rolling
//! reload that re-reads the configuration ([`LiveKey`]).

use std::sync::atomic::{AtomicU16, Ordering};

use crate::config::sticky_key::StickyKey;

/// A cluster's [`StickyKey`], shared by its acceptors and changeable while they run: a
/// connection accepted after [`set`](Self::set) is placed by the new key (those already
/// handed out stay where they are).
#[derive(Debug)]
pub(crate) struct LiveKey(AtomicU16);

/// `IpPortPrefix { bits }` is stored as this bit plus `bits`; `Ip` as 0.
const PORT_PREFIX: u16 = 0x100;

fn encode(key: StickyKey) -> u16 {
    match key {
        StickyKey::Ip => 0,
        StickyKey::IpPortPrefix { bits } => PORT_PREFIX | u16::from(bits),
    }
}

fn decode(raw: u16) -> StickyKey {
    if raw & PORT_PREFIX == 0 {
        StickyKey::Ip
    } else {
        // The low byte is the `bits` stored by `encode`.
        StickyKey::IpPortPrefix { bits: (raw & 0xff) as u8 }
    }
}

impl LiveKey {
    pub(crate) fn new(key: StickyKey) -> Self {
        LiveKey(AtomicU16::new(encode(key)))
    }

    /// The key for the next connection.
    pub(crate) fn get(&self) -> StickyKey {
        decode(self.0.load(Ordering::Relaxed))
    }

    /// Places later connections by `key`.
    pub(crate) fn set(&self, key: StickyKey) {
        self.0.store(encode(key), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::LiveKey;
    use crate::config::sticky_key::StickyKey;

    #[test]
    fn every_key_reads_back_as_set() {
        let live = LiveKey::new(StickyKey::Ip);
        assert_eq!(live.get(), StickyKey::Ip);
        for bits in 0..=u8::MAX {
            live.set(StickyKey::IpPortPrefix { bits });
            assert_eq!(live.get(), StickyKey::IpPortPrefix { bits });
        }
        live.set(StickyKey::Ip);
        assert_eq!(live.get(), StickyKey::Ip);
    }
}
