//! What both IPC benchmarks share (`ipc`, `ipc_tracing`): the worker, which floods the
//! primary with messages or echoes pings, and the primary's side of both: the flood's and
//! the round-trip loop. The message is a
//! u64 sequence number and a [`PAYLOAD`]-byte string, the same logical content as Node's side
//! of `benches/node/ipc_bench.js`.

use std::time::{Duration, Instant};

use corral::events::EventStream;
use corral::{BoxError, ClusterEvent, ClusterHandle, Worker, WorkerContext};
use serde::{Deserialize, Serialize};

/// Bytes of string payload per message.
pub const PAYLOAD: usize = 64;

/// What the primary asks of the benchmark worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BenchCmd {
    /// Send `count` messages as fast as possible.
    Flood { count: u64 },
    /// Send this back.
    Ping { seq: u64, data: String },
}

/// One benchmark message, worker → primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchMsg {
    pub seq: u64,
    pub data: String,
}

/// The benchmark worker.
pub struct BenchWorker;

impl Worker for BenchWorker {
    type Msg = BenchCmd;
    type Report = BenchMsg;
    type State = ();

    async fn start(&self, _: &WorkerContext<BenchMsg>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle(&self, cx: &WorkerContext<BenchMsg>, cmd: BenchCmd, _: &mut ()) -> Result<(), BoxError> {
        match cmd {
            BenchCmd::Flood { count } => {
                let data = "x".repeat(PAYLOAD);
                for seq in 0..count {
                    cx.report(BenchMsg { seq, data: data.clone() }).await?;
                }
            }
            BenchCmd::Ping { seq, data } => cx.report(BenchMsg { seq, data }).await?,
        }
        Ok(())
    }
}

/// Waits for the worker to be ready.
pub async fn until_ready(events: &mut EventStream<BenchMsg>) -> Result<(), BoxError> {
    loop {
        match events.recv().await {
            Some(ClusterEvent::Ready { .. }) => return Ok(()),
            Some(_) => {}
            None => return Err("cluster stopped before ready".into()),
        }
    }
}

/// What [`flood`] measured.
pub struct Flood {
    /// From the arrival of the last warm-up message to that of the last message, in seconds.
    pub elapsed_s: f64,
    /// Messages (warm-up included) that arrived with a recorded span.
    pub traced: u64,
}

/// Asks the worker for `warmup + count` messages, sent as fast as it can, and times the
/// arrival of the last `count`.
pub async fn flood(
    cluster: &ClusterHandle<BenchCmd, BenchMsg>,
    events: &mut EventStream<BenchMsg>,
    warmup: u64,
    count: u64,
) -> Result<Flood, BoxError> {
    cluster.send_to(0, BenchCmd::Flood { count: warmup + count }).await?;
    let mut start = None;
    let last = warmup + count - 1;
    let mut traced = 0u64;
    loop {
        match events.recv().await {
            Some(ClusterEvent::Message { message, span, .. }) => {
                traced += u64::from(!span.is_disabled());
                if message.seq + 1 == warmup {
                    start = Some(Instant::now());
                }
                if message.seq == last {
                    break;
                }
            }
            Some(_) => {}
            None => return Err("cluster stopped".into()),
        }
    }
    Ok(Flood { elapsed_s: start.map_or(Duration::ZERO, |s| s.elapsed()).as_secs_f64(), traced })
}

/// `warmup + count` round trips primary → worker → primary, one in flight; returns the last
/// `count` round-trip times in µs, in order.
pub async fn round_trips(
    cluster: &ClusterHandle<BenchCmd, BenchMsg>,
    events: &mut EventStream<BenchMsg>,
    warmup: u64,
    count: u64,
) -> Result<Vec<f64>, BoxError> {
    let data = "x".repeat(PAYLOAD);
    let mut samples = Vec::with_capacity(count as usize);
    for seq in 0..warmup + count {
        let t = Instant::now();
        cluster.send_to(0, BenchCmd::Ping { seq, data: data.clone() }).await?;
        loop {
            match events.recv().await {
                Some(ClusterEvent::Message { message, .. }) if message.seq == seq => break,
                Some(_) => {}
                None => return Err("cluster stopped".into()),
            }
        }
        if seq >= warmup {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(samples)
}
