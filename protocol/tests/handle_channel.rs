//! File descriptors over the SEQPACKET handle channel: real fds arrive working and
//! close-on-exec, in order, and malformed datagrams give `BadHandle` without breaking the
//! channel or leaking the fds they carried.

mod common;

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use common::STEP;
use corral_protocol::{
    HandleAck, HandleChannel, HandleFault, HandleHeader, HandleKind, MAX_HANDLE_HEADER, MAX_REFUSED_PER_ACK,
    ProtocolError, TraceContext, seqpacket_pair,
};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::fstat;
use nix::unistd::{pipe, pipe2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn listener_header(id: u64, addr: &str) -> HandleHeader {
    HandleHeader { id, kind: HandleKind::Listener { addr: addr.to_string() }, trace: None }
}

fn connection_header(id: u64) -> HandleHeader {
    HandleHeader {
        id,
        kind: HandleKind::Connection { listener: id / 3, peer: format!("10.0.0.{}:{}", id % 256, 1000 + id) },
        trace: (id % 2 == 0).then(|| TraceContext {
            trace_id: [(id % 200) as u8 + 1; 16],
            span_id: [9; 8],
            flags: (id % 2) as u8,
            tracestate: format!("corral=s{id}"),
        }),
    }
}

/// Both ends wrapped as channels.
fn channel_pair() -> (HandleChannel, HandleChannel) {
    let pair = seqpacket_pair().unwrap();
    (HandleChannel::new(pair.primary).unwrap(), HandleChannel::new(pair.worker).unwrap())
}

/// A receiving channel and the raw socket of the other end, to send hand-made datagrams, plus
/// a channel on a duplicate of that raw end, to send good ones.
fn raw_sender_pair() -> (OwnedFd, HandleChannel, HandleChannel) {
    let pair = seqpacket_pair().unwrap();
    let good_sender = HandleChannel::new(pair.primary.try_clone().unwrap()).unwrap();
    (pair.primary, good_sender, HandleChannel::new(pair.worker).unwrap())
}

fn send_raw(sock: &OwnedFd, data: &[u8], fds: &[RawFd]) {
    let iov = [IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).unwrap();
    assert_eq!(sent, data.len());
}

fn cloexec(fd: BorrowedFd<'_>) -> bool {
    FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

/// (device, inode): the identity of the open file behind a fd.
fn identity(fd: BorrowedFd<'_>) -> (u64, u64) {
    let st = fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// A close-on-exec pipe whose read end is non-blocking: `(read, write)`.
fn probe_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
    (r, w)
}

/// Whether every copy of the pipe's read end is closed (a write fails with EPIPE).
fn all_readers_closed(write_end: &OwnedFd) -> bool {
    match nix::unistd::write(write_end, b"x") {
        Err(Errno::EPIPE) => true,
        Ok(1) => false,
        other => panic!("unexpected write result {other:?}"),
    }
}

/// Whether every copy of the pipe's write end is closed (read gives EOF rather than EAGAIN).
fn all_writers_closed(read_end: &OwnedFd) -> bool {
    let mut buf = [0u8; 16];
    match nix::unistd::read(read_end, &mut buf) {
        Ok(0) => true,
        Err(Errno::EAGAIN) => false,
        other => panic!("unexpected read result {other:?}"),
    }
}

async fn recv(ch: &HandleChannel) -> Result<Option<(HandleHeader, OwnedFd)>, ProtocolError> {
    timeout(STEP, ch.recv()).await.expect("recv timed out")
}

async fn send(ch: &HandleChannel, header: &HandleHeader, fd: BorrowedFd<'_>) -> Result<(), ProtocolError> {
    timeout(STEP, ch.send(header, fd)).await.expect("send timed out")
}

/// Asserts that a receive failed with `BadHandle`, for the fault `pattern` matches.
macro_rules! assert_bad_handle {
    ($result:expr, $pattern:pat) => {{
        let result: Result<Option<(HandleHeader, OwnedFd)>, ProtocolError> = $result;
        assert!(matches!(result, Err(ProtocolError::BadHandle($pattern))), "{result:?}");
    }};
}

// ---- good datagrams ---------------------------------------------------------------------

#[tokio::test]
async fn listener_fd_arrives_and_accepts_connections() {
    let (primary, worker) = channel_pair();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let header = listener_header(1, &addr.to_string());
    send(&primary, &header, listener.as_fd()).await.unwrap();
    // The sender may close its copy as soon as send returns.
    drop(listener);

    let (got, fd) = recv(&worker).await.unwrap().expect("a datagram");
    assert_eq!(got, header);
    let received = std::net::TcpListener::from(fd);
    assert_eq!(received.local_addr().unwrap(), addr);
    received.set_nonblocking(true).unwrap();
    let received = tokio::net::TcpListener::from_std(received).unwrap();

    let client = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    });
    let (mut conn, _) = timeout(STEP, received.accept()).await.expect("accept timed out").unwrap();
    let mut request = [0u8; 4];
    timeout(STEP, conn.read_exact(&mut request)).await.unwrap().unwrap();
    assert_eq!(&request, b"ping");
    conn.write_all(b"pong").await.unwrap();
    assert_eq!(&timeout(STEP, client).await.unwrap().unwrap(), b"pong");
}

