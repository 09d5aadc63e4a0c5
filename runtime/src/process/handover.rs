//! Handing a running process over to the primary's next image (an upgrade), and taking one
//! over in that image.
//!
//! Handing over stops the process's tasks **at a boundary** — the reader between two frames
//! (what it read of the next one travels along), the writer with its queue flushed, the output
//! readers between two lines — and gives back every fd they held, without signalling or
//! reaping the process. The fds cross the `execve` open; the next image builds the same tasks
//! on them ([`adopt`](super::adopt)) and the worker never notices.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::events::OutputStream;

/// What one of a process's tasks gives back when it is handed over.
pub(crate) enum Part {
    /// The frame reader: its half of the IPC stream and the bytes it read of a next frame.
    Reader { read: OwnedReadHalf, leftover: Vec<u8> },
    /// The frame writer, its queue written out.
    Writer { write: OwnedWriteHalf },
    /// The waiter: the `Child`, not reaped (it must never be dropped: it would kill).
    Waiter { child: Option<Child> },
    /// An output reader: the pipe and the start of a line not yet ended.
    Output { stream: OutputStream, pipe: OwnedFd, leftover: Vec<u8> },
    /// A foreign worker's notify socket.
    Notify { socket: std::os::unix::net::UnixDatagram },
}

/// The tasks' side: where each gives back its part when `token` is cancelled.
#[derive(Clone)]
pub(crate) struct Giver {
    pub token: CancellationToken,
    tx: mpsc::UnboundedSender<Part>,
}

impl Giver {
    pub(crate) fn give(&self, part: Part) {
        // The receiver is gone only when nobody hands the process over: the part is then
        // dropped with the task, as it would be without a handover.
        let _ = self.tx.send(part);
    }
}

/// The slot's side: asks the tasks for their parts and collects them.
pub(crate) struct Taker {
    token: CancellationToken,
    rx: Option<mpsc::UnboundedReceiver<Part>>,
}

/// A pair: the tasks get the [`Giver`] (cloned), the process keeps the [`Taker`].
pub(crate) fn pair() -> (Giver, Taker) {
    let token = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    (Giver { token: token.clone(), tx }, Taker { token, rx: Some(rx) })
}

/// Every fd of a handed-over process.
#[derive(Default)]
pub(crate) struct Parts {
    /// A corral worker's IPC stream and the start of an unread frame.
    pub ipc: Option<(std::os::unix::net::UnixStream, Vec<u8>)>,
    pub stdout: Option<(OwnedFd, Vec<u8>)>,
    pub stderr: Option<(OwnedFd, Vec<u8>)>,
    pub notify: Option<std::os::unix::net::UnixDatagram>,
    /// Kept, never dropped, until the image is replaced.
    pub child: Option<Child>,
    /// Whether the waiter gave its part (the process has not been reaped).
    pub waited: bool,
}

