//! The socketpairs joining a primary to a worker.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use corral_protocol::{seqpacket_pair, stream_pair};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{MsgFlags, SockType, getsockopt, recvmsg, sendmsg, sockopt};

fn cloexec(fd: &OwnedFd) -> bool {
    FdFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

#[test]
fn stream_pair_is_a_connected_close_on_exec_stream() {
    let pair = stream_pair().unwrap();
    for end in [&pair.primary, &pair.worker] {
        assert!(cloexec(end));
        assert_eq!(getsockopt(end, sockopt::SockType).unwrap(), SockType::Stream);
    }
    let mut primary = UnixStream::from(pair.primary);
    let mut worker = UnixStream::from(pair.worker);
    primary.write_all(b"abc").unwrap();
    primary.write_all(b"def").unwrap();
    worker.write_all(b"back").unwrap();
    let mut buf = [0u8; 6];
    worker.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abcdef");
    let mut back = [0u8; 4];
    primary.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"back");
}

#[test]
fn seqpacket_pair_keeps_message_boundaries() {
    let pair = seqpacket_pair().unwrap();
    for end in [&pair.primary, &pair.worker] {
        assert!(cloexec(end));
        assert_eq!(getsockopt(end, sockopt::SockType).unwrap(), SockType::SeqPacket);
    }
    for msg in [&b"one"[..], b"second message"] {
        sendmsg::<()>(pair.primary.as_raw_fd(), &[IoSlice::new(msg)], &[], MsgFlags::empty(), None).unwrap();
    }
    for expected in [&b"one"[..], b"second message"] {
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<()>(pair.worker.as_raw_fd(), &mut iov, None, MsgFlags::empty()).unwrap();
        assert_eq!(got.bytes, expected.len());
        assert_eq!(&buf[..expected.len()], expected);
    }
}

#[test]
fn pairs_are_independent() {
    let a = stream_pair().unwrap();
    let b = stream_pair().unwrap();
    let fds = [&a.primary, &a.worker, &b.primary, &b.worker].map(|fd| fd.as_raw_fd());
    for (i, x) in fds.iter().enumerate() {
        for y in &fds[i + 1..] {
            assert_ne!(x, y);
        }
    }
    let mut ap = UnixStream::from(a.primary);
    let mut bw = UnixStream::from(b.worker);
    let mut aw = UnixStream::from(a.worker);
    ap.write_all(b"for a").unwrap();
    aw.set_nonblocking(true).unwrap();
    bw.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(bw.read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(aw.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf, b"for a");
}
