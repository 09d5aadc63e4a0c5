//! CPU pool benchmark: the round trip of an empty task through corral's `CpuPool` from a
//! single-threaded tokio runtime (a worker's), side by side with Node.js `worker_threads`
//! (`postMessage` ping-pong with one Worker) in the same run, and the throughput of a fixed
//! CPU task (~1 ms of hashing) with 1 and 2 pool threads.
//!
//! ```text
//! cargo bench --bench cpu_pool                 # 5 repetitions, medians
//! BENCH_REPS=3 cargo bench --bench cpu_pool    # fewer repetitions
//! ```
//!
//! Every repetition builds a fresh runtime and a fresh pool (start-up excluded). Round trips:
//! 2,000 warm-up then 20,000 timed, one task in flight, percentiles nearest-rank; with the
//! default config (the caller spins up to 20 µs before parking its runtime) and with
//! `spin(Duration::ZERO)`. For reference the table also shows tokio's `spawn_blocking` round
//! trip (what the pool avoids: its threads are shared with tokio's blocking I/O and come and
//! go). Throughput: 400 tasks
//! queued as fast as backpressure allows (queue of 64), timed until the last result; the
//! "inline" row runs the same tasks on the calling thread. Node runs as
//! `node benches/node/worker_threads_bench.js` in its own process, with `NODE_EXTRA_CA_CERTS`
//! removed. Results print as a table of medians; BENCHMARKS.md records them.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use corral_workers::{CpuPool, CpuPoolConfig, CpuPoolHandle};

mod support;
use support::env::env_u64;
use support::json_line;
use support::process::node;
use support::stats::{percentile, upper_median};

const RTT_COUNT: usize = 20_000;
const RTT_WARMUP: usize = 2_000;
const TP_TASKS: usize = 400;
const TP_QUEUE: usize = 64;
/// The CPU task's target duration.
const TASK_TIME: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
struct Rtt {
    p50: f64,
    p90: f64,
    p99: f64,
}

fn runtime() -> tokio::runtime::Runtime {
    // A worker's runtime: single-threaded, with the I/O and time drivers.
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build the tokio runtime: {e}"),
    }
}

fn percentiles(mut samples: Vec<f64>) -> Rtt {
    samples.sort_by(f64::total_cmp);
    Rtt { p50: percentile(&samples, 50.0), p90: percentile(&samples, 90.0), p99: percentile(&samples, 99.0) }
}

async fn start(config: CpuPoolConfig) -> CpuPoolHandle {
    match CpuPool::start(config).await {
        Ok((pool, _actor)) => pool,
        Err(e) => panic!("cannot start the pool: {e}"),
    }
}

/// Empty-task round trips through a pool of `threads`: `run` (waits for room) or `try_run`,
/// with the default spin or none.
fn pool_rtt(threads: usize, try_run: bool, spin: bool) -> Rtt {
    let mut config = CpuPoolConfig::default().threads(threads);
    if !spin {
        config = config.spin(Duration::ZERO);
    }
    runtime().block_on(async {
        let pool = start(config).await;
        let mut samples = Vec::with_capacity(RTT_COUNT);
        for i in 0..RTT_WARMUP + RTT_COUNT {
            let t = Instant::now();
            let r = if try_run {
                match pool.try_run(|| ()) {
                    Ok(task) => task.await,
                    Err(e) => Err(e),
                }
            } else {
                pool.run(|| ()).await
            };
            let elapsed = t.elapsed();
            if let Err(e) = r {
                panic!("task failed: {e}");
            }
            if i >= RTT_WARMUP {
                samples.push(elapsed.as_secs_f64() * 1e6);
            }
        }
        pool.stop().await;
        percentiles(samples)
    })
}

/// Empty-task round trips through tokio's `spawn_blocking`, for reference.
fn spawn_blocking_rtt() -> Rtt {
    runtime().block_on(async {
        let mut samples = Vec::with_capacity(RTT_COUNT);
        for i in 0..RTT_WARMUP + RTT_COUNT {
            let t = Instant::now();
            let r = tokio::task::spawn_blocking(|| ()).await;
            let elapsed = t.elapsed();
            if let Err(e) = r {
                panic!("task failed: {e}");
            }
            if i >= RTT_WARMUP {
                samples.push(elapsed.as_secs_f64() * 1e6);
            }
        }
        percentiles(samples)
    })
}

/// The CPU task: `rounds` rounds of SipHash over a 1 KiB buffer.
fn cpu_task(rounds: u64) -> u64 {
    let buf = [0x5au8; 1024];
    let mut h = DefaultHasher::new();
    for i in 0..rounds {
        i.hash(&mut h);
        buf.hash(&mut h);
    }
    h.finish()
}

/// Rounds of [`cpu_task`] that take about [`TASK_TIME`] here.
fn calibrate() -> u64 {
    let mut rounds = 16u64;
    loop {
        let t = Instant::now();
        std::hint::black_box(cpu_task(std::hint::black_box(rounds)));
        let elapsed = t.elapsed();
        if elapsed >= Duration::from_millis(20) {
            return (rounds as f64 * TASK_TIME.as_secs_f64() / elapsed.as_secs_f64()).max(1.0) as u64;
        }
        rounds *= 2;
    }
}

