//! A reuse-port group as the kernel sees it: its sockets in the order of the group's socket
//! array, which a steering program's return value indexes.
//!
//! A socket joins at the end when it starts listening; when one leaves, the last one takes
//! its index (`reuseport_detach_sock` in net/core/sock_reuseport.c). [`Group`] mirrors both
//! moves exactly, so index `i` here is index `i` there.
//!
//! Each socket belongs to a slot and a process generation. A slot has one **current** socket,
//! the one new connections may be steered to; a replacement started beside a running process
//! gets a socket of its own, which becomes current when it takes over, while the old one is
//! steered out, emptied by its process, and closed.

use std::collections::BTreeMap;
use std::sync::Arc;

use socket2::Socket;

/// Whose socket: a slot, and the generation of the process it was bound for (a restarted
/// process takes its slot's socket over and becomes its member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub slot: usize,
    pub generation: u64,
}

/// One listener's per-slot sockets, in the kernel's order.
#[derive(Debug, Default)]
pub(crate) struct Group {
    sockets: Vec<Arc<Socket>>,
    /// Whose each socket is, index for index.
    members: Vec<Member>,
    /// Each slot's current generation.
    current: BTreeMap<usize, u64>,
    /// Current sockets whose process is gone, kept for the slot's next process.
    orphans: Vec<Member>,
}

impl Group {
    /// A group from sockets already in the kernel's order (taken over from the previous
    /// image); the newest generation of each slot is its current one.
    pub(crate) fn from_parts(sockets: Vec<Arc<Socket>>, members: Vec<Member>) -> Self {
        debug_assert_eq!(sockets.len(), members.len());
        let mut current = BTreeMap::new();
        for m in &members {
            let g = current.entry(m.slot).or_insert(m.generation);
            *g = (*g).max(m.generation);
        }
        Group { sockets, members, current, orphans: Vec::new() }
    }

    /// A socket that has just started listening: it joined at the end (current for its slot
    /// when `current`).
    pub(crate) fn joined(&mut self, member: Member, socket: Arc<Socket>, current: bool) {
        self.sockets.push(socket);
        self.members.push(member);
        if current || !self.current.contains_key(&member.slot) {
            self.current.insert(member.slot, member.generation);
        }
    }

    /// Takes `member`'s socket out; the caller closes it (the kernel then moves the last
    /// socket into its index, as this does).
    pub(crate) fn leave(&mut self, member: Member) -> Option<Arc<Socket>> {
        let index = self.members.iter().position(|m| *m == member)?;
        self.members.swap_remove(index);
        if self.current.get(&member.slot) == Some(&member.generation) {
            self.current.remove(&member.slot);
        }
        Some(self.sockets.swap_remove(index))
    }

    /// Takes every socket of `slot` out (a removed slot).
    pub(crate) fn leave_slot(&mut self, slot: usize) -> Vec<Arc<Socket>> {
        self.orphans.retain(|m| m.slot != slot);
        let mine: Vec<Member> = self.members.iter().copied().filter(|m| m.slot == slot).collect();
        mine.into_iter().filter_map(|m| self.leave(m)).collect()
    }

    /// The socket of process `me`: the one it has already; else its slot's current one,
    /// queue and all, unless a process of the slot still runs on it (`beside`: a replacement
    /// gets a socket of its own, bound by `bind`, current once it takes over). `true` when a
    /// socket joined the group (to be steered again: it must get nothing before its worker is
    /// ready).
    ///
    /// # Errors
    ///
    /// `bind` fails.
    pub(crate) fn socket_for(
        &mut self,
        me: Member,
        beside: bool,
        bind: impl FnOnce() -> std::io::Result<Socket>,
    ) -> std::io::Result<(Arc<Socket>, bool)> {
        if let Some(socket) = self.socket(me) {
            return Ok((socket.clone(), false));
        }
        if let Some((current, socket)) = self.current(me.slot).map(|(m, s)| (m, s.clone()))
            && !beside
        {
            self.hand_to(current, me);
            self.orphans.retain(|m| *m != current);
            return Ok((socket, false));
        }
        let socket = Arc::new(bind()?);
        self.joined(me, socket.clone(), false);
        Ok((socket, true))
    }

    /// Whether a process other than `me` runs on `me`'s slot's current socket.
    pub(crate) fn runs_beside(&self, me: Member) -> bool {
        self.current(me.slot).is_some_and(|(current, _)| current != me && !self.orphans.contains(&current))
    }

    /// Process `me` took over its slot: its socket becomes current. Returns whether the old
    /// current socket's process still runs (its socket is now steered out, for it to empty),
    /// and the old socket when its process is gone (nobody will take what waits there: the
    /// caller closes it).
    pub(crate) fn promote(&mut self, me: Member) -> (bool, Option<Arc<Socket>>) {
        let Some(old) = self.make_current(me) else { return (false, None) };
        let orphaned = self.orphans.contains(&old);
        self.orphans.retain(|m| m.slot != me.slot);
        if orphaned { (false, self.leave(old)) } else { (true, None) }
    }

