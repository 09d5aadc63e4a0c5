//! The processes under a `corral run`, from `/proc`: who descends from whom, and every pid seen
//! during a run (with its start time, so that a reused pid is never mistaken for it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A process's parent and start time (clock ticks since boot), from `/proc/PID/stat`.
pub fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?, state))
}

/// Whether `pid` is still the process that started at `start`, and not a zombie.
pub fn alive(pid: u32, start: u64) -> bool {
    stat(pid).is_some_and(|(_, s, state)| s == start && state != 'Z')
}

/// Every descendant of `root` (pid → start time), from one pass over `/proc`.
pub fn tree(root: u32) -> HashMap<u32, u64> {
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        if let Some((parent, start, _)) = stat(pid) {
            children.entry(parent).or_default().push((pid, start));
        }
    }
    let (mut out, mut todo) = (HashMap::new(), vec![root]);
    while let Some(pid) = todo.pop() {
        for &(child, start) in children.get(&pid).into_iter().flatten() {
            if out.insert(child, start).is_none() {
                todo.push(child);
            }
        }
    }
    out
}

/// `pid` with everything under it (pid → start time), or nothing once it is gone.
pub fn with_tree(pid: u32) -> HashMap<u32, u64> {
    let mut out = tree(pid);
    if let Some((_, start, _)) = stat(pid) {
        out.insert(pid, start);
    }
    out
}

/// The direct child of `corral` that `pid` is or descends from (gunicorn answers from its
/// arbiter's child).
pub fn worker_of(mut pid: u32, corral: u32) -> Option<u32> {
    for _ in 0..32 {
        let (parent, _, _) = stat(pid)?;
        if parent == corral {
            return Some(pid);
        }
        if parent <= 1 {
            return None;
        }
        pid = parent;
    }
    None
}

/// Every pid under a root, sampled every 100 ms (paused while latency is timed) until dropped.
pub struct Tracker {
    root: u32,
    seen: Arc<Mutex<HashMap<u32, u64>>>,
    pause: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Tracker {
    pub fn start(root: u32) -> Tracker {
        let tracker = Tracker {
            root,
            seen: Arc::default(),
            pause: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (seen, pause, stop) = (tracker.seen.clone(), tracker.pause.clone(), tracker.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !pause.load(Ordering::Relaxed) {
                    let found = tree(root);
                    let mut seen = seen.lock().expect("seen");
                    for (pid, start) in found {
                        seen.entry(pid).or_insert(start);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        tracker
    }

    /// Samples the tree now.
    pub fn sample(&self) {
        self.add(tree(self.root));
    }

    /// Adds processes seen otherwise (pid → start time).
    pub fn add(&self, pids: HashMap<u32, u64>) {
        let mut seen = self.seen.lock().expect("seen");
        for (pid, start) in pids {
            seen.entry(pid).or_insert(start);
        }
    }

    /// Adds pids (by their current start time).
    pub fn add_pids(&self, pids: impl IntoIterator<Item = u32>) {
        self.add(pids.into_iter().filter_map(|p| Some((p, stat(p)?.1))).collect());
    }

    pub fn pause(&self, paused: bool) {
        self.pause.store(paused, Ordering::Relaxed);
    }

    /// How many processes were seen.
    pub fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }

    /// The processes seen that are still alive.
    pub fn left(&self) -> Vec<u32> {
        let seen = self.seen.lock().expect("seen");
        let mut left: Vec<u32> = seen.iter().filter(|&(&p, &s)| alive(p, s)).map(|(&p, _)| p).collect();
        left.sort_unstable();
        left
    }
}

impl Drop for Tracker {
    /// Stops sampling and SIGKILLs whatever is left (a test that failed half-way).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for pid in self.left() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Waits (polling, bounded by `limit`) until none of `pids` is alive; returns those that are.
pub async fn wait_gone(pids: &HashMap<u32, u64>, limit: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut left: Vec<u32> = pids.iter().filter(|&(&p, &s)| alive(p, s)).map(|(&p, _)| p).collect();
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            left.sort_unstable();
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
