//! A library worker is a single-threaded process unless its code asks for more: its event
//! loop is the only thread (hang dumps need none in the worker; the CPU pool's threads start
//! with its first task), so glibc keeps its single-thread fast paths.

mod common;

use std::time::Duration;

use common::*;

/// The threads of `pid`: `(tid, comm)`.
fn threads(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?.trim_end().to_string();
            Some((tid, comm))
        })
        .collect()
}

/// The worker processes of the primary `pid` (its children titled `…: worker …`), waited for
/// (bounded) until there are `n`.
async fn workers(primary: u32, n: usize) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut found: Vec<u32> = live_children(primary)
            .into_iter()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(": worker ")
            })
            .collect();
        if found.len() == n {
            found.sort_unstable();
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} workers expected, found {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid in an `http_cluster` answer to `/`: `Handled by worker N (pid P)`.
fn pid_in(body: &str) -> u32 {
    let at = body.find("(pid ").expect("a pid in the answer") + 5;
    body[at..].trim_end().trim_end_matches(')').parse().expect("a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_library_worker_is_one_thread_while_it_serves_http() {
    let (mut primary, addr) = start_http_cluster(&["--workers", "2"]).await;
    let pids = workers(primary.id().expect("pid"), 2).await;
    // Keep-alive connections open on both workers while they are counted, and requests on
    // fresh connections in between.
    let mut clients: Vec<HttpClient> = (0..4).map(|_| HttpClient::new(addr)).collect();
    let mut served = std::collections::BTreeSet::new();
    for round in 0..10 {
        for client in &mut clients {
            let (status, body, _) = client.get("/").await.expect("an answer");
            assert_eq!(status, 200, "{body}");
            served.insert(pid_in(&body));
        }
        let (status, body) = http_get(addr, "/").await.expect("an answer");
        assert_eq!(status, 200, "{body}");
        served.insert(pid_in(&body));
        for &pid in &pids {
            let threads = threads(pid);
            assert_eq!(threads.len(), 1, "round {round}: worker {pid} has threads {threads:?}");
            assert_eq!(threads[0].0, pid, "the one thread is the main thread");
        }
    }
    assert!(served.iter().all(|p| pids.contains(p)), "answered by {served:?}, workers {pids:?}");
    primary.kill().await.expect("kill the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gets_its_pool_threads_with_its_first_cpu_task() {
    let (mut primary, addr) = start_http_cluster(&["--workers", "1"]).await;
    let pid = workers(primary.id().expect("pid"), 1).await[0];
    assert_eq!(threads(pid).len(), 1, "{:?}", threads(pid));
    let (status, body) = http_get(addr, "/heavy?ms=1").await.expect("an answer");
    assert_eq!(status, 200, "{body}");
    // The pool's threads run now: named `corral-cpu-N`, at least one.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let all = threads(pid);
        let pool = all.iter().filter(|(_, comm)| comm.starts_with("corral-cpu-")).count();
        if pool >= 1 && pool == all.len() - 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no pool threads after a CPU task: {all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    primary.kill().await.expect("kill the cluster");
}
