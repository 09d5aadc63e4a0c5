//! Waiting for a replacement worker after a SIGKILL: a `GET` on a fresh connection every
//! millisecond, each in its own thread (a request may hang: a connection that arrives just as
//! a worker dies can be swallowed), until a 200 names a pid that is not one of the old ones.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http;

/// A new poll request starts this often.
pub const POLL_EVERY: Duration = Duration::from_millis(1);

/// The poll requests sent so far: their threads (to join) and how many hung or failed.
#[derive(Default)]
pub struct Polls {
    threads: Vec<thread::JoinHandle<()>>,
    hung: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

/// What the poll requests came to.
#[derive(Clone, Copy, Default, Debug)]
pub struct PollCounts {
    /// No answer within the HTTP timeout.
    pub hung: usize,
    /// Any other error (refused, reset, closed early) or a status other than 200.
    pub failed: usize,
    pub all: usize,
}

impl Polls {
    /// Waits for every poll thread (each is bounded by its HTTP timeout): (hung, all).
    pub fn finish(self) -> (usize, usize) {
        let counts = self.finish_counts();
        (counts.hung, counts.all)
    }

    /// Waits for every poll thread (each is bounded by its HTTP timeout).
    pub fn finish_counts(self) -> PollCounts {
        let all = self.threads.len();
        for t in self.threads {
            let _ = t.join();
        }
        PollCounts { hung: self.hung.load(Ordering::Relaxed), failed: self.failed.load(Ordering::Relaxed), all }
    }
}

/// Starts a `GET path` on a fresh connection to 127.0.0.1:`port` every [`POLL_EVERY`], each in
/// its own thread bounded by `timeout`, until a 200 whose body `pid_of` reads names a pid not
/// in `old`: that pid and when its answer arrived. Gives up at `deadline`. The threads are left
/// in `polls`.
pub fn poll_new_pid(
    port: u16,
    path: &'static str,
    pid_of: fn(&str) -> Option<i32>,
    old: &HashSet<i32>,
    timeout: Duration,
    deadline: Instant,
    polls: &mut Polls,
) -> Result<(i32, Instant), String> {
    let (tx, rx) = mpsc::channel::<(i32, Instant)>();
    let last_error = Arc::new(Mutex::new(String::from("none")));
    let old = Arc::new(old.clone());
    loop {
        let (tx, old, last) = (tx.clone(), Arc::clone(&old), Arc::clone(&last_error));
        let (hung, failed) = (Arc::clone(&polls.hung), Arc::clone(&polls.failed));
        polls.threads.push(thread::spawn(move || {
            let outcome = match http::get(port, path, timeout) {
                Ok(http::Response { status: 200, body, .. }) => match pid_of(&body) {
                    Some(pid) if !old.contains(&pid) => {
                        let _ = tx.send((pid, Instant::now()));
                        return;
                    }
                    // An old worker that is still alive answered: not a failure.
                    Some(_) => return,
                    None => format!("body names no pid: {body:?}"),
                },
                Ok(answer) => format!("status {}", answer.status),
                Err(e) => {
                    if http::is_timeout(&e) { &hung } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    *last.lock().unwrap() = e.to_string();
                    return;
                }
            };
            failed.fetch_add(1, Ordering::Relaxed);
            *last.lock().unwrap() = outcome;
        }));
        match rx.recv_timeout(POLL_EVERY) {
            Ok(answer) => return Ok(answer),
            Err(_) if Instant::now() >= deadline => {
                let last = last_error.lock().unwrap();
                return Err(format!("no new worker answered by the deadline (last failure: {last})"));
            }
            Err(_) => {}
        }
    }
}
