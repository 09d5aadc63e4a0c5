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
//! Beside them, the kernel's floor for the round trip: two processes echoing 80 bytes over a
//! socketpair with blocking `read`/`write`, no runtime at all.
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

/// The kernel's floor for a round trip, with no runtime at all: a forked child echoes
/// [`FLOOR_BYTES`] bytes over a socketpair with blocking `read`/`write`, and the parent times
/// `RTT_WARMUP + RTT_COUNT` round trips. Prints one JSON line (`impl` "floor").
fn kernel_floor() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    let (mut parent, mut child) = UnixStream::pair().expect("socketpair");
    // SAFETY: this process is single-threaded here (the bench re-executed itself for this
    // mode and started no runtime), so the child may run any code after `fork`.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            drop(parent);
            let mut buf = [0u8; FLOOR_BYTES];
            while child.read_exact(&mut buf).is_ok() {
                if child.write_all(&buf).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child: pid } => {
            drop(child);
            let mut buf = [7u8; FLOOR_BYTES];
            let mut samples = Vec::with_capacity(RTT_COUNT as usize);
            for i in 0..RTT_WARMUP + RTT_COUNT {
                let t = std::time::Instant::now();
                parent.write_all(&buf).expect("write");
                parent.read_exact(&mut buf).expect("read");
                if i >= RTT_WARMUP {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            drop(parent);
            let _ = nix::sys::wait::waitpid(pid, None);
            samples.sort_by(f64::total_cmp);
            let pct = |p: f64| percentile(&samples, p);
            println!(
                r#"{{"impl":"floor","mode":"rtt","count":{RTT_COUNT},"payload":{FLOOR_BYTES},"p50_us":{:.2},"p90_us":{:.2},"p99_us":{:.2}}}"#,
                pct(50.0),
                pct(90.0),
                pct(99.0)
            );
        }
    }
}

/// Bytes of the floor's round trip: about one corral frame of the benchmark message.
const FLOOR_BYTES: usize = 80;

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
    if args.iter().any(|a| a == "--kernel-floor") {
        kernel_floor();
        return Ok(());
    }
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
        // The round trip with no runtime at all (its "throughput" run measures nothing).
        v.push(("kernel floor", vec![exe.clone(), "--kernel-floor".into()]));
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
                    if *name == "kernel floor" && mode == "throughput" {
                        continue;
                    }
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
            } else if *name == "kernel floor" {
                format!("  corral: {:.2}x the floor's rtt p50", corral_p50 / p50)
            } else {
                format!("  corral: {:.1}x throughput, {:.2}x rtt p50", corral_tp / tp, corral_p50 / p50)
            };
            let tp = if tp.is_finite() { format!("{tp:.0}") } else { "n/a".to_owned() };
            println!("{name:<15} {tp:>14} {p50:>8.1}µs {p90:>8.1}µs {p99:>8.1}µs{ratio}");
        }
    }
    Ok(())
}
