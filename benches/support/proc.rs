//! What `/proc` tells about a server's processes: its process tree, CPU time, memory, and the
//! machine's load.

use std::collections::{HashMap, HashSet};

/// Direct children of `pid`, from `/proc/<pid>/task/<tid>/children` of every thread.
pub fn children(pid: i32) -> HashSet<i32> {
    let mut out = HashSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    out
}

/// `root` and all its descendants.
pub fn descendants(root: i32) -> HashSet<i32> {
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children(pid));
        }
    }
    seen
}

/// The fields of `/proc/<pid>/stat` after `comm` (which may contain spaces and parentheses):
/// index 0 is field 3, `state`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default()
}

/// Is `pid` a live (not zombie) process of process group `pgid`?
pub fn alive_in_group(pid: i32, pgid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields = stat_fields(&stat);
    // fields[0] = state (field 3), fields[2] = pgrp (field 5).
    fields.first().is_some_and(|s| *s != "Z" && *s != "X") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
}

/// utime + stime of one process (all its threads), in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat);
    // utime and stime are fields 14 and 15; fields[0] is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime (clock ticks) of `root` and every descendant, by pid.
pub fn tree_ticks(root: i32) -> Result<HashMap<i32, u64>, String> {
    // The root must be there; a descendant may have exited in between.
    let root_ticks = cpu_ticks(root).ok_or_else(|| format!("cannot read /proc/{root}/stat"))?;
    let mut ticks: HashMap<i32, u64> =
        descendants(root).into_iter().filter_map(|pid| Some((pid, cpu_ticks(pid)?))).collect();
    ticks.entry(root).or_insert(root_ticks);
    Ok(ticks)
}

/// CPU seconds spent between two [`tree_ticks`] snapshots: per process, so a process that
/// appeared in between counts in full and one that vanished does not subtract.
pub fn cpu_secs_between(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>) -> f64 {
    let ticks: u64 = after.iter().map(|(p, t)| t.saturating_sub(before.get(p).copied().unwrap_or(0))).sum();
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / if per_sec > 0 { per_sec as f64 } else { 100.0 }
}

/// `VmRSS` and `RssAnon` of `pid`, in KiB.
pub fn rss_kib(pid: i32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every figure).
pub fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