/// Tasks per second through a pool of `threads`, or on the calling thread with `None`.
fn throughput(threads: Option<usize>, rounds: u64) -> f64 {
    let Some(threads) = threads else {
        let t = Instant::now();
        for _ in 0..TP_TASKS {
            std::hint::black_box(cpu_task(std::hint::black_box(rounds)));
        }
        return TP_TASKS as f64 / t.elapsed().as_secs_f64();
    };
    runtime().block_on(async {
        let pool = start(CpuPoolConfig::default().threads(threads).queue_capacity(TP_QUEUE)).await;
        // Warm the threads up.
        for _ in 0..threads * 2 {
            let _ = pool.run(move || cpu_task(rounds)).await;
        }
        let t = Instant::now();
        let mut tasks = Vec::with_capacity(TP_TASKS);
        for _ in 0..TP_TASKS {
            match pool.submit(move || cpu_task(rounds)).await {
                Ok(task) => tasks.push(task),
                Err(e) => panic!("submit failed: {e}"),
            }
        }
        for task in tasks {
            if let Err(e) = task.await {
                panic!("task failed: {e}");
            }
        }
        let rate = TP_TASKS as f64 / t.elapsed().as_secs_f64();
        pool.stop().await;
        rate
    })
}

/// One run of the Node baseline, or `None` when node is missing or failed.
fn node_rtt() -> Option<Rtt> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/worker_threads_bench.js");
    let json =
        json_line::run(node().args([script, "--count", &RTT_COUNT.to_string(), "--warmup", &RTT_WARMUP.to_string()]))?;
    Some(Rtt { p50: json["p50_us"].as_f64()?, p90: json["p90_us"].as_f64()?, p99: json["p99_us"].as_f64()? })
}

fn median_rtt(runs: &[Rtt]) -> Rtt {
    Rtt {
        p50: upper_median(runs.iter().map(|r| r.p50).collect()),
        p90: upper_median(runs.iter().map(|r| r.p90).collect()),
        p99: upper_median(runs.iter().map(|r| r.p99).collect()),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let reps = env_u64("BENCH_REPS", 5).max(1) as usize;
    let has_node = node().arg("--version").output().is_ok_and(|o| o.status.success());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("CpuPool benchmark: {reps} repetitions, medians ({cores} cores)");

    type RttCase = (&'static str, Box<dyn Fn() -> Option<Rtt>>);
    let cases: Vec<RttCase> = vec![
        ("corral run, 1 thread", Box::new(|| Some(pool_rtt(1, false, true)))),
        ("corral run, 2 threads", Box::new(|| Some(pool_rtt(2, false, true)))),
        ("corral try_run, 1 thread", Box::new(|| Some(pool_rtt(1, true, true)))),
        ("corral run, no spin", Box::new(|| Some(pool_rtt(1, false, false)))),
        ("tokio spawn_blocking", Box::new(|| Some(spawn_blocking_rtt()))),
        ("node worker_threads", Box::new(move || if has_node { node_rtt() } else { None })),
    ];
    const NODE: usize = 5;
    let mut runs: Vec<Vec<Rtt>> = vec![Vec::new(); cases.len()];
    // Interleave the cases so that drift on the machine hits all of them alike.
    for _ in 0..reps {
        for (i, (_, case)) in cases.iter().enumerate() {
            if let Some(r) = case() {
                runs[i].push(r);
            }
        }
    }
    if !has_node {
        eprintln!("node not found: no worker_threads baseline");
    }
    let node = (!runs[NODE].is_empty()).then(|| median_rtt(&runs[NODE]));
    println!("\n## Round trip of an empty task (µs), from a current_thread runtime");
    println!("{:<26} {:>9} {:>9} {:>9}  vs node p50", "impl", "p50", "p90", "p99");
    for (i, (name, _)) in cases.iter().enumerate() {
        if runs[i].is_empty() {
            continue;
        }
        let r = median_rtt(&runs[i]);
        let vs = match node {
            Some(n) if i != NODE => format!("  {:.1}x faster", n.p50 / r.p50),
            _ => String::new(),
        };
        println!("{name:<26} {:>9.2} {:>9.2} {:>9.2}{vs}", r.p50, r.p90, r.p99);
    }

    let rounds = calibrate();
    let task_ms = {
        let t = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(cpu_task(std::hint::black_box(rounds)));
        }
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    };
    let mut tp: Vec<(&str, Option<usize>, Vec<f64>)> = vec![
        ("inline (no pool)", None, vec![]),
        ("corral, 1 thread", Some(1), vec![]),
        ("corral, 2 threads", Some(2), vec![]),
    ];
    for _ in 0..reps {
        for (_, threads, v) in tp.iter_mut() {
            v.push(throughput(*threads, rounds));
        }
    }
    println!("\n## Throughput of a CPU task ({task_ms:.2} ms of SipHash), {TP_TASKS} tasks, queue {TP_QUEUE}");
    println!("{:<26} {:>10}  {:>8}", "impl", "tasks/s", "speed-up");
    let base = upper_median(tp[1].2.clone());
    for (name, _, v) in tp {
        let m = upper_median(v);
        println!("{name:<26} {m:>10.0}  {:>7.2}x", m / base);
    }
}
