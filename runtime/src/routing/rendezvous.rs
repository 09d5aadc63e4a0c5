//! Rendezvous (highest random weight) hashing: which worker slot owns a key.
//!
//! Every slot gets a score for the key, `hash(key, slot)`; the owner is the candidate with the
//! highest score. A slot that leaves the candidates (dead, draining, not ready) moves only the
//! keys it owned, each to its next-best slot; a slot that comes back takes exactly those keys
//! back; keys of the other slots never move. Sticky connections and keyed messages share it.
//!
//! The hash is FNV-1a (fixed, the same in every build) followed by a 64-bit finaliser, so that
//! an upgraded primary, built by another compiler, still routes every key to the same slot.

use std::hash::{Hash, Hasher};

/// A key's fingerprint, the part of its score that does not depend on the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    /// The fingerprint of any hashable key.
    pub(crate) fn of<K: Hash + ?Sized>(key: &K) -> Self {
        let mut h = fnv::FnvHasher::default();
        key.hash(&mut h);
        KeyHash(h.finish())
    }

    /// The key's score on `slot`.
    pub(crate) fn score(self, slot: usize) -> u64 {
        // splitmix64's finaliser over the key and the slot: every bit of either moves about
        // half of the output bits, so the maxima spread evenly over the slots.
        let mut z = self.0 ^ (slot as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The candidate that owns the key: highest score, ties (the same slot twice, e.g. a
    /// process and its replacement) to the first one.
    pub(crate) fn owner<T>(self, candidates: impl IntoIterator<Item = T>, slot_of: impl Fn(&T) -> usize) -> Option<T> {
        let mut best: Option<(u64, T)> = None;
        for candidate in candidates {
            let score = self.score(slot_of(&candidate));
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, candidate));
            }
        }
        best.map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyHash;

    fn owner(key: u64, slots: &[usize]) -> usize {
        KeyHash::of(&key).owner(slots.iter().copied(), |s| *s).unwrap()
    }

    #[test]
    fn the_same_key_always_has_the_same_owner() {
        for key in 0..1000u64 {
            assert_eq!(owner(key, &[0, 1, 2, 3]), owner(key, &[3, 2, 1, 0]));
        }
    }

    #[test]
    fn keys_spread_over_every_slot() {
        let mut counts = [0usize; 4];
        for key in 0..4000u64 {
            counts[owner(key, &[0, 1, 2, 3])] += 1;
        }
        for (slot, n) in counts.iter().enumerate() {
            assert!((700..1300).contains(n), "slot {slot} owns {n} of 4000 keys: {counts:?}");
        }
    }

    #[test]
    fn only_the_missing_slots_keys_move() {
        for key in 0..2000u64 {
            let before = owner(key, &[0, 1, 2, 3]);
            let after = owner(key, &[0, 1, 3]);
            if before != 2 {
                assert_eq!(before, after, "key {key} moved from a slot that stayed");
            }
            // And it comes back when the slot does.
            assert_eq!(owner(key, &[0, 1, 2, 3]), before);
        }
    }

    #[test]
    fn a_new_slot_takes_keys_only_for_itself() {
        for key in 0..2000u64 {
            let before = owner(key, &[0, 1, 2]);
            let after = owner(key, &[0, 1, 2, 3]);
            assert!(after == before || after == 3, "key {key} moved {before} → {after}");
        }
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // FNV-1a of the key's `Hash` bytes, finalised: a changed value would reroute every key
        // after an upgrade to a primary built by another compiler.
        assert_eq!(KeyHash::of(&0x0102_0304_u32).score(1), 18_146_923_848_777_313_824);
    }
}
