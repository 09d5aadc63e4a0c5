//! The test process as a cluster's primary, seen from `/proc` (the storm tests run one test
//! per binary, so nothing else shares these figures): its fds, `/proc/self/status` fields and
//! zombie children; any process's live children; and the wait for every slot to serve again
//! after a storm.

use std::time::Duration;

use corral::status::WorkerState;

use super::{Handle, TIMEOUT};

/// Open fds of this process.
pub fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(Iterator::count).unwrap_or(0)
}

/// A numeric field of `/proc/self/status` (`"Threads:"`, `"VmRSS:"` in KiB, …); 0 if missing.
pub fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The children of `parent`, with their state letter (`R`, `S`, `Z`…), from `/proc`.
fn children_with_state(parent: u32) -> Vec<(u32, String)> {
    let parent = parent.to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let mut fields = rest.split_whitespace();
        if let (Some(state), Some(ppid)) = (fields.next(), fields.next())
            && ppid == parent
        {
            found.push((pid, state.to_string()));
        }
    }
    found
}

/// The children of `parent` that are alive (not zombies).
pub fn live_children(parent: u32) -> Vec<u32> {
    children_with_state(parent).into_iter().filter(|(_, state)| state != "Z").map(|(pid, _)| pid).collect()
}

/// Children of this process that are zombies.
pub fn zombies() -> Vec<u32> {
    children_with_state(std::process::id()).into_iter().filter(|(_, state)| state == "Z").map(|(pid, _)| pid).collect()
}

/// Waits (bounded by [`TIMEOUT`]) until the cluster has `n` slots, every one ready; returns
/// their pids.
pub async fn all_serving(cluster: &Handle, n: usize) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let status = cluster.status().await.expect("status");
        if status.len() == n && status.iter().all(|w| w.state == WorkerState::Ready) {
            return status.iter().filter_map(|w| w.pid).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "not every slot serves: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