    /// Process `me` is gone: its socket leaves the group (returned, for the caller to close)
    /// unless it is its slot's current one, which the slot's next process takes over.
    ///
    /// With `migrate` (the kernel moves a closed reuse-port socket's queue to another socket
    /// of its group: `net.ipv4.tcp_migrate_req`), the current socket leaves too whenever
    /// another process still serves on the group: what waits there is served at once by the
    /// others instead of waiting for the slot's next process to start, which binds a socket
    /// of its own.
    pub(crate) fn process_gone(&mut self, me: Member, migrate: bool) -> Option<Arc<Socket>> {
        match self.current(me.slot) {
            Some((current, _)) if current == me && migrate && self.served_by_another(me) => {
                self.orphans.retain(|m| *m != me);
                self.leave(me)
            }
            Some((current, _)) if current == me => {
                if !self.orphans.contains(&me) {
                    self.orphans.push(me);
                }
                None
            }
            _ => self.leave(me),
        }
    }

    /// Whether a socket of the group other than `me`'s has a live process on it (an orphan's
    /// process is gone).
    fn served_by_another(&self, me: Member) -> bool {
        self.members.iter().any(|m| *m != me && !self.orphans.contains(m))
    }

    /// `member`'s socket.
    pub(crate) fn socket(&self, member: Member) -> Option<&Arc<Socket>> {
        self.members.iter().position(|m| *m == member).map(|i| &self.sockets[i])
    }

    /// `slot`'s current socket and its member.
    pub(crate) fn current(&self, slot: usize) -> Option<(Member, &Arc<Socket>)> {
        let member = Member { slot, generation: *self.current.get(&slot)? };
        Some((member, self.socket(member)?))
    }

    /// Makes `member`'s socket its slot's current one; returns the one it replaces.
    pub(crate) fn make_current(&mut self, member: Member) -> Option<Member> {
        let old = self.current.insert(member.slot, member.generation)?;
        (old != member.generation).then_some(Member { slot: member.slot, generation: old })
    }

    /// Gives `from`'s socket to `to` (a restarted process takes its slot's socket over).
    pub(crate) fn hand_to(&mut self, from: Member, to: Member) {
        if let Some(m) = self.members.iter_mut().find(|m| **m == from) {
            *m = to;
        }
        if self.current.get(&from.slot) == Some(&from.generation) {
            self.current.insert(to.slot, to.generation);
        }
    }

    /// The index of `member`'s socket in the kernel's socket array.
    pub(crate) fn index_of(&self, member: Member) -> Option<u32> {
        self.members.iter().position(|m| *m == member).and_then(|i| u32::try_from(i).ok())
    }

    /// The index of `slot`'s current socket in the kernel's socket array.
    pub(crate) fn index(&self, slot: usize) -> Option<u32> {
        let member = Member { slot, generation: *self.current.get(&slot)? };
        self.members.iter().position(|m| *m == member).and_then(|i| u32::try_from(i).ok())
    }

    /// The slots with a current socket.
    pub(crate) fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.current.keys().copied()
    }

    /// Every socket and whose it is, in the kernel's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Member, &Arc<Socket>)> {
        self.members.iter().copied().zip(self.sockets.iter())
    }

    /// Any socket of the group (a program is attached through one).
    pub(crate) fn any(&self) -> Option<&Arc<Socket>> {
        self.sockets.first()
    }

    pub(crate) fn len(&self) -> usize {
        self.sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> Arc<Socket> {
        Arc::new(Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
    }

    #[test]
    fn a_leaving_socket_is_replaced_by_the_last_as_in_the_kernel() {
        let mut group = Group::default();
        for slot in 0..4 {
            group.joined(Member { slot, generation: 1 }, socket(), true);
        }
        group.leave(Member { slot: 1, generation: 1 });
        assert_eq!(group.iter().map(|(m, _)| m.slot).collect::<Vec<_>>(), vec![0, 3, 2]);
        assert_eq!(group.index(3), Some(1));
        assert_eq!(group.index(1), None);
    }

    #[test]
    fn a_replacement_has_its_own_socket_until_it_takes_over() {
        let mut group = Group::default();
        let (old, new) = (Member { slot: 0, generation: 1 }, Member { slot: 0, generation: 2 });
        group.joined(old, socket(), true);
        group.joined(new, socket(), false);
        assert_eq!(group.index(0), Some(0), "the running process's socket stays current");
        assert_eq!(group.make_current(new), Some(old));
        assert_eq!(group.index(0), Some(1));
        group.leave(old);
        assert_eq!(group.index(0), Some(0), "the last socket took the leaving one's index");
    }

    #[test]
    fn a_dead_workers_socket_stays_for_its_slot_unless_the_kernel_moves_its_queue() {
        let (a, b) = (Member { slot: 0, generation: 1 }, Member { slot: 1, generation: 1 });
        let mut kept = Group::default();
        kept.joined(a, socket(), true);
        kept.joined(b, socket(), true);
        assert!(kept.process_gone(a, false).is_none(), "kept, queue and all, for slot 0's next process");
        assert_eq!(kept.index(0), Some(0));

        let mut moved = Group::default();
        moved.joined(a, socket(), true);
        moved.joined(b, socket(), true);
        assert!(moved.process_gone(a, true).is_some(), "closed: the kernel moves its queue to slot 1's");
        assert_eq!(moved.index(0), None, "slot 0's next process binds a socket of its own");
        let (_, joined) =
            moved.socket_for(Member { slot: 0, generation: 2 }, false, || (*socket()).try_clone()).unwrap();
        assert!(joined);

        // The last process on the group keeps its socket whatever the setting: nobody would
        // take a queue moved out of it.
        let mut alone = Group::default();
        alone.joined(a, socket(), true);
        assert!(alone.process_gone(a, true).is_none());
        assert_eq!(alone.index(0), Some(0));
    }
}
