//! The writer task, `write_frames`: numbering, flushing, skipping unencodable messages,
//! closing and socket failure.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use common::{STEP, UserMsg};
use corral_protocol::{Body, Control, Envelope, FrameCodec, Outgoing, ProtocolError, TraceContext, write_frames};
use futures_util::StreamExt;
use serde::ser::{Error as _, Serialize, Serializer};
use tokio::io::AsyncWrite;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

fn decode_all<M: serde::de::DeserializeOwned>(bytes: &[u8]) -> Vec<Envelope<M>> {
    let mut codec: FrameCodec<(), M> = FrameCodec::new(u32::MAX as usize);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(env) = codec.decode_eof(&mut buf).unwrap() {
        out.push(env);
    }
    out
}

/// Runs `write_frames` into a `Vec` over the given queue contents, with the queue closed
/// afterwards. Returns the bytes written and how many times `on_user_sent` ran.
async fn write_all_to_vec<M: Serialize>(max: usize, items: Vec<Outgoing<M>>) -> (Vec<u8>, usize) {
    let (tx, rx) = mpsc::channel(items.len().max(1));
    for item in items {
        tx.try_send(item).map_err(|_| ()).unwrap();
    }
    drop(tx);
    let mut sink = Vec::new();
    let mut users = 0;
    let codec: FrameCodec<M, ()> = FrameCodec::new(max);
    timeout(STEP, write_frames(&mut sink, codec, rx, CancellationToken::new(), || users += 1))
        .await
        .expect("write_frames timed out")
        .unwrap();
    (sink, users)
}

#[tokio::test]
async fn frames_are_numbered_from_one_in_queue_order() {
    let trace = TraceContext { trace_id: [3; 16], span_id: [4; 8], flags: 1, tracestate: "x=y".into() };
    let items = vec![
        Outgoing::user(UserMsg::Text("a".into())),
        Outgoing::control(Control::Ready),
        Outgoing { body: Body::User(UserMsg::Num(2)), trace: Some(Box::new(trace.clone())) },
        Outgoing::control(Control::Disconnect),
    ];
    let (bytes, users) = write_all_to_vec(1024, items).await;
    let got: Vec<Envelope<UserMsg>> = decode_all(&bytes);
    assert_eq!(
        got,
        vec![
            Envelope::user(1, UserMsg::Text("a".into())),
            Envelope::control(2, Control::Ready),
            Envelope::user(3, UserMsg::Num(2)).with_trace(Some(trace)),
            Envelope::control(4, Control::Disconnect),
        ]
    );
    assert_eq!(users, 2, "on_user_sent runs for user messages only");
}

#[tokio::test]
async fn empty_queue_writes_nothing_and_returns() {
    let (bytes, users) = write_all_to_vec::<UserMsg>(1024, Vec::new()).await;
    assert!(bytes.is_empty());
    assert_eq!(users, 0);
}

/// A user type whose `Serialize` fails for `None`.
#[derive(Debug)]
struct MaybeFails(Option<u32>);

impl Serialize for MaybeFails {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(n) => serializer.serialize_u32(n),
            None => Err(S::Error::custom("refused")),
        }
    }
}

#[tokio::test]
async fn oversized_and_unencodable_messages_are_skipped() {
    let items = vec![
        Outgoing::user(UserMsg::Num(1)),
        Outgoing::user(UserMsg::Bytes(vec![0; 500])),
        Outgoing::user(UserMsg::Num(3)),
    ];
    let (bytes, users) = write_all_to_vec(64, items).await;
    let got: Vec<Envelope<UserMsg>> = decode_all(&bytes);
    let bodies: Vec<_> = got.iter().map(|e| e.body.clone()).collect();
    assert_eq!(bodies, vec![Body::User(UserMsg::Num(1)), Body::User(UserMsg::Num(3))]);
    assert_eq!(got[0].seq, 1);
    assert!(got[1].seq > got[0].seq);
    assert_eq!(users, 2, "a skipped message is not counted as sent");

    let items = vec![
        Outgoing::user(MaybeFails(Some(10))),
        Outgoing::user(MaybeFails(None)),
        Outgoing::user(MaybeFails(Some(30))),
    ];
    let (bytes, users) = write_all_to_vec(1024, items).await;
    let got: Vec<Envelope<u32>> = decode_all(&bytes);
    let bodies: Vec<_> = got.iter().map(|e| e.body.clone()).collect();
    assert_eq!(bodies, vec![Body::User(10), Body::User(30)]);
    assert_eq!(users, 2);
}

