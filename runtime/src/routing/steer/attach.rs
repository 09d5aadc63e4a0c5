//! Attaching a steering program to a reuse-port group (`SO_ATTACH_REUSEPORT_CBPF`: no
//! privilege needed; the program is the group's, whichever member it is set on, and
//! replacing it is atomic: every connection sees the old program or the new one).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::program::Program;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; the same on every architecture corral
/// builds for except sparc, mips and parisc, which corral does not support).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Sets `program` as the group's steering program, through one of its sockets.
///
/// # Errors
///
/// The kernel refused it: `EINVAL` (a program it does not accept), `ENOPROTOOPT` (a kernel
/// without reuse-port programs), `EPERM` (a seccomp filter).
pub(crate) fn attach(socket: BorrowedFd<'_>, program: &Program) -> io::Result<()> {
    let len = u16::try_from(program.insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let fprog = libc::sock_fprog {
        len,
        // `SockFilter` is `repr(transparent)` over `sock_filter`; the kernel only reads it.
        filter: program.insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the call, and the
    // option's value is exactly a `sock_fprog` of that size; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsFd;

    use corral_protocol::BindMode;
    use socket2::Socket;

    use super::*;
    use crate::routing::steer::program::{Chosen, Key, Pins, build};

    /// A reuse-port group of `n` listening sockets on one port (index = join order).
    fn group(n: usize) -> (Vec<Socket>, SocketAddr) {
        let first = corral_protocol::bind("127.0.0.1:0".parse().unwrap(), BindMode::ReusePortListen).unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        let mut sockets = vec![first];
        for _ in 1..n {
            sockets.push(corral_protocol::bind(addr, BindMode::ReusePortListen).unwrap());
        }
        (sockets, addr)
    }

    /// Which socket each of `n` connections (from `from`, port chosen by the kernel) landed on.
    fn landed(sockets: &[Socket], addr: SocketAddr, from: &str, n: usize) -> HashMap<usize, usize> {
        let mut count = HashMap::new();
        for _ in 0..n {
            let client = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            client.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
            client.connect(&addr.into()).unwrap();
            let client: TcpStream = client.into();
            let local = client.local_addr().unwrap();
            let which = (0..200)
                .find_map(|_| {
                    let hit = sockets.iter().position(|s| match s.accept() {
                        Ok((conn, _)) => conn.peer_addr().ok().and_then(|p| p.as_socket()) == Some(local),
                        Err(_) => false,
                    });
                    if hit.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    hit
                })
                .expect("accepted somewhere");
            *count.entry(which).or_default() += 1;
        }
        count
    }

    #[test]
    fn new_connections_go_only_to_the_chosen_sockets_spread_by_the_flow_hash() {
        let (sockets, addr) = group(3);
        let chosen = [Chosen { slot: 0, index: 0 }, Chosen { slot: 2, index: 2 }];
        attach(sockets[1].as_fd(), &build(Key::Flow, &chosen, &Pins::default())).unwrap();
        let count = landed(&sockets, addr, "127.0.0.1", 200);
        assert_eq!(count.get(&1), None, "{count:?}");
        let (a, b) = (count[&0], count[&2]);
        assert!(a > 60 && b > 60, "spread by the flow hash: {count:?}");
        // Replaced atomically: now only socket 1.
        attach(sockets[0].as_fd(), &build(Key::Flow, &[Chosen { slot: 1, index: 1 }], &Pins::default())).unwrap();
        assert_eq!(landed(&sockets, addr, "127.0.0.1", 20), HashMap::from([(1, 20)]));
    }

    #[test]
    fn a_pinned_source_reaches_its_socket_even_one_steered_out() {
        let (sockets, addr) = group(3);
        let chosen = [Chosen { slot: 0, index: 0 }];
        for target in [2u32, 1, 2] {
            let client = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            client.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
            let local = client.local_addr().unwrap().as_socket().unwrap();
            let pins = Pins { source: Some(local.ip()), ports: vec![(local.port(), target)] };
            for key in [Key::Flow, Key::Client { v6: false, port_bits: 0 }] {
                attach(sockets[0].as_fd(), &build(key, &chosen, &pins)).unwrap();
            }
            client.connect(&addr.into()).unwrap();
            let landed_on = (0..200)
                .find_map(|_| {
                    let hit = sockets.iter().position(|s| s.accept().is_ok());
                    if hit.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    hit
                })
                .expect("accepted somewhere");
            assert_eq!(landed_on, target as usize);
            // Everyone else still goes by the key: socket 0 only.
            assert_eq!(landed(&sockets, addr, "127.0.0.1", 10), HashMap::from([(0, 10)]));
        }
    }

    #[test]
    fn a_client_address_keeps_its_socket() {
        let (sockets, addr) = group(3);
        let chosen: Vec<Chosen> = (0..3).map(|i| Chosen { slot: i, index: i as u32 }).collect();
        attach(sockets[0].as_fd(), &build(Key::Client { v6: false, port_bits: 0 }, &chosen, &Pins::default())).unwrap();
        let mut used = std::collections::HashSet::new();
        for host in 2..14 {
            let from = format!("127.0.0.{host}");
            let count = landed(&sockets, addr, &from, 10);
            assert_eq!(count.len(), 1, "{from} spread over {count:?}");
            used.extend(count.keys().copied());
        }
        assert!(used.len() >= 2, "12 clients all on one socket: {used:?}");
    }
}
