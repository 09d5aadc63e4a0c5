//! End to end over real Unix stream sockets, with `FramedRead` / `FramedWrite` / `Framed`.

mod common;

use std::os::unix::net::UnixStream as StdUnixStream;

use common::{STEP, UserMsg, expected_frame};
use corral_protocol::{
    Body, Control, Envelope, FrameCodec, Hello, ProtocolError, TraceContext, WorkerStats, stream_pair,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

const COUNT: u64 = 10_000;

/// The `i`-th message of the bulk tests: user messages of varied sizes, with a control frame
/// now and then.
fn message(i: u64) -> Envelope<UserMsg> {
    if i % 97 == 0 {
        return Envelope::control(i, Control::Ping { nonce: i * 3 });
    }
    let body = match i % 4 {
        0 => UserMsg::Num(i),
        1 => UserMsg::Text(format!("message number {i}")),
        2 => UserMsg::Bytes(vec![(i % 251) as u8; (i % 700) as usize]),
        _ => UserMsg::Mixed("m".repeat((i % 50) as usize), vec![1, 2, 3], u64::MAX - i),
    };
    let env = Envelope::user(i, body);
    if i % 5 == 0 {
        env.with_trace(Some(TraceContext {
            trace_id: [(i % 255) as u8 + 1; 16],
            span_id: [7; 8],
            flags: 1,
            tracestate: String::new(),
        }))
    } else {
        env
    }
}

/// Writes `COUNT` envelopes on one end of a socket pair and reads them back on the other.
async fn bulk_round_trip(max: usize) {
    let (a, b) = UnixStream::pair().unwrap();
    let mut writer = FramedWrite::new(a, FrameCodec::<UserMsg, ()>::new(max));
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::new(max));

    let send = tokio::spawn(async move {
        for i in 1..=COUNT {
            writer.feed(message(i)).await.unwrap();
        }
        writer.close().await.unwrap();
    });

    let receive = async {
        for i in 1..=COUNT {
            match reader.next().await {
                Some(Ok(env)) => assert_eq!(env, message(i), "frame {i}"),
                other => panic!("frame {i}: {other:?}"),
            }
        }
        // The writer closed: clean end of stream, no error.
        assert!(reader.next().await.is_none());
    };
    timeout(std::time::Duration::from_secs(20), receive).await.expect("bulk transfer timed out");
    timeout(STEP, send).await.expect("writer timed out").unwrap();
}

#[tokio::test]
async fn ten_thousand_envelopes_arrive_in_order() {
    bulk_round_trip(corral_protocol::DEFAULT_MAX_FRAME_LENGTH).await;
}

/// The same with a maximum no length prefix can exceed.
#[tokio::test]
async fn ten_thousand_envelopes_arrive_in_order_unbounded_max() {
    bulk_round_trip(u32::MAX as usize).await;
}

/// A primary and a worker doing the control exchange over `Framed` on both sides.
#[tokio::test]
async fn handshake_ping_pong_and_shutdown() {
    let (p, w) = UnixStream::pair().unwrap();
    let mut primary = Framed::new(p, FrameCodec::<String, String>::default());
    let mut worker = Framed::new(w, FrameCodec::<String, String>::default());

    let worker_task = tokio::spawn(async move {
        worker.send(Envelope::control(1, Control::Hello(Hello::new(2, 5, 777)))).await.unwrap();
        worker.send(Envelope::control(2, Control::Ready)).await.unwrap();
        let mut seq = 3;
        loop {
            let env = worker.next().await.expect("primary closed").expect("frame");
            match (env.body.as_control(), &env.body) {
                (Some(&Control::Ping { nonce }), _) => {
                    let stats = WorkerStats { handled: nonce, ..Default::default() };
                    worker.send(Envelope::control(seq, Control::Pong { nonce, stats })).await.unwrap();
                }
                (_, Body::User(text)) => {
                    worker.send(Envelope::user(seq, text.to_uppercase())).await.unwrap();
                }
                (Some(&Control::Shutdown { deadline_ms }), _) => {
                    assert_eq!(deadline_ms, 1500);
                    worker.send(Envelope::control(seq, Control::Disconnect)).await.unwrap();
                    worker.close().await.unwrap();
                    return;
                }
                other => panic!("worker got {other:?}"),
            }
            seq += 1;
        }
    });

    let primary_side = async {
        let first = primary.next().await.unwrap().unwrap();
        let Some(Control::Hello(hello)) = first.body.as_control() else { panic!("first frame {first:?}") };
        hello.check(2, 5).unwrap();
        assert_eq!(hello.pid, 777);
        assert!(matches!(primary.next().await.unwrap().unwrap().body.as_control(), Some(Control::Ready)));

        primary.send(Envelope::control(1, Control::Ping { nonce: 42 })).await.unwrap();
        let pong = primary.next().await.unwrap().unwrap();
        assert_eq!(pong.seq, 3);
        assert!(matches!(
            pong.body.as_control(),
            Some(Control::Pong { nonce: 42, stats: WorkerStats { handled: 42, .. } })
        ));

        primary.send(Envelope::user(2, "shout".to_string())).await.unwrap();
        let reply = primary.next().await.unwrap().unwrap();
        assert_eq!(reply.body, Body::User("SHOUT".to_string()));

        primary.send(Envelope::control(3, Control::Shutdown { deadline_ms: 1500 })).await.unwrap();
        let bye = primary.next().await.unwrap().unwrap();
        assert_eq!(bye.body, Body::from(Control::Disconnect));
        assert!(primary.next().await.is_none());
    };
    timeout(STEP, primary_side).await.expect("primary timed out");
    timeout(STEP, worker_task).await.expect("worker timed out").unwrap();
}

