//! `corral run` in reuse-port scheduling steers each new connection (a classic BPF program on
//! the group): a stopped worker is skipped until it takes its connections again, and what was
//! queued on it is served; a scale-down leaves no connection waiting on a removed slot's
//! socket; `--sched sticky` keeps each client address on one worker, and a dead worker's
//! clients are the only ones that move.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `GET /` on a new connection from `from` (port chosen by the kernel): the pid that
/// answered, within `limit`.
async fn get_from(addr: SocketAddr, from: IpAddr, limit: Duration) -> std::io::Result<u32> {
    let fetch = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let mut stream = socket.connect(addr).await?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok(answered_by(body).1)
    };
    tokio::time::timeout(limit, fetch).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_steered_out_and_what_was_queued_on_it_is_served() {
    let run = CorralRun::start(&["-w", "2", "-l", "127.0.0.1:0", "--sched", "reuseport"], &python(), &[], 1).await;
    let addr = run.addrs[0];
    let pids = until_pids(addr, "two workers answer", |p| p.len() == 2).await;
    let stopped = *pids.iter().min().expect("a pid");
    kill(stopped, Signal::SIGSTOP);
    // Requests sent while it is stopped, each waiting long enough for the worker to resume.
    let localhost: IpAddr = [127, 0, 0, 1].into();
    let early: Vec<_> = (0..10).map(|_| tokio::spawn(get_from(addr, localhost, Duration::from_secs(30)))).collect();
    // Once its queue has stayed full past the bound, every new connection goes to the other.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut answered_by_other = 0;
    while answered_by_other < 50 {
        assert!(tokio::time::Instant::now() < deadline, "the stopped worker is not skipped");
        match get_from(addr, localhost, Duration::from_secs(1)).await {
            Ok(pid) if pid != stopped => answered_by_other += 1,
            _ => answered_by_other = 0,
        }
    }
    kill(stopped, Signal::SIGCONT);
    for request in early {
        let pid = request.await.expect("joined").expect("a request queued on the stopped worker is answered");
        assert!(pids.contains(&pid), "answered by {pid}");
    }
    // Caught up: steered back in.
    until_pids(addr, "both answer again", |p| p.contains(&stopped) && p.len() == 2).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("steered out") && stderr.contains("steered back in"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_under_load_leaves_no_connection_waiting() {
    let dir = scratch_dir("steer-scale");
    let control = dir.join("c.sock");
    let control_arg = control.display().to_string();
    let run = CorralRun::start(
        &["-w", "4", "-l", "127.0.0.1:0", "--sched", "reuseport", "--control", &control_arg],
        &python(),
        &[],
        1,
    )
    .await;
    let addr = run.addrs[0];
    until_pids(addr, "four workers answer", |p| p.len() == 4).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let localhost: IpAddr = [127, 0, 0, 1].into();
            while !stop.is_cancelled() {
                match get_from(addr, localhost, Duration::from_secs(5)).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.kind()),
                }
            }
            (ok, failed)
        })
    };
    for n in ["1", "4", "1"] {
        // Refused while the previous scale-down still drains: asked again (bounded).
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let out = tokio::process::Command::new(CORRAL)
                .args(["scale", n, "--control", &control_arg])
                .output()
                .await
                .expect("corral scale");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                break;
            }
            assert!(
                stderr.contains("still draining") && tokio::time::Instant::now() < deadline,
                "corral scale {n}: {stderr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let want: usize = n.parse().expect("a number");
        until_pids(addr, "the new count answers", |p| p.len() == want).await;
    }
    stop.cancel();
    let (ok, failed) = load.await.expect("load");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed or hung: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 50, "only {ok} requests");
    // The status table shows each worker's steering and queue.
    let out = tokio::process::Command::new(CORRAL)
        .args(["status", "--control", &control_arg])
        .output()
        .await
        .expect("corral status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("steering") && table.contains("in, 0 queued"), "{table}");
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keeps_each_client_address_on_one_worker_and_moves_only_a_dead_ones_clients() {
    let run = CorralRun::start(&["-w", "3", "-l", "127.0.0.1:0", "--sched", "sticky"], &python(), &[], 1).await;
    let addr = run.addrs[0];
    let clients: Vec<IpAddr> = (2..14).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    // Each client's pids over 10 new connections.
    let place = |clients: Vec<IpAddr>| async move {
        let mut at: HashMap<IpAddr, HashSet<u32>> = HashMap::new();
        for client in clients {
            for _ in 0..10 {
                at.entry(client).or_default().insert(get_from(addr, client, TIMEOUT).await.expect("answered"));
            }
        }
        at
    };
    // Each client on exactly one pid, or None.
    let one = |at: &HashMap<IpAddr, HashSet<u32>>| -> Option<HashMap<IpAddr, u32>> {
        let mut out = HashMap::new();
        for (client, pids) in at {
            if pids.len() != 1 {
                return None;
            }
            out.insert(*client, *pids.iter().next()?);
        }
        Some(out)
    };
    let placed = place(clients.clone()).await;
    let before = one(&placed).unwrap_or_else(|| panic!("a client reached several workers: {placed:?}"));
    let used: HashSet<u32> = before.values().copied().collect();
    assert!(used.len() >= 2, "12 clients all on one worker: {before:?}");
    let victim = *before.values().next().expect("a worker");
    kill(victim, Signal::SIGKILL);
    // Until its replacement is ready, the victim's clients go elsewhere; then back to its slot.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let after = loop {
        if let Some(after) = one(&place(clients.clone()).await) {
            let now: HashSet<u32> = after.values().copied().collect();
            if !now.contains(&victim) && now.len() == used.len() {
                break after;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the victim's clients never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (client, pid) in &before {
        if *pid != victim {
            assert_eq!(after[client], *pid, "{client} moved though its worker lives");
        }
    }
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}