#[tokio::test]
async fn pipe_fd_arrives_and_reads_what_was_written() {
    let (primary, worker) = channel_pair();
    let (read_end, write_end) = pipe().unwrap();
    send(&primary, &connection_header(8), read_end.as_fd()).await.unwrap();
    let expected = identity(read_end.as_fd());
    drop(read_end);

    let (got, fd) = recv(&worker).await.unwrap().unwrap();
    assert_eq!(got, connection_header(8));
    assert_eq!(identity(fd.as_fd()), expected);
    let mut writer = std::fs::File::from(write_end);
    writer.write_all(b"through the pipe").unwrap();
    drop(writer);
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    assert_eq!(text, "through the pipe");
}

#[tokio::test]
async fn received_fd_is_close_on_exec() {
    let (primary, worker) = channel_pair();
    // pipe(2) without O_CLOEXEC: the flag must come from the receiving side.
    let (read_end, _write_end) = pipe().unwrap();
    assert!(!cloexec(read_end.as_fd()));
    send(&primary, &listener_header(2, "x"), read_end.as_fd()).await.unwrap();
    let (_, fd) = recv(&worker).await.unwrap().unwrap();
    assert!(cloexec(fd.as_fd()));
    assert_ne!(fd.as_raw_fd(), read_end.as_raw_fd());
}

#[tokio::test]
async fn channel_works_in_both_directions() {
    let (primary, worker) = channel_pair();
    let (read_end, _w) = probe_pipe();
    send(&worker, &connection_header(5), read_end.as_fd()).await.unwrap();
    let (got, fd) = recv(&primary).await.unwrap().unwrap();
    assert_eq!(got, connection_header(5));
    assert_eq!(identity(fd.as_fd()), identity(read_end.as_fd()));
}

#[tokio::test]
async fn recv_returns_none_after_the_peer_is_dropped() {
    let (primary, worker) = channel_pair();
    let (read_end, _w) = probe_pipe();
    send(&primary, &connection_header(1), read_end.as_fd()).await.unwrap();
    send(&primary, &connection_header(2), read_end.as_fd()).await.unwrap();
    drop(primary);
    // Datagrams sent before the close are still delivered, then the end.
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, connection_header(1));
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, connection_header(2));
    assert!(recv(&worker).await.unwrap().is_none());
    assert!(recv(&worker).await.unwrap().is_none());
}

#[tokio::test]
async fn send_after_the_peer_is_dropped_is_broken_pipe() {
    let (primary, worker) = channel_pair();
    drop(worker);
    let (read_end, _w) = probe_pipe();
    let err = send(&primary, &connection_header(1), read_end.as_fd()).await.unwrap_err();
    assert!(matches!(err, ProtocolError::Io(ref e) if e.raw_os_error() == Some(Errno::EPIPE as i32)), "{err:?}");
}