/// The crate's own `stream_pair` carries frames once wrapped for tokio.
#[tokio::test]
async fn frames_over_crate_stream_pair() {
    let pair = stream_pair().unwrap();
    let to_tokio = |fd| {
        let std = StdUnixStream::from(fd);
        std.set_nonblocking(true).unwrap();
        UnixStream::from_std(std).unwrap()
    };
    let mut writer = FramedWrite::new(to_tokio(pair.primary), FrameCodec::<UserMsg, ()>::default());
    let mut reader = FramedRead::new(to_tokio(pair.worker), FrameCodec::<(), UserMsg>::default());
    let envs: Vec<_> = (1..=50).map(message).collect();
    let sent = envs.clone();
    let send = tokio::spawn(async move {
        for env in sent {
            writer.send(env).await.unwrap();
        }
    });
    let got = timeout(STEP, reader.by_ref().take(50).collect::<Vec<_>>()).await.expect("timed out");
    let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, envs);
    timeout(STEP, send).await.unwrap().unwrap();
    // The writer was dropped with its task: clean end.
    assert!(timeout(STEP, reader.next()).await.unwrap().is_none());
}

/// Writes `bytes` raw on one end, then either closes it or keeps it open, and returns what
/// the reader's stream yields first.
async fn first_item_after_raw_write(
    bytes: Vec<u8>,
    close: bool,
    max: usize,
) -> Option<Result<Envelope<UserMsg>, ProtocolError>> {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::new(max));
    a.write_all(&bytes).await.unwrap();
    a.flush().await.unwrap();
    if close {
        a.shutdown().await.unwrap();
        drop(a);
        timeout(STEP, reader.next()).await.expect("reader timed out")
    } else {
        let item = timeout(STEP, reader.next()).await.expect("reader waited for more bytes");
        drop(a);
        item
    }
}

#[tokio::test]
async fn garbage_on_the_stream_is_decode_error() {
    let mut bytes = 5u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0xff; 5]);
    let item = first_item_after_raw_write(bytes, false, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::Decode(_)))), "{item:?}");
}

#[tokio::test]
async fn garbage_after_good_frames_yields_them_then_the_error() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::default());
    let good = Envelope::user(1, UserMsg::Text("fine".into()));
    let mut bytes = expected_frame(&good);
    // Body::User with UserMsg variant 200: unknown.
    bytes.extend_from_slice(&[0, 0, 0, 4, 0x02, 0x00, 0x01, 0xc8]);
    a.write_all(&bytes).await.unwrap();
    let first = timeout(STEP, reader.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(ref env)) if *env == good), "{first:?}");
    let second = timeout(STEP, reader.next()).await.unwrap();
    assert!(matches!(second, Some(Err(ProtocolError::Decode(_)))), "{second:?}");
}

#[tokio::test]
async fn trailing_bytes_on_the_stream() {
    let item = first_item_after_raw_write(vec![0, 0, 0, 5, 0x01, 0x00, 0x00, 0x01, 0x00], false, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::TrailingBytes { extra: 1 }))), "{item:?}");
}

/// An oversized length prefix is refused at once, although the peer is still connected and
/// the body never comes.
#[tokio::test]
async fn oversized_prefix_on_the_stream_is_refused_without_waiting() {
    let item = first_item_after_raw_write(4096u32.to_be_bytes().to_vec(), false, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::FrameTooLarge { len: 4096, max: 1024 }))), "{item:?}");
}

#[tokio::test]
async fn stream_closed_inside_the_body_is_truncated() {
    let item = first_item_after_raw_write(vec![0, 0, 0, 10, 1, 2, 3], true, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::Truncated { .. }))), "{item:?}");
}

#[tokio::test]
async fn stream_closed_inside_the_prefix_is_truncated() {
    let item = first_item_after_raw_write(vec![0, 0], true, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::Truncated { buffered: 2 }))), "{item:?}");
}

/// A peer that dies right after writing a length prefix has lost a frame; the reader must
/// not report a clean end of stream.
#[tokio::test]
async fn stream_closed_right_after_the_prefix_is_truncated() {
    let item = first_item_after_raw_write(vec![0, 0, 0, 10], true, 1024).await;
    assert!(matches!(item, Some(Err(ProtocolError::Truncated { .. }))), "{item:?}");
}

#[tokio::test]
async fn stream_closed_between_frames_is_a_clean_end() {
    let env = Envelope::user(1, UserMsg::Unit);
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::default());
    a.write_all(&expected_frame(&env)).await.unwrap();
    drop(a);
    let first = timeout(STEP, reader.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(ref got)) if *got == env), "{first:?}");
    assert!(timeout(STEP, reader.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn writer_refuses_an_oversized_message_and_stays_usable() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut writer = FramedWrite::new(a, FrameCodec::<UserMsg, ()>::new(256));
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::new(256));
    let err = writer.send(Envelope::user(1, UserMsg::Bytes(vec![0; 1000]))).await.unwrap_err();
    assert!(matches!(err, ProtocolError::FrameTooLarge { max: 256, .. }), "{err:?}");
    let ok = Envelope::user(2, UserMsg::Bytes(vec![1; 100]));
    writer.send(ok.clone()).await.unwrap();
    let got = timeout(STEP, reader.next()).await.unwrap();
    assert!(matches!(got, Some(Ok(ref env)) if *env == ok), "{got:?}");
}
