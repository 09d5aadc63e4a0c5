//! The TCP sockets a process tree listens on, from `/proc`: each process's fds
//! (`/proc/PID/fd/*` → `socket:[INODE]`) matched against the listening entries of its network
//! namespace (`/proc/PID/net/tcp`, `tcp6`, state `0A`).
//!
//! corral uses it to tell a worker that bound a port of its own — typically its *default*
//! port, because it ignored `LISTEN_FDS` (a shell in front of it forked, so `LISTEN_PID` named
//! another process) — from one serving the sockets corral gave it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A listening TCP socket held by a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listening {
    pub pid: u32,
    pub addr: SocketAddr,
    pub inode: u64,
}

/// The inode of a socket fd (what `/proc` names it by).
pub(crate) fn inode_of(fd: &impl std::os::fd::AsFd) -> Option<u64> {
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// Every listening TCP socket held by `root` or a process under it.
pub(crate) fn listening_in_tree(root: u32) -> Vec<Listening> {
    let mut out = Vec::new();
    let mut table: Option<HashMap<u64, SocketAddr>> = None;
    for pid in tree(root) {
        let inodes = socket_inodes(pid);
        if inodes.is_empty() {
            continue;
        }
        // One namespace for the whole tree, in practice: read its table once.
        let table = table.get_or_insert_with(|| listen_table(pid));
        for inode in inodes {
            if let Some(addr) = table.get(&inode) {
                out.push(Listening { pid, addr: *addr, inode });
            }
        }
    }
    out
}

/// `root` and its descendants, from one pass over `/proc/*/stat`.
fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = parent(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&pid) = out.get(i) {
        out.extend(children.get(&pid).into_iter().flatten());
        i += 1;
        if out.len() > 4096 {
            break;
        }
    }
    out
}

/// A process's parent, from `/proc/PID/stat` (after the command, which may hold spaces).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.split_whitespace().nth(1)?.parse().ok()
}

/// The inodes of a process's socket fds.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Listening sockets of `pid`'s network namespace: inode → local address.
fn listen_table(pid: u32) -> HashMap<u64, SocketAddr> {
    let mut out = HashMap::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else { continue };
        out.extend(text.lines().skip(1).filter_map(|line| parse_line(line, v6)));
    }
    out
}

/// One line of `/proc/net/tcp{,6}` when it is a listening socket: its inode and address.
fn parse_line(line: &str, v6: bool) -> Option<(u64, SocketAddr)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 { IpAddr::V6(ipv6(ip)?) } else { IpAddr::V4(ipv4(ip)?) };
    Some((fields.get(9)?.parse().ok()?, SocketAddr::new(ip, port)))
}

/// An IPv4 address as the kernel prints it: one 32-bit word in host (little-endian) order.
fn ipv4(hex: &str) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(u32::from_str_radix(hex, 16).ok()?.swap_bytes()))
}

/// An IPv6 address as the kernel prints it: four 32-bit words, each in host order.
fn ipv6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?.swap_bytes();
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines_parse() {
        let v4 = "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1";
        assert_eq!(parse_line(v4, false), Some((12345, "127.0.0.1:8000".parse().unwrap())));
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_line(&established, false), None);
        let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1";
        assert_eq!(parse_line(v6, true), Some((777, "[::1]:80".parse().unwrap())));
    }

    #[test]
    fn a_listener_of_this_process_is_found_by_its_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inode = inode_of(&listener).unwrap();
        let found = listening_in_tree(std::process::id());
        assert!(found.iter().any(|l| l.inode == inode && l.addr == addr), "{found:?}");
    }
}