#[tokio::test]
async fn a_thousand_fds_arrive_in_order() {
    const N: u64 = 1000;
    let (primary, worker) = channel_pair();
    // A few distinct pipes, sent round robin, so that the receiver can tell them apart.
    let pool: Vec<(OwnedFd, OwnedFd)> = (0..7).map(|_| probe_pipe()).collect();
    let ids: Vec<(u64, u64)> = pool.iter().map(|(r, _)| identity(r.as_fd())).collect();

    let sender = async {
        for i in 0..N {
            let fd = pool[(i % 7) as usize].0.as_fd();
            primary.send(&connection_header(i), fd).await.unwrap();
        }
    };
    let receiver = async {
        for i in 0..N {
            let (header, fd) = worker.recv().await.unwrap().expect("channel closed early");
            assert_eq!(header, connection_header(i));
            assert_eq!(identity(fd.as_fd()), ids[(i % 7) as usize], "fd of datagram {i}");
            assert!(cloexec(fd.as_fd()));
        }
    };
    timeout(std::time::Duration::from_secs(20), async { tokio::join!(sender, receiver) })
        .await
        .expect("transfer timed out");

    // Every received copy was dropped: once our own read ends are closed, no reader is left.
    drop(worker);
    for (r, w) in pool {
        assert!(!all_readers_closed(&w));
        drop(r);
        assert!(all_readers_closed(&w));
    }
}

#[tokio::test]
async fn send_refuses_a_header_over_the_maximum() {
    let (primary, worker) = channel_pair();
    let (read_end, _w) = probe_pipe();
    let huge = listener_header(1, &"a".repeat(MAX_HANDLE_HEADER));
    let err = send(&primary, &huge, read_end.as_fd()).await.unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { len, max: MAX_HANDLE_HEADER } if len > MAX_HANDLE_HEADER),
        "{err:?}"
    );
    // Nothing went out: the next datagram the worker sees is the next good one.
    send(&primary, &listener_header(2, "ok"), read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "ok"));
}

#[tokio::test]
async fn header_just_under_the_maximum_passes() {
    let (primary, worker) = channel_pair();
    let (read_end, _w) = probe_pipe();
    // id 1 (1 byte), Listener (1 byte), string length (2 bytes), trace None (1 byte).
    let header = listener_header(1, &"a".repeat(MAX_HANDLE_HEADER - 5));
    assert_eq!(postcard::to_stdvec(&header).unwrap().len(), MAX_HANDLE_HEADER);
    send(&primary, &header, read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, header);
}

// ---- malformed datagrams ----------------------------------------------------------------

