//! How many connections wait in a listening socket's accept queue: `TCP_INFO` on a listener
//! reports it as `tcpi_unacked` (`sk_ack_backlog`; `tcpi_sacked` is the backlog's limit).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The number of connections queued on the listening TCP socket `socket`.
///
/// # Errors
///
/// `getsockopt` failed (not a TCP socket, closed).
pub(crate) fn accept_queue(socket: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: `tcp_info` is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable `tcp_info` of `len` bytes; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    if rc == 0 { Ok(info.tcpi_unacked) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn queued_connections_are_counted_until_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), 0);
        let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), 3);
        let _ = listener.accept().unwrap();
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), 2);
        drop(clients);
    }
}
