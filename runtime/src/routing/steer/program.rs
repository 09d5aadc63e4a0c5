//! The classic BPF program a reuse-port group runs for each new connection: it computes a key
//! from the connection's first packet and returns the index, in the group's socket array, of
//! the socket that gets it.
//!
//! - [`Key::Flow`]: the kernel's flow hash (`SKF_AD_RXHASH`, the same hash the group would use
//!   without a program), taken modulo the number of chosen sockets: as even as the kernel's
//!   own spreading, over the chosen sockets only.
//! - [`Key::Client`]: the client's address (and, with `port_bits`, the top bits of its source
//!   port), hashed into one of [`BUCKETS`] buckets; each bucket belongs to a slot by rendezvous
//!   hashing, so a slot that leaves or comes back moves only its own buckets.
//!
//! With no socket chosen the program returns an index past the end, and the kernel falls back
//! to its own hash over the whole group.
//!
//! Before either key, a [`Pins`] prefix sends a connection from one pinned source (address
//! and port) to one given socket, whatever the key or the chosen set say: corral's own
//! connections to one chosen worker (its probes) go through the port its clients use.

use socket2::SockFilter;

use crate::routing::rendezvous::KeyHash;

/// Buckets of a client-address key.
pub(crate) const BUCKETS: u32 = 1024;

/// The most instructions a classic BPF program may have (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

// The classic BPF opcodes used (linux/filter.h, linux/bpf_common.h); each fits 16 bits.
const fn op(code: u32) -> u16 {
    code as u16
}
const LD_W_ABS: u16 = op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
const LD_H_ABS: u16 = op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS);
const ALU_MOD_K: u16 = op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K);
const ALU_MUL_K: u16 = op(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K);
const ALU_RSH_K: u16 = op(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K);
const ALU_LSH_K: u16 = op(libc::BPF_ALU | libc::BPF_LSH | libc::BPF_K);
const ALU_XOR_X: u16 = op(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X);
const JMP_JA: u16 = op(libc::BPF_JMP | libc::BPF_JA);
const JMP_JEQ_K: u16 = op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K);
const JMP_JGE_K: u16 = op(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K);
const RET_K: u16 = op(libc::BPF_RET | libc::BPF_K);
const MISC_TAX: u16 = op(libc::BPF_MISC | libc::BPF_TAX);

/// `SKF_AD_OFF + SKF_AD_RXHASH`: the skb's flow hash.
const RXHASH: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_RXHASH) as u32;
/// `SKF_NET_OFF`: offsets from the network header.
const NET: i32 = libc::SKF_NET_OFF;

/// What a connection's socket is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// The kernel's flow hash: even spreading.
    Flow,
    /// The client's address, for one address family; `port_bits` top bits of the source port
    /// too (0: the address alone).
    Client { v6: bool, port_bits: u8 },
}

/// A steering program, ready to attach.
pub(crate) struct Program {
    pub insns: Vec<SockFilter>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.insns.len())
    }
}

/// One chosen socket: the slot it serves and its index in the group's socket array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub slot: usize,
    pub index: u32,
}

/// Connections from one source address, each pinned by its source port to one socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Pins {
    /// The source address every pinned connection comes from.
    pub source: Option<std::net::IpAddr>,
    /// Source port → socket index.
    pub ports: Vec<(u16, u32)>,
}

/// The program that steers new connections onto `chosen` only, by `key` (pinned sources
/// first).
pub(crate) fn build(key: Key, chosen: &[Chosen], pins: &Pins) -> Program {
    let mut insns = Vec::new();
    pin_prefix(pins, &mut insns);
    if chosen.is_empty() {
        // Out of range: the kernel's own selection over the whole group.
        insns.push(stmt(RET_K, u32::MAX));
        return Program { insns };
    }
    match key {
        Key::Flow => {
            insns.push(stmt(LD_W_ABS, RXHASH));
            insns.push(stmt(ALU_MOD_K, chosen.len() as u32));
            let runs: Vec<(u32, u32)> = chosen.iter().enumerate().map(|(i, c)| (i as u32, c.index)).collect();
            tree(&runs, &mut insns);
        }
        Key::Client { v6, port_bits } => {
            client_key(v6, port_bits, &mut insns);
            tree(&bucket_runs(chosen), &mut insns);
        }
    }
    debug_assert!(insns.len() <= MAX_INSNS, "{} instructions", insns.len());
    Program { insns }
}

/// Returns the pinned socket's index for a connection from a pinned source; falls through
/// (to the key's program) for every other one.
fn pin_prefix(pins: &Pins, insns: &mut Vec<SockFilter>) {
    let Some(source) = pins.source else { return };
    if pins.ports.is_empty() {
        return;
    }
    // Each word of the source address must match, else skip the whole prefix. The skips are
    // `ja` (32-bit offsets) patched once the prefix's length is known.
    let (words, first, port_at): (Vec<u32>, i32, i32) = match source {
        std::net::IpAddr::V4(a) => (vec![u32::from_be_bytes(a.octets())], 12, 20),
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            (o.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect(), 8, 40)
        }
    };
    let mut skips = Vec::new();
    for (i, word) in words.iter().enumerate() {
        insns.push(stmt(LD_W_ABS, (NET + first + 4 * i as i32) as u32));
        insns.push(jump(JMP_JEQ_K, *word, 1, 0));
        skips.push(insns.len());
        insns.push(stmt(JMP_JA, 0));
    }
    // The source port (an IPv4 SYN carries no options in practice: see `client_key`).
    insns.push(stmt(LD_H_ABS, (NET + port_at) as u32));
    for &(port, index) in &pins.ports {
        insns.push(jump(JMP_JEQ_K, u32::from(port), 0, 1));
        insns.push(stmt(RET_K, index));
    }
    let end = insns.len();
    for at in skips {
        insns[at] = stmt(JMP_JA, (end - at - 1) as u32);
    }
}