#[tokio::test]
async fn garbage_header_with_fd_is_bad_handle_and_channel_keeps_working() {
    let (raw, good, worker) = raw_sender_pair();
    let (probe_r, probe_w) = probe_pipe();
    // 0xff.. is an unterminated varint for the id.
    send_raw(&raw, &[0xff; 12], &[probe_w.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::HeaderDecode(_));
    // The fd that came with the bad datagram was closed by the receiver.
    drop(probe_w);
    assert!(all_writers_closed(&probe_r));

    let (read_end, _w) = probe_pipe();
    send(&good, &connection_header(3), read_end.as_fd()).await.unwrap();
    let (header, fd) = recv(&worker).await.unwrap().unwrap();
    assert_eq!(header, connection_header(3));
    assert_eq!(identity(fd.as_fd()), identity(read_end.as_fd()));
}

#[tokio::test]
async fn unknown_kind_variant_is_bad_handle() {
    let (raw, good, worker) = raw_sender_pair();
    let (read_end, _w) = probe_pipe();
    // id 1, HandleKind variant 2 (there are two), trace None.
    send_raw(&raw, &[0x01, 0x02, 0x00], &[read_end.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::HeaderDecode(_));
    send(&good, &listener_header(4, "next"), read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(4, "next"));
}

/// A valid header followed by garbage is malformed, as trailing bytes in a frame are
/// (`ProtocolError::TrailingBytes` on the frame stream).
#[tokio::test]
async fn header_with_trailing_bytes_is_bad_handle() {
    let (raw, good, worker) = raw_sender_pair();
    let (read_end, _w) = probe_pipe();
    let mut data = postcard::to_stdvec(&listener_header(1, "x")).unwrap();
    data.extend_from_slice(&[0xde, 0xad]);
    send_raw(&raw, &data, &[read_end.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::TrailingBytes { extra: 2 });
    send(&good, &listener_header(2, "next"), read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "next"));
}

#[tokio::test]
async fn hand_made_valid_datagram_is_accepted() {
    // The raw path itself works, so the failures above are about their content.
    let (raw, _good, worker) = raw_sender_pair();
    let (read_end, _w) = probe_pipe();
    let header = connection_header(6);
    send_raw(&raw, &postcard::to_stdvec(&header).unwrap(), &[read_end.as_raw_fd()]);
    let (got, fd) = recv(&worker).await.unwrap().unwrap();
    assert_eq!(got, header);
    assert_eq!(identity(fd.as_fd()), identity(read_end.as_fd()));
}

#[tokio::test]
async fn datagram_without_fd_is_bad_handle() {
    let (raw, good, worker) = raw_sender_pair();
    send_raw(&raw, &postcard::to_stdvec(&listener_header(1, "no fd")).unwrap(), &[]);
    assert_bad_handle!(recv(&worker).await, HandleFault::FdCount { got: 0 });

    let (read_end, _w) = probe_pipe();
    send(&good, &listener_header(2, "fd"), read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "fd"));
}

#[tokio::test]
async fn datagram_with_fd_but_no_header_is_bad_handle() {
    let (raw, good, worker) = raw_sender_pair();
    let (probe_r, probe_w) = probe_pipe();
    send_raw(&raw, &[], &[probe_w.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::HeaderDecode(_));
    drop(probe_w);
    assert!(all_writers_closed(&probe_r));

    send(&good, &listener_header(2, "fd"), probe_r.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "fd"));
}

#[tokio::test]
async fn datagram_with_two_fds_is_bad_handle_and_both_are_closed() {
    let (raw, good, worker) = raw_sender_pair();
    let (r1, w1) = probe_pipe();
    let (r2, w2) = probe_pipe();
    send_raw(&raw, &postcard::to_stdvec(&listener_header(1, "two")).unwrap(), &[w1.as_raw_fd(), w2.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::FdCount { got: 2 });
    drop((w1, w2));
    assert!(all_writers_closed(&r1));
    assert!(all_writers_closed(&r2));

    send(&good, &listener_header(2, "one"), r1.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "one"));
}

#[tokio::test]
async fn datagram_with_too_many_fds_is_bad_handle_and_channel_keeps_working() {
    let (raw, good, worker) = raw_sender_pair();
    let (read_end, _w) = probe_pipe();
    let fds = [read_end.as_raw_fd(); 8];
    send_raw(&raw, &postcard::to_stdvec(&listener_header(1, "many")).unwrap(), &fds);
    assert_bad_handle!(recv(&worker).await, HandleFault::TooManyFds);

    send(&good, &listener_header(2, "after"), read_end.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "after"));
}

#[tokio::test]
async fn datagram_over_the_header_maximum_is_bad_handle_and_its_fd_is_closed() {
    let (raw, good, worker) = raw_sender_pair();
    let (probe_r, probe_w) = probe_pipe();
    send_raw(&raw, &vec![0x01; MAX_HANDLE_HEADER + 100], &[probe_w.as_raw_fd()]);
    assert_bad_handle!(recv(&worker).await, HandleFault::HeaderTooLong { max: MAX_HANDLE_HEADER });
    drop(probe_w);
    assert!(all_writers_closed(&probe_r));

    send(&good, &listener_header(2, "after"), probe_r.as_fd()).await.unwrap();
    assert_eq!(recv(&worker).await.unwrap().unwrap().0, listener_header(2, "after"));
}