impl Taker {
    /// Stops every task at its next boundary and collects what they give back, within
    /// `patience`. A task that ended before (the process is exiting) gives nothing.
    ///
    /// # Errors
    ///
    /// `TimedOut` when a task did not reach a boundary in time (e.g. a writer blocked on a
    /// worker that reads nothing); `Other` when the IPC halves cannot be put together.
    pub(crate) async fn take(&mut self, patience: Duration) -> io::Result<Parts> {
        self.token.cancel();
        let Some(mut rx) = self.rx.take() else {
            return Err(io::Error::other("handed over already"));
        };
        let mut parts = Parts::default();
        let (mut read, mut write, mut leftover) = (None, None, Vec::new());
        let collect = async {
            while let Some(part) = rx.recv().await {
                match part {
                    Part::Reader { read: r, leftover: l } => (read, leftover) = (Some(r), l),
                    Part::Writer { write: w } => write = Some(w),
                    Part::Waiter { child } => {
                        parts.waited = true;
                        parts.child = child;
                    }
                    Part::Output { stream: OutputStream::Stdout, pipe, leftover } => {
                        parts.stdout = Some((pipe, leftover))
                    }
                    Part::Output { stream: OutputStream::Stderr, pipe, leftover } => {
                        parts.stderr = Some((pipe, leftover))
                    }
                    Part::Notify { socket } => parts.notify = Some(socket),
                }
            }
        };
        tokio::time::timeout(patience, collect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a task of the process did not stop in time"))?;
        if let (Some(read), Some(write)) = (read, write) {
            let stream = read.reunite(write).map_err(|_| io::Error::other("IPC halves of two streams"))?;
            parts.ipc = Some((stream.into_std()?, leftover));
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    //! A process handed over and taken over again (as the next image does, here without the
    //! exec) while frames flow both ways: every message arrives once, in order.

    use std::sync::Arc;
    use std::time::Duration;

    use corral_protocol::{Body, Envelope, FrameCodec, Outgoing, seqpacket_pair, stream_pair};
    use futures_util::{SinkExt, StreamExt};
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use tokio_util::codec::{FramedRead, FramedWrite};

    use crate::api::events::ClusterEvent;
    use crate::api::events::bus::EventBus;
    use crate::process::{AdoptChannel, AdoptSpec, ProcessEvent, SlotCounters, adopt};

    /// Takes the process events and drops them (the slot's part is not under test).
    struct Sink;

    impl Actor for Sink {
        type Msg = ProcessEvent;
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<ProcessEvent>, (): ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    const N: u64 = 20_000;

    #[tokio::test(flavor = "current_thread")]
    async fn frames_cross_a_handover_once_and_in_order() {
        // A real child to stand for the worker's pid (the waiter watches it).
        let mut stand_in = tokio::process::Command::new("sleep").arg("30").kill_on_drop(true).spawn().expect("sleep");
        let pid = stand_in.id().expect("pid");
        let ipc = stream_pair().expect("stream pair");
        let handles = seqpacket_pair().expect("seqpacket pair");
        let config = crate::config::cluster::ClusterConfig::default();
        let (sink, _) = Actor::spawn(None, Sink, ()).await.expect("sink");
        let bus = Arc::new(EventBus::<u64>::new(N as usize * 2));
        let mut events = bus.subscribe();
        let counters = Arc::new(SlotCounters::default());

        // The worker's side: N messages up, and reads whatever comes down.
        let worker = std::os::unix::net::UnixStream::from(ipc.worker);
        worker.set_nonblocking(true).expect("nonblocking");
        let worker = tokio::net::UnixStream::from_std(worker).expect("tokio stream");
        let (worker_read, worker_write) = worker.into_split();
        let up = tokio::spawn(async move {
            let mut frames = FramedWrite::new(worker_write, FrameCodec::<u64, u64>::new(1 << 16));
            for n in 0..N {
                frames.send(Envelope { seq: n + 1, trace: None, body: Body::User(n) }).await.expect("send up");
                if n % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            frames
        });
        let down = tokio::spawn(async move {
            let mut frames = FramedRead::new(worker_read, FrameCodec::<u64, u64>::new(1 << 16));
            let mut got = Vec::new();
            while got.len() < N as usize {
                match tokio::time::timeout(Duration::from_secs(20), frames.next()).await {
                    Ok(Some(Ok(Envelope { body: Body::User(n), .. }))) => got.push(n),
                    Ok(Some(Ok(_))) => {}
                    other => panic!("down: {other:?} after {}", got.len()),
                }
            }
            got
        });

        let spec = |ipc, leftover, handles, handles_sent| AdoptSpec {
            slot: 0,
            generation: 1,
            pid,
            channel: AdoptChannel::Corral { ipc, leftover, handles, handles_sent },
            stdout: None,
            stderr: None,
        };
        let routes = Arc::new(crate::routing::messages::Routes::<u64>::new(1));
        let (mut process, io) =
            adopt::<u64>(spec(ipc.primary, Vec::new(), handles.primary, 0), &config).expect("adopt");
        io.run(sink.get_derived(), &bus, &counters, &routes);
        let mut sent = 0;
        let mut hand_overs = 0;
        let mut received = Vec::new();
        while received.len() < N as usize {
            // Messages down, while the worker's flow up.
            while sent < N && process.tx.try_send(Outgoing::user(sent)).is_ok() {
                sent += 1;
            }
            match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
                Ok(Some(ClusterEvent::Message { message, .. })) => received.push(message),
                Ok(Some(_)) => {}
                other => panic!("up: {other:?} after {}", received.len()),
            }
            // Three handovers in the middle of the flow.
            if received.len() % 5000 == 2500 && hand_overs < 3 {
                hand_overs += 1;
                // One datagram on the handle channel before each handover: the numbering
                // goes on in the next image, as the worker's acknowledgements count.
                let channel = process.handles.clone().expect("a handle channel");
                let null = std::fs::File::open("/dev/null").expect("/dev/null");
                let header = corral_protocol::HandleHeader {
                    id: 1,
                    kind: corral_protocol::HandleKind::Listener { addr: "x".into() },
                    trace: None,
                };
                let seq = channel.send_counted(&header, std::os::fd::AsFd::as_fd(&null)).await.expect("datagram");
                assert_eq!(seq, hand_overs - 1, "numbered on from the previous image");
                drop(channel);
                let handed = process.hand_over(Duration::from_secs(5)).await.expect("hand over");
                assert_eq!(handed.handles_sent, hand_overs);
                let mut parts = handed.parts;
                let (ipc, leftover) = parts.ipc.take().expect("the IPC stream");
                std::mem::forget(parts.child.take());
                let handles = handed.handles.expect("the handle channel");
                let (next, io) = adopt::<u64>(spec(ipc.into(), leftover, handles, handed.handles_sent), &config)
                    .expect("adopt again");
                io.run(sink.get_derived(), &bus, &counters, &routes);
                process = next;
            }
        }
        while sent < N {
            if process.tx.send(Outgoing::user(sent)).await.is_ok() {
                sent += 1;
            }
        }
        assert_eq!(hand_overs, 3);
        assert_eq!(received, (0..N).collect::<Vec<_>>(), "worker → primary: each once, in order");
        let down = tokio::time::timeout(Duration::from_secs(20), down).await.expect("down in time").expect("down");
        assert_eq!(down, (0..N).collect::<Vec<_>>(), "primary → worker: each once, in order");
        drop(up.await.expect("up"));
        let _ = stand_in.start_kill();
        sink.stop(None);
    }
}
