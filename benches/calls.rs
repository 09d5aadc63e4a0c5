//! Typed request/response benchmark: a call's round trip (one at a time) beside the same
//! round trip built by hand from a message and a report, and calls per second with many in
//! flight.
//!
//! ```text
//! cargo bench --bench calls                # 5 repetitions, medians
//! BENCH_REPS=3 cargo bench --bench calls
//! ```
//!
//! Every repetition runs in a fresh process (this binary re-executes itself with
//! `--child-mode`), one worker, unpinned. The request and the reply carry a u64 and a 64-byte
//! string, as the IPC benchmark's messages. Start-up is excluded.

use std::process::Command;
use std::time::{Duration, Instant};

use corral::worker::ReplyTo;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::{Deserialize, Serialize};

mod support;
use support::env::env_u64;
use support::json_line;
use support::stats::{percentile, upper_median};

const PAYLOAD: usize = 64;
const SEQUENTIAL: u64 = 20_000;
const WARMUP: u64 = 2_000;
const CONCURRENT: u64 = 200_000;
const IN_FLIGHT: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cmd {
    /// A call: reply with the same.
    Echo(u64, String, ReplyTo<(u64, String)>),
    /// The hand-built round trip: report it back.
    Ping(u64, String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pong(u64, String);

struct Echo;

impl Worker for Echo {
    type Msg = Cmd;
    type Report = Pong;
    type State = ();

    async fn start(&self, _: &WorkerContext<Pong>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle(&self, cx: &WorkerContext<Pong>, cmd: Cmd, _: &mut ()) -> Result<(), BoxError> {
        match cmd {
            Cmd::Echo(n, data, reply) => reply.send((n, data)).await?,
            Cmd::Ping(n, data) => cx.report(Pong(n, data)).await?,
        }
        Ok(())
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One repetition in this process: prints one JSON line.
fn child() -> Result<(), corral::Error> {
    // `run_if_worker` in `main` already took the worker's branch: this is the primary.
    corral::run_primary::<Cmd, Pong, _, _>(ClusterConfig::default().workers(1), |cluster, mut events| async move {
        loop {
            match events.recv().await {
                Some(ClusterEvent::Ready { .. }) => break,
                Some(_) => {}
                None => return Err("cluster stopped before ready".into()),
            }
        }
        let data = "x".repeat(PAYLOAD);
        // Calls, one at a time.
        let mut call_us = Vec::with_capacity(SEQUENTIAL as usize);
        for n in 0..WARMUP + SEQUENTIAL {
            let start = Instant::now();
            let (back, _) = cluster.call(0, |r| Cmd::Echo(n, data.clone(), r), TIMEOUT).await?;
            if back != n {
                return Err(format!("call {n} answered {back}").into());
            }
            if n >= WARMUP {
                call_us.push(micros(start.elapsed()));
            }
        }
        // The same round trip by hand: a message down, a report up through the event stream.
        let mut hand_us = Vec::with_capacity(SEQUENTIAL as usize);
        for n in 0..WARMUP + SEQUENTIAL {
            let start = Instant::now();
            cluster.send_to(0, Cmd::Ping(n, data.clone())).await?;
            loop {
                match events.recv().await {
                    Some(ClusterEvent::Message { message: Pong(m, _), .. }) if m == n => break,
                    Some(_) => {}
                    None => return Err("cluster stopped".into()),
                }
            }
            if n >= WARMUP {
                hand_us.push(micros(start.elapsed()));
            }
        }
        // Many in flight: IN_FLIGHT tasks, each calling in a loop.
        let start = Instant::now();
        let per_task = CONCURRENT / IN_FLIGHT as u64;
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|t| {
                let (cluster, data) = (cluster.clone(), data.clone());
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let n = t as u64 * per_task + i;
                        let (back, _) = cluster.call(0, |r| Cmd::Echo(n, data.clone(), r), TIMEOUT).await?;
                        if back != n {
                            return Err::<(), BoxError>(format!("call {n} answered {back}").into());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let calls_per_sec = (per_task * IN_FLIGHT as u64) as f64 / start.elapsed().as_secs_f64();
        call_us.sort_by(f64::total_cmp);
        hand_us.sort_by(f64::total_cmp);
        println!(
            r#"{{"call_p50_us":{:.2},"call_p99_us":{:.2},"hand_p50_us":{:.2},"hand_p99_us":{:.2},"calls_per_sec":{calls_per_sec:.0},"pending_after":{}}}"#,
            percentile(&call_us, 50.0),
            percentile(&call_us, 99.0),
            percentile(&hand_us, 50.0),
            percentile(&hand_us, 99.0),
            cluster.pending_calls(),
        );
        cluster.stop().await?;
        Ok(())
    })
}

fn main() -> Result<(), corral::Error> {
    corral::run_if_worker(Echo);
    if std::env::args().any(|a| a == "--child-mode") {
        return child();
    }
    let reps = env_u64("BENCH_REPS", 5);
    let exe = std::env::current_exe().map_err(corral::Error::Setup)?;
    let keys = ["call_p50_us", "call_p99_us", "hand_p50_us", "hand_p99_us", "calls_per_sec"];
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for rep in 0..reps {
        let Some(line) = json_line::run(Command::new(&exe).arg("--child-mode").env("RUST_LOG", "off")) else {
            eprintln!("rep {}: no result", rep + 1);
            continue;
        };
        eprintln!("rep {}: {line}", rep + 1);
        rows.push(keys.iter().map(|k| line[k].as_f64().unwrap_or(f64::NAN)).collect());
    }
    let median = |i: usize| upper_median(rows.iter().map(|r| r[i]).collect());
    println!("typed calls, 1 worker, unpinned, {} repetitions, medians (64-byte payload)", rows.len());
    println!("  call round trip          p50 {:>8.2} µs   p99 {:>8.2} µs", median(0), median(1));
    println!("  send + report, by hand   p50 {:>8.2} µs   p99 {:>8.2} µs", median(2), median(3));
    println!("  call / by hand (p50)     {:.2}", median(0) / median(2));
    println!("  calls per second, {IN_FLIGHT} in flight: {:.0}", median(4));
    Ok(())
}
