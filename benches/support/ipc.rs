//! What both IPC benchmarks share (`ipc`, `ipc_tracing`): the worker, which floods the
//! primary with messages or echoes pings, and the primary's round-trip loop. The message is a
//! u64 sequence number and a [`PAYLOAD`]-byte string, the same logical content as Node's side
//! of `benches/node/ipc_bench.js`.

use std::time::Instant;

use corral::{BoxError, ClusterEvent, ClusterHandle, EventStream, Worker, WorkerContext};
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

/// The median (upper middle for an even count); NaN for no samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
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
