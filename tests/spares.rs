//! Warm spares (`ClusterConfig::spares`): ready, idle workers that take a leaving worker's
//! place at once — on a kill, on a recycle — while the slot that lost its worker starts the
//! next spare; a rolling reload replaces the spares too; scaling counts the serving workers.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use corral::ClusterEvent;
use corral::config::Scheduling;
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

/// The pids answering fresh connections (bounded: `n` distinct ones or 200 requests).
async fn serving(addr: std::net::SocketAddr, n: usize) -> HashSet<u32> {
    let mut seen = HashSet::new();
    for _ in 0..200 {
        if seen.len() >= n {
            break;
        }
        if let Ok((200, body)) = http_get(addr, "/").await {
            seen.insert(answered_by(&body).1);
        }
    }
    seen
}

/// The slots holding a spare, and every slot's pid, from the status.
async fn spares_and_pids(cluster: &Handle) -> (Vec<usize>, Vec<Option<u32>>) {
    let status = cluster.status().await.expect("status");
    (status.iter().filter(|w| w.spare).map(|w| w.slot).collect(), status.iter().map(|w| w.pid).collect())
}

async fn a_killed_worker_is_replaced_by_the_spare(scheduling: Scheduling) {
    let (cluster, mut events) = spawn(http_config(2, scheduling).spares(1)).await;
    let addr = events.http_ready(3).await;
    let (spares, pids) = spares_and_pids(&cluster).await;
    assert_eq!(spares, vec![2], "the last slot starts as the spare");
    let spare_pid = pids[2].expect("the spare runs");
    let active: HashSet<u32> = pids[..2].iter().flatten().copied().collect();
    let before = serving(addr, 2).await;
    assert_eq!(before, active, "{scheduling:?}: only the active workers serve, never the spare");

    kill(pids[0].expect("slot 0 runs"), Signal::SIGKILL);
    let took = events.wait_for("the spare takes over", |e| matches!(e, ClusterEvent::SpareTookOver { .. })).await;
    assert!(matches!(took, ClusterEvent::SpareTookOver { slot: 2, replaced: 0 }), "{took:?}");
    let after = serving(addr, 2).await;
    assert!(after.contains(&spare_pid), "{scheduling:?}: the promoted spare serves: {after:?}");
    assert!(!after.contains(&pids[0].unwrap_or_default()), "the killed worker is gone");

    // The slot that lost its worker starts the next spare, which serves nothing.
    let restarted = events
        .wait_for("the next spare ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, generation: 2, .. }))
        .await;
    let ClusterEvent::Ready { pid: next_spare, .. } = restarted else { unreachable!() };
    let (spares, _) = spares_and_pids(&cluster).await;
    assert_eq!(spares, vec![0], "slot 0 holds the spare now");
    for _ in 0..20 {
        let (status, body) = http_get(addr, "/").await.expect("served");
        assert_eq!(status, 200);
        assert_ne!(answered_by(&body).1, next_spare, "the new spare stays idle");
    }
    cluster.stop().await.expect("clean stop");
}

/// The spare takes a killed worker's place as the worker's death begins (its death notice: the
/// kernel releases the robust mutex its event loop holds before it frees anything), not once
/// the kernel has torn it down: with 1 GiB to free, the worker's channel closes (`Disconnect`)
/// long after. Without the notice the slot could only act on that close or on the exit. Its
/// teardown runs under `SCHED_IDLE`, after the living.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spare_takes_over_before_the_killed_worker_is_torn_down() {
    let config = http_config(2, Scheduling::RoundRobin)
        .spares(1)
        .env_var("TESTBED_BALLAST_MB", "1024")
        .env_var("TESTBED_FAULT_SLOT", "0")
        .env_var("TESTBED_FAULT_GEN", "1");
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(3).await;
    let (spares, pids) = spares_and_pids(&cluster).await;
    assert_eq!(spares, vec![2]);
    let victim = pids[0].expect("slot 0 runs");
    let spare_pid = pids[2].expect("the spare runs");

    kill(victim, Signal::SIGKILL);
    let first = events
        .wait_for("the spare takes over, or the killed worker's channel closes", |e| {
            matches!(e, ClusterEvent::SpareTookOver { .. })
                || matches!(e, ClusterEvent::Disconnect { pid, .. } if *pid == victim)
        })
        .await;
    assert!(
        matches!(first, ClusterEvent::SpareTookOver { slot: 2, replaced: 0 }),
        "the spare took over only when the dead worker's channel closed: {first:?}"
    );
    // Its teardown yields to the living: its waiter puts it under SCHED_IDLE as the slot takes
    // it out (it is not reaped yet: freeing 1 GiB takes a while, and only when idle).
    // SAFETY: sched_getscheduler takes a pid and reads nothing of ours.
    let policy = || unsafe { libc::sched_getscheduler(victim as libc::pid_t) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while policy() != libc::SCHED_IDLE && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(policy(), libc::SCHED_IDLE, "the dying worker's scheduling policy");
    let after = serving(addr, 2).await;
    assert!(after.contains(&spare_pid), "the promoted spare serves: {after:?}");
    assert!(!after.contains(&victim), "the killed worker is gone");
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_a_killed_worker_is_replaced_by_the_spare() {
    a_killed_worker_is_replaced_by_the_spare(Scheduling::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_a_killed_worker_is_replaced_by_the_spare() {
    a_killed_worker_is_replaced_by_the_spare(Scheduling::ReusePort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycled_worker_hands_its_place_to_the_spare_and_nothing_is_lost() {
    let config = http_config(1, Scheduling::RoundRobin)
        .spares(1)
        .max_requests(Some(40))
        .heartbeat_interval(Duration::from_millis(50))
        .heartbeat_timeout(Duration::from_secs(10));
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(2).await;
    let (_, pids) = spares_and_pids(&cluster).await;
    let spare_pid = pids[1].expect("the spare runs");
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(addr, 2, "/", stop.clone()));
    let took = events.wait_for("the spare takes over", |e| matches!(e, ClusterEvent::SpareTookOver { .. })).await;
    assert!(matches!(took, ClusterEvent::SpareTookOver { slot: 1, replaced: 0 }), "{took:?}");
    // The recycled worker drains and exits once its replacement (the next spare) is ready.
    let old = pids[0].expect("slot 0 ran");
    assert!(wait_gone(&[old], TIMEOUT).await.is_empty(), "the recycled worker exited");
    stop.cancel();
    let seen = load.await.expect("load");
    assert!(seen.failed.is_empty(), "{} of {} failed: {:?}", seen.failed.len(), seen.ok, seen.failed);
    assert!(seen.pids.contains(&spare_pid), "the promoted spare served: {:?}", seen.pids);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_reload_replaces_the_spares_too_and_loses_nothing() {
    for scheduling in [Scheduling::RoundRobin, Scheduling::ReusePort] {
        let (cluster, mut events) = spawn(http_config(2, scheduling).spares(1)).await;
        let addr = events.http_ready(3).await;
        let (_, before) = spares_and_pids(&cluster).await;
        let stop = CancellationToken::new();
        let load = tokio::spawn(load(addr, 2, "/", stop.clone()));
        let report = cluster.reload().await.expect("reload");
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.replaced.len(), 3, "every slot, the spare's too");
        let old: Vec<u32> = report.replaced.iter().map(|r| r.old_pid).collect();
        assert!(wait_gone(&old, TIMEOUT).await.is_empty(), "the old workers drained and exited");
        stop.cancel();
        let seen = load.await.expect("load");
        assert!(
            seen.failed.is_empty(),
            "{scheduling:?}: {} of {} failed: {:?}",
            seen.failed.len(),
            seen.ok,
            seen.failed
        );
        let (spares, after) = spares_and_pids(&cluster).await;
        assert_eq!(spares, vec![2], "{scheduling:?}: still one spare");
        let spare = after[2].expect("the new spare runs");
        assert!(!before.contains(&Some(spare)), "the spare was replaced");
        assert!(!serving(addr, 2).await.contains(&spare), "the new spare stays idle");
        cluster.stop().await.expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_counts_the_serving_workers_not_the_spares() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin).spares(1)).await;
    events.http_ready(3).await;
    let report = cluster.scale(corral::control::Scale::By(1)).await.expect("scale up");
    assert_eq!((report.from, report.to), (2, 3));
    events.wait_for("the new worker ready", |e| matches!(e, ClusterEvent::Ready { slot: 3, .. })).await;
    let (spares, pids) = spares_and_pids(&cluster).await;
    assert_eq!((spares, pids.len()), (vec![2], 4));
    let report = cluster.scale(corral::control::Scale::To(1)).await.expect("scale down");
    assert_eq!((report.from, report.to), (3, 1));
    cluster.stop().await.expect("clean stop");
}

#[test]
fn spares_are_refused_with_shared_scheduling() {
    let err = corral::ClusterConfig::default().scheduling(Scheduling::Shared).spares(1).validate().unwrap_err();
    assert!(err.to_string().contains("spares"), "{err}");
}

/// `corral run --spares 1` with Node workers: the spare's socket is steered in when a worker is
/// killed (it serves without waiting for Node to start), the killed slot's socket is taken by
/// its replacement, the new spare, and no request of a load running meanwhile on fresh
/// connections is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_run_a_killed_node_worker_is_replaced_by_the_spare() {
    let run =
        CorralRun::start(&["-w", "2", "--spares", "1", "-l", "127.0.0.1:0", "--ready", "delay:300"], &node(), &[], 1)
            .await;
    let addr = run.addrs[0];
    let active = until_pids(addr, "two node workers answer", |p| p.len() == 2).await;
    // The spare is the primary's third child; it answers nothing while the others serve.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let spare = loop {
        // Forked by the primary's spawner thread: every thread's list.
        let mut children = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", run.pid())).expect("tasks").flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            children.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
        if let Some(spare) = children.iter().find(|p| !active.contains(p)) {
            break *spare;
        }
        assert!(tokio::time::Instant::now() < deadline, "no spare among {children:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!http_pids(addr, 40).await.contains(&spare), "the spare stays idle");
    let victim = *active.iter().next().expect("a worker");
    kill(victim, Signal::SIGKILL);
    let after = until_pids(addr, "the spare serves", |p| p.contains(&spare)).await;
    assert!(!after.contains(&victim));
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warm spare takes the worker's place"), "{stderr}");
}

/// A worker condemned by its liveness probe hands its place to the spare at once (before it
/// drains); a load on fresh connections meanwhile loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_failing_its_probe_hands_its_place_to_the_spare() {
    use corral::config::{Check, ProbeConfig};
    let dir = scratch_dir("spares-probe");
    let check: Check = format!("exec:test ! -e {}/sick-$CORRAL_SLOT", dir.display()).parse().expect("check");
    let probe = ProbeConfig::new(check).every(Duration::from_millis(200)).failures(2);
    let (cluster, mut events) = spawn(http_config(2, Scheduling::ReusePort).spares(1).probe(Some(probe))).await;
    let addr = events.http_ready(3).await;
    let (_, pids) = spares_and_pids(&cluster).await;
    let spare_pid = pids[2].expect("the spare runs");
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(addr, 1, "/", stop.clone()));
    std::fs::write(dir.join("sick-0"), b"").expect("sick file");
    let took = events.wait_for("the spare takes over", |e| matches!(e, ClusterEvent::SpareTookOver { .. })).await;
    assert!(matches!(took, ClusterEvent::SpareTookOver { slot: 2, replaced: 0 }), "{took:?}");
    std::fs::remove_file(dir.join("sick-0")).expect("remove");
    let condemned = pids[0].expect("slot 0 ran");
    assert!(wait_gone(&[condemned], TIMEOUT).await.is_empty(), "the condemned worker drained and exited");
    let after = serving(addr, 2).await;
    assert!(after.contains(&spare_pid), "the promoted spare serves: {after:?}");
    stop.cancel();
    let seen = load.await.expect("load");
    assert!(seen.failed.is_empty(), "{} of {} failed: {:?}", seen.failed.len(), seen.ok, seen.failed);
    cluster.stop().await.expect("clean stop");
}

/// With `net.ipv4.tcp_migrate_req=1`, a connection queued on a killed worker's own reuse-port
/// socket is served by the others (the spare) at once, instead of waiting for the slot's next
/// process (which starts in 5 s here). Run in a network namespace of its own, where the
/// setting is this test's alone: `tests/programs/migrate_on_death.py` under `unshare -n`.
/// Needs root and `unshare`/`ip`; says so and passes without.
#[test]
fn corral_run_a_dead_workers_queue_moves_to_the_others_when_the_kernel_migrates() {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["unshare", "ip"].iter().all(|t| std::process::Command::new(t).arg("--version").output().is_ok());
    if !root || !tools {
        eprintln!("skipped: needs root, unshare and ip (a network namespace of its own)");
        return;
    }
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs");
    let out = std::process::Command::new("timeout")
        .args(["60", "unshare", "-n", "python3"])
        .arg(format!("{programs}/migrate_on_death.py"))
        .arg(CORRAL)
        .arg(format!("{programs}/activated_worker.py"))
        .output()
        .expect("run the script");
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}");
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("served after"), "{said}");
}