#[test]
fn handle_header_postcard_round_trip() {
    for header in
        [listener_header(0, ""), listener_header(u64::MAX, "[::1]:443"), connection_header(4), connection_header(5)]
    {
        let bytes = postcard::to_stdvec(&header).unwrap();
        assert_eq!(postcard::from_bytes::<HandleHeader>(&bytes).unwrap(), header);
    }
}

#[test]
fn an_acknowledgement_without_refusals_is_the_bare_count() {
    for taken in [0, 1, 127, 128, u64::MAX] {
        let bytes = HandleAck::taken(taken).encode().unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&taken).unwrap());
        assert_eq!(HandleAck::decode(&bytes).unwrap(), HandleAck::taken(taken));
    }
}

#[test]
fn an_acknowledgement_with_refusals_round_trips() {
    let ack = HandleAck { taken: 300, refused: vec![0, 5, 299] };
    assert_eq!(HandleAck::decode(&ack.encode().unwrap()).unwrap(), ack);
}

#[test]
fn bad_refusals_are_refused() {
    let bad = |taken: u64, refused: Vec<u64>| {
        let mut bytes = postcard::to_stdvec(&taken).unwrap();
        bytes.extend(postcard::to_stdvec(&refused).unwrap());
        HandleAck::decode(&bytes)
    };
    let is_bad =
        |r: Result<HandleAck, ProtocolError>| matches!(r, Err(ProtocolError::BadHandle(HandleFault::BadRefusal)));
    assert!(is_bad(bad(5, vec![5])), "not below taken");
    assert!(is_bad(bad(5, vec![3, 2])), "out of order");
    assert!(is_bad(bad(5, vec![2, 2])), "twice");
    assert!(is_bad(bad(5, vec![])), "an empty list is never sent");
    assert!(is_bad(bad(1000, (0..=MAX_REFUSED_PER_ACK as u64).collect())), "too many");
    // A huge count is refused before anything is allocated for it.
    let mut huge = postcard::to_stdvec(&5u64).unwrap();
    huge.extend(postcard::to_stdvec(&u64::MAX).unwrap());
    assert!(is_bad(HandleAck::decode(&huge)));
    let mut trailing = HandleAck { taken: 5, refused: vec![1] }.encode().unwrap();
    trailing.push(0);
    assert!(matches!(
        HandleAck::decode(&trailing),
        Err(ProtocolError::BadHandle(HandleFault::TrailingBytes { extra: 1 }))
    ));
}

#[test]
fn merged_acknowledgements_keep_the_highest_count_and_every_refusal() {
    let mut ack = HandleAck { taken: 4, refused: vec![1] };
    ack.merge(HandleAck { taken: 9, refused: vec![6, 1] });
    ack.merge(HandleAck::taken(7));
    assert_eq!(ack, HandleAck { taken: 9, refused: vec![1, 6] });
}

#[tokio::test]
async fn refusals_travel_on_the_channel() {
    let (primary, worker) = channel_pair();
    worker.send_ack(&HandleAck { taken: 3, refused: vec![2] }).await.unwrap();
    worker.send_ack(&HandleAck::taken(4)).await.unwrap();
    assert_eq!(primary.recv_ack().await.unwrap(), Some(HandleAck { taken: 3, refused: vec![2] }));
    assert_eq!(primary.recv_ack().await.unwrap(), Some(HandleAck::taken(4)));
    worker.send_ack(&HandleAck { taken: 9, refused: vec![5, 8] }).await.unwrap();
    worker.send_ack(&HandleAck { taken: 12, refused: vec![10] }).await.unwrap();
    assert_eq!(primary.drain_acks(), Some(HandleAck { taken: 12, refused: vec![5, 8, 10] }));
}