/// The owner of each bucket by rendezvous over the chosen slots, as runs of equal owners:
/// (first bucket, socket index).
fn bucket_runs(chosen: &[Chosen]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for bucket in 0..BUCKETS {
        let owner = KeyHash::of(&bucket).owner(chosen.iter(), |c| c.slot).map_or(u32::MAX, |c| c.index);
        if runs.last().is_none_or(|(_, index)| *index != owner) {
            runs.push((bucket, owner));
        }
    }
    runs
}

/// A = the bucket (0..BUCKETS) of the client's address (and port bits).
fn client_key(v6: bool, port_bits: u8, insns: &mut Vec<SockFilter>) {
    let word = |offset: i32| stmt(LD_W_ABS, (NET + offset) as u32);
    if v6 {
        // The source address: 16 bytes at offset 8, folded into one word.
        insns.push(word(8));
        for offset in [12, 16, 20] {
            insns.push(stmt(MISC_TAX, 0));
            insns.push(word(offset));
            insns.push(stmt(ALU_XOR_X, 0));
        }
    } else {
        insns.push(word(12));
    }
    if port_bits > 0 {
        // The top bits of the source port (the TCP header follows a fixed 40-byte IPv6 header;
        // an IPv4 header without options is 20 bytes: SYNs carry none in practice).
        let port = if v6 { 40 } else { 20 };
        insns.push(stmt(MISC_TAX, 0));
        insns.push(stmt(LD_H_ABS, (NET + port) as u32));
        insns.push(stmt(ALU_RSH_K, 16 - u32::from(port_bits.min(16))));
        insns.push(stmt(ALU_LSH_K, 16));
        insns.push(stmt(ALU_XOR_X, 0));
    }
    // Fibonacci hashing: the top 10 bits of A × 2^32/φ.
    insns.push(stmt(ALU_MUL_K, 0x9E37_79B9));
    insns.push(stmt(ALU_RSH_K, 32 - BUCKETS.trailing_zeros()));
}

/// A binary search on A over `runs` (sorted by their first value), each leaf returning its
/// socket index. A node is `jge #k` followed by `ja` to the right half (32-bit offset: a half
/// may be longer than a conditional jump's 255).
fn tree(runs: &[(u32, u32)], insns: &mut Vec<SockFilter>) {
    match runs {
        [] => insns.push(stmt(RET_K, u32::MAX)),
        [(_, index)] => insns.push(stmt(RET_K, *index)),
        _ => {
            let mid = runs.len() / 2;
            insns.push(jump(JMP_JGE_K, runs[mid].0, 0, 1));
            let ja = insns.len();
            insns.push(stmt(JMP_JA, 0));
            tree(&runs[..mid], insns);
            let left = insns.len() - ja - 1;
            insns[ja] = stmt(JMP_JA, left as u32);
            tree(&runs[mid..], insns);
        }
    }
}

const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter::new(code, 0, 0, k)
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter::new(code, jt, jf, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(slots: &[(usize, u32)]) -> Vec<Chosen> {
        slots.iter().map(|&(slot, index)| Chosen { slot, index }).collect()
    }

    #[test]
    fn programs_fit_the_kernels_limit() {
        let many: Vec<Chosen> = (0..256).map(|i| Chosen { slot: i, index: i as u32 }).collect();
        for key in [Key::Flow, Key::Client { v6: true, port_bits: 4 }] {
            let pins = Pins {
                source: Some("::1".parse().unwrap()),
                ports: (0..crate::routing::steer::pins::MAX_PINNED as u16).map(|p| (p, 1)).collect(),
            };
            assert!(build(key, &many, &pins).insns.len() <= MAX_INSNS);
        }
    }

    #[test]
    fn a_slot_that_leaves_moves_only_its_own_buckets() {
        let all = bucket_runs(&chosen(&[(0, 0), (1, 1), (2, 2)]));
        let without_1 = bucket_runs(&chosen(&[(0, 0), (2, 2)]));
        let owner = |runs: &[(u32, u32)], b: u32| runs.iter().rev().find(|(start, _)| *start <= b).unwrap().1;
        let mut moved = 0;
        for b in 0..BUCKETS {
            let (before, after) = (owner(&all, b), owner(&without_1, b));
            if before != 1 {
                assert_eq!(before, after, "bucket {b} moved without its slot leaving");
            } else {
                moved += 1;
            }
        }
        // About a third of the buckets were slot 1's.
        assert!((250..440).contains(&moved), "{moved}");
    }
}
