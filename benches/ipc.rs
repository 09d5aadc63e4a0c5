//! IPC benchmark: corral's worker → primary throughput and primary → worker → primary round
//! trip, side by side with Node.js cluster's `process.send` (json and advanced serialization)
//! in the same run.
//!
//! ```text
//! cargo bench --bench ipc                 # the whole matrix, 5 repetitions, medians
//! BENCH_REPS=3 cargo bench --bench ipc    # fewer repetitions
//! ```
//!
//! Every measurement runs in a fresh process (this binary re-executes itself with
//! `--child-mode`, or runs `node benches/node/ipc_bench.js`), unpinned and pinned to one core
//! with `taskset -c 0` (the workers inherit the affinity). The message is the same logical
//! content on both sides: a u64 sequence number and a 64-byte string. Start-up is excluded.
//! Results print as a table of medians with ratios; BENCHMARKS.md records them.
//!
//! For profiling one side, run a single measurement with more messages:
//! `BENCH_IPC_COUNT=2000000 perf record -- target/release/deps/ipc-… --child-mode throughput`.

use std::process::Command;

use corral::ClusterConfig;

mod support;
use support::env::env_u64;
use support::ipc::{BenchWorker, PAYLOAD, flood, round_trips, until_ready};
use support::json_line;
use support::process::node;
use support::stats::{percentile, upper_median};

const THROUGHPUT_COUNT: u64 = 200_000;
const THROUGHPUT_WARMUP: u64 = 10_000;
const RTT_COUNT: u64 = 20_000;
const RTT_WARMUP: u64 = 2_000;

/// One measurement in this process: prints one JSON line.
fn child(mode: &str) -> Result<(), corral::Error> {
    let mode = mode.to_string();
    let config = ClusterConfig::default().workers(1);
    corral::run_primary::<<BenchWorker as corral::Worker>::Msg, <BenchWorker as corral::Worker>::Report, _, _>(
        config,
        move |cluster, mut events| async move {
            until_ready(&mut events).await?;
            let line = match mode.as_str() {
                "throughput" => {
                    let count = env_u64("BENCH_IPC_COUNT", THROUGHPUT_COUNT).max(1);
                    let elapsed = flood(&cluster, &mut events, THROUGHPUT_WARMUP, count).await?.elapsed_s;
                    format!(
                        r#"{{"impl":"corral","mode":"throughput","count":{count},"payload":{PAYLOAD},"msgs_per_sec":{:.0},"elapsed_s":{elapsed:.4}}}"#,
                        count as f64 / elapsed
                    )
                }
                _ => {
                    let mut samples = round_trips(&cluster, &mut events, RTT_WARMUP, RTT_COUNT).await?;
                    samples.sort_by(f64::total_cmp);
                    let pct = |p: f64| percentile(&samples, p);
                    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
                    format!(
                        r#"{{"impl":"corral","mode":"rtt","count":{RTT_COUNT},"payload":{PAYLOAD},"p50_us":{:.2},"p90_us":{:.2},"p99_us":{:.2},"max_us":{:.2},"mean_us":{mean:.2}}}"#,
                        pct(50.0),
                        pct(90.0),
                        pct(99.0),
                        samples[samples.len() - 1]
                    )
                }
            };
            println!("{line}");
            Ok(())
        },
    )
}

/// Runs one measurement in a fresh process and returns its JSON line.
fn measure(program: &str, args: &[&str], pinned: bool) -> Option<serde_json::Value> {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).env_remove("NODE_EXTRA_CA_CERTS").env("RUST_LOG", "off");
    json_line::run(&mut cmd)
}

fn main() -> Result<(), corral::Error> {
    corral::run_if_worker(BenchWorker);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-mode") {
        return child(args.get(i + 1).map_or("rtt", String::as_str));
    }
    let reps = env_u64("BENCH_REPS", 5) as usize;
    let exe = std::env::current_exe().map_err(corral::Error::Setup)?;
    let exe = exe.to_string_lossy().to_string();
    let node_script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/ipc_bench.js");
    let has_node = node().arg("--version").output().is_ok_and(|o| o.status.success());

    let impls: Vec<(&str, Vec<String>)> = {
        let mut v = vec![("corral", vec![exe.clone(), "--child-mode".into()])];
        if has_node {
            for ser in ["json", "advanced"] {
                let name = if ser == "json" { "node json" } else { "node advanced" };
                v.push((
                    name,
                    vec!["node".into(), node_script.into(), "--serialization".into(), ser.into(), "--mode".into()],
                ));
            }
        } else {
            eprintln!("node not found: measuring corral only");
        }
        v
    };
    println!("IPC benchmark: {reps} repetitions, medians (64-byte payload)");
    for pinned in [false, true] {
        let label = if pinned { "pinned to one core (taskset -c 0)" } else { "unpinned" };
        println!("\n## {label}");
        println!("{:<15} {:>14} {:>10} {:>10} {:>10}", "impl", "msgs/s", "rtt p50", "rtt p90", "rtt p99");
        let mut corral_tp = f64::NAN;
        let mut corral_p50 = f64::NAN;
        for (name, base) in &impls {
            let (mut tp, mut p50, mut p90, mut p99) = (vec![], vec![], vec![], vec![]);
            for _ in 0..reps {
                for mode in ["throughput", "rtt"] {
                    let mut a: Vec<&str> = base[1..].iter().map(String::as_str).collect();
                    a.push(mode);
                    if let Some(j) = measure(&base[0], &a, pinned) {
                        if mode == "throughput" {
                            tp.push(j["msgs_per_sec"].as_f64().unwrap_or(f64::NAN));
                        } else {
                            p50.push(j["p50_us"].as_f64().unwrap_or(f64::NAN));
                            p90.push(j["p90_us"].as_f64().unwrap_or(f64::NAN));
                            p99.push(j["p99_us"].as_f64().unwrap_or(f64::NAN));
                        }
                    }
                }
            }
            let (tp, p50, p90, p99) = (upper_median(tp), upper_median(p50), upper_median(p90), upper_median(p99));
            let ratio = if *name == "corral" {
                corral_tp = tp;
                corral_p50 = p50;
                String::new()
            } else {
                format!("  corral: {:.1}x throughput, {:.2}x rtt p50", corral_tp / tp, corral_p50 / p50)
            };
            println!("{name:<15} {tp:>14.0} {p50:>8.1}µs {p90:>8.1}µs {p99:>8.1}µs{ratio}");
        }
    }
    Ok(())
}
