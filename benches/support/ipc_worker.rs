//! The worker both IPC benchmarks run (`ipc`, `ipc_tracing`): it floods the primary with
//! messages or echoes pings. The message is a u64 sequence number and a [`PAYLOAD`]-byte
//! string, the same logical content as Node's side of `benches/node/ipc_bench.js`.

use corral::{BoxError, Worker, WorkerContext};
use serde::{Deserialize, Serialize};

/// Bytes of string payload per message.
pub const PAYLOAD: usize = 64;

/// What the primary asks of the benchmark worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BenchCmd {
    /// Send `count` messages as fast as possible.
    Flood { count: u64 },
    /// Send this back.
    #[allow(dead_code)] // `ipc_tracing` floods only
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
