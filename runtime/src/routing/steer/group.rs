//! A reuse-port group as the kernel sees it: its sockets in the order of the group's socket
//! array, which a steering program's return value indexes.
//!
//! A socket joins at the end when it starts listening; when one leaves, the last one takes
//! its index (`reuseport_detach_sock` in net/core/sock_reuseport.c). [`Group`] mirrors both
//! moves exactly, so index `i` here is index `i` there.

use std::sync::Arc;

use socket2::Socket;

/// One listener's per-slot sockets, in the kernel's order.
#[derive(Debug, Default)]
pub(crate) struct Group {
    sockets: Vec<Arc<Socket>>,
    /// The slot of each socket, index for index.
    slots: Vec<usize>,
}

impl Group {
    /// A group from sockets already in the kernel's order (taken over from the previous image).
    pub(crate) fn from_parts(sockets: Vec<Arc<Socket>>, slots: Vec<usize>) -> Self {
        debug_assert_eq!(sockets.len(), slots.len());
        Group { sockets, slots }
    }

    /// A socket that has just started listening, for `slot`: it joined at the end.
    pub(crate) fn joined(&mut self, slot: usize, socket: Arc<Socket>) {
        self.sockets.push(socket);
        self.slots.push(slot);
    }

    /// Takes `slot`'s socket out; the caller closes it (the kernel then moves the last socket
    /// into its index, as this does).
    pub(crate) fn leave(&mut self, slot: usize) -> Option<Arc<Socket>> {
        let index = self.slots.iter().position(|s| *s == slot)?;
        self.slots.swap_remove(index);
        Some(self.sockets.swap_remove(index))
    }

    /// `slot`'s socket.
    pub(crate) fn socket(&self, slot: usize) -> Option<&Arc<Socket>> {
        self.index(slot).map(|i| &self.sockets[i as usize])
    }

    /// `slot`'s index in the kernel's socket array.
    pub(crate) fn index(&self, slot: usize) -> Option<u32> {
        self.slots.iter().position(|s| *s == slot).and_then(|i| u32::try_from(i).ok())
    }

    /// The sockets and their slots, in the kernel's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Arc<Socket>)> {
        self.slots.iter().copied().zip(self.sockets.iter())
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

    #[test]
    fn a_leaving_socket_is_replaced_by_the_last_as_in_the_kernel() {
        let mut group = Group::default();
        for slot in 0..4 {
            let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            group.joined(slot, Arc::new(socket));
        }
        group.leave(1);
        assert_eq!(group.iter().map(|(s, _)| s).collect::<Vec<_>>(), vec![0, 3, 2]);
        assert_eq!(group.index(3), Some(1));
        assert_eq!(group.index(1), None);
    }
}