#[tokio::test]
async fn a_lone_message_is_flushed_without_waiting_for_more() {
    let (a, b) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let writer =
        tokio::spawn(write_frames(a, FrameCodec::<UserMsg, ()>::default(), rx, CancellationToken::new(), || {}));
    let mut reader = FramedRead::new(b, FrameCodec::<(), UserMsg>::default());

    tx.send(Outgoing::user(UserMsg::Text("now".into()))).await.unwrap();
    // The queue is still open, yet the frame arrives.
    let first = timeout(STEP, reader.next()).await.expect("frame was not flushed");
    assert!(matches!(first, Some(Ok(ref env)) if *env == Envelope::user(1, UserMsg::Text("now".into()))), "{first:?}");

    tx.send(Outgoing::control(Control::Ready)).await.unwrap();
    let second = timeout(STEP, reader.next()).await.expect("frame was not flushed");
    assert!(matches!(second, Some(Ok(ref env)) if *env == Envelope::control(2, Control::Ready)), "{second:?}");

    drop(tx);
    timeout(STEP, writer).await.expect("writer did not stop").unwrap().unwrap();
    assert!(timeout(STEP, reader.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn close_writes_what_is_queued_then_stops_taking_frames() {
    let (tx, rx) = mpsc::channel(16);
    for i in 0..5 {
        tx.send(Outgoing::user(UserMsg::Num(i))).await.unwrap();
    }
    let close = CancellationToken::new();
    close.cancel();
    let mut sink = Vec::new();
    let codec: FrameCodec<UserMsg, ()> = FrameCodec::default();
    // The sender is still alive: only the token can end the loop.
    timeout(STEP, write_frames(&mut sink, codec, rx, close, || {})).await.expect("close was ignored").unwrap();
    let got: Vec<Envelope<UserMsg>> = decode_all(&sink);
    assert_eq!(got, (0..5).map(|i| Envelope::user(i + 1, UserMsg::Num(i))).collect::<Vec<_>>());
    assert!(tx.send(Outgoing::user(UserMsg::Unit)).await.is_err(), "the queue is closed");
}

#[tokio::test]
async fn close_while_idle_returns() {
    let (tx, rx) = mpsc::channel::<Outgoing<UserMsg>>(4);
    let close = CancellationToken::new();
    let task = tokio::spawn({
        let close = close.clone();
        async move {
            let mut sink = Vec::new();
            write_frames(&mut sink, FrameCodec::<UserMsg, ()>::default(), rx, close, || {}).await.map(|()| sink)
        }
    });
    tokio::task::yield_now().await;
    close.cancel();
    let sink = timeout(STEP, task).await.expect("close was ignored").unwrap().unwrap();
    assert!(sink.is_empty());
    drop(tx);
}

/// An `AsyncWrite` that counts flushes.
struct CountingWriter {
    bytes: Vec<u8>,
    flushes: Arc<AtomicUsize>,
}

impl AsyncWrite for CountingWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_burst_goes_out_in_few_flushes() {
    const N: u64 = 1000;
    let (tx, rx) = mpsc::channel(N as usize);
    for i in 0..N {
        tx.send(Outgoing::user(UserMsg::Num(i))).await.unwrap();
    }
    drop(tx);
    let flushes = Arc::new(AtomicUsize::new(0));
    let mut writer = CountingWriter { bytes: Vec::new(), flushes: flushes.clone() };
    let mut users = 0;
    timeout(
        STEP,
        write_frames(&mut writer, FrameCodec::<UserMsg, ()>::default(), rx, CancellationToken::new(), || users += 1),
    )
    .await
    .unwrap()
    .unwrap();
    let got: Vec<Envelope<UserMsg>> = decode_all(&writer.bytes);
    assert_eq!(got.len(), N as usize);
    for (i, env) in got.iter().enumerate() {
        assert_eq!(*env, Envelope::user(i as u64 + 1, UserMsg::Num(i as u64)));
    }
    assert_eq!(users, N as usize);
    let flushes = flushes.load(Ordering::Relaxed);
    assert!((1..=8).contains(&flushes), "{flushes} flushes for a burst of {N}");
}

#[tokio::test]
async fn socket_failure_ends_the_loop_with_an_io_error() {
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let (tx, rx) = mpsc::channel(4);
    tx.send(Outgoing::user(UserMsg::Text("into the void".into()))).await.unwrap();
    let result =
        timeout(STEP, write_frames(a, FrameCodec::<UserMsg, ()>::default(), rx, CancellationToken::new(), || {}))
            .await
            .expect("write_frames did not notice the closed socket");
    assert!(matches!(result, Err(ProtocolError::Io(ref e)) if e.kind() == io::ErrorKind::BrokenPipe), "{result:?}");
    drop(tx);
}
