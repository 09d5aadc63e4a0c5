//! Hang diagnosis: what a worker that stopped answering heartbeats was doing, recorded just
//! before it is killed ([`ClusterEvent::Hung`](crate::api::events::ClusterEvent::Hung)).
//!
//! Two sources, within a bound of about a second before the SIGKILL goes anyway:
//!
//! * every thread in `/proc/PID/task/*`: name, state, current system call, wait channel and
//!   CPU time, sampled twice [`SAMPLE_GAP`] apart and summarised as busy in user space or
//!   blocked in a system call;
//! * for a corral worker that catches [`HANG_DUMP_SIGNAL`] (seen in `/proc/PID/status`), a
//!   backtrace of its event-loop thread: the worker's signal handler writes the raw addresses
//!   ([`hang_record`](corral_protocol::hang_record)) to the hang pipe the primary gave it at
//!   start ([`HANG_FD`]), and the primary names them (`backtrace`, `symbols`) from the
//!   worker's `/proc/PID/maps` and the symbol tables of its files, before the kill.
//!
//! [`HANG_DUMP_SIGNAL`]: corral_protocol::bootstrap::HANG_DUMP_SIGNAL
//! [`HANG_FD`]: corral_protocol::bootstrap::HANG_FD

use std::fmt;
use std::time::{Duration, Instant};

use corral_protocol::bootstrap::HANG_DUMP_SIGNAL;
use tokio::net::unix::pipe;

mod backtrace;
mod symbols;

use symbols::Symbols;

/// Time between the two samples of each thread.
pub const SAMPLE_GAP: Duration = Duration::from_millis(100);
/// The whole diagnosis takes at most this long; the kill follows at once.
pub const BUDGET: Duration = Duration::from_secs(1);

/// What a hung worker was doing, just before it was killed.
///
/// ```
/// use corral_runtime::{HangReport, ThreadActivity, ThreadSample};
/// let report = HangReport {
///     pid: 42,
///     threads: vec![ThreadSample {
///         tid: 42,
///         name: "worker".into(),
///         state: 'S',
///         wchan: Some("hrtimer_nanosleep".into()),
///         activity: ThreadActivity::Blocked { syscall: 230, name: Some("clock_nanosleep") },
///     }],
///     backtrace: None,
///     took: std::time::Duration::from_millis(105),
/// };
/// assert!(report.to_string().contains("blocked in syscall 230 (clock_nanosleep)"));
/// assert_eq!(report.event_loop().map(|t| t.tid), Some(42));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HangReport {
    /// The process.
    pub pid: u32,
    /// Each of its threads, the main (event-loop) thread first.
    pub threads: Vec<ThreadSample>,
    /// A symbolised backtrace of the event-loop thread (corral workers), if one came in time.
    pub backtrace: Option<String>,
    /// How long the diagnosis took.
    pub took: Duration,
}

impl HangReport {
    /// The main thread's sample (the event loop's, for a corral worker).
    ///
    /// ```
    /// # use corral_runtime::HangReport;
    /// let report = HangReport { pid: 1, threads: vec![], backtrace: None, took: Default::default() };
    /// assert!(report.event_loop().is_none());
    /// ```
    pub fn event_loop(&self) -> Option<&ThreadSample> {
        self.threads.iter().find(|t| t.tid == self.pid)
    }
}

/// One thread of a hung worker.
///
/// ```
/// use corral_runtime::{ThreadActivity, ThreadSample};
/// let t = ThreadSample { tid: 7, name: "spin".into(), state: 'R', wchan: None, activity: ThreadActivity::Busy };
/// assert_eq!(t.to_string(), "thread 7 \"spin\" [R]: busy in user space");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    /// The thread id.
    pub tid: u32,
    /// Its name (`comm`).
    pub name: String,
    /// Its state at the second sample (`R` running, `S` sleeping, `D` disk sleep, …).
    pub state: char,
    /// Its wait channel (the kernel function it sleeps in), if it sleeps and it is known.
    pub wchan: Option<String>,
    /// What the two samples say it was doing.
    pub activity: ThreadActivity,
}

/// What a thread was doing across the two samples.
///
/// ```
/// use corral_runtime::ThreadActivity;
/// let a = ThreadActivity::Blocked { syscall: 202, name: Some("futex") };
/// assert_eq!(a.to_string(), "blocked in syscall 202 (futex)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadActivity {
    /// Running in user space both times, or its CPU time grew: a busy loop.
    Busy,
    /// In the same system call both times.
    Blocked {
        /// The system call's number (this architecture's).
        syscall: i64,
        /// Its name, for the common ones.
        name: Option<&'static str>,
    },
    /// Anything else: what `/proc/PID/task/TID/syscall` said each time (`-1 …`: blocked
    /// outside a system call, as in a page fault).
    Changing {
        /// The first sample.
        first: String,
        /// The second sample.
        second: String,
    },
    /// The thread ended between the samples, or could not be read.
    Unknown,
}

impl fmt::Display for ThreadActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadActivity::Busy => f.write_str("busy in user space"),
            ThreadActivity::Blocked { syscall, name: Some(name) } => write!(f, "blocked in syscall {syscall} ({name})"),
            ThreadActivity::Blocked { syscall, name: None } => write!(f, "blocked in syscall {syscall}"),
            ThreadActivity::Changing { first, second } => write!(f, "changing: {first:?}, then {second:?}"),
            ThreadActivity::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for ThreadSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "thread {} {:?} [{}]: {}", self.tid, self.name, self.state, self.activity)?;
        match &self.wchan {
            Some(wchan) => write!(f, ", waiting in {wchan}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for HangReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pid {}: {} threads, sampled {:?} apart, diagnosed in {:?}",
            self.pid,
            self.threads.len(),
            SAMPLE_GAP,
            self.took
        )?;
        for t in &self.threads {
            writeln!(f, "  {t}")?;
        }
        match &self.backtrace {
            Some(text) => write!(f, "{}", text.trim_end()),
            None => f.write_str("no backtrace"),
        }
    }
}

/// One reading of one thread.
#[derive(Debug, Clone)]
struct Reading {
    name: String,
    state: char,
    cpu_ticks: u64,
    /// The first word of `syscall`: `running`, `-1` or a number.
    syscall: String,
    wchan: Option<String>,
}

/// Reads every thread of `pid` once.
fn read_threads(pid: u32) -> Vec<(u32, Reading)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out: Vec<(u32, Reading)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| Some((tid, read_thread(pid, tid)?)))
        .collect();
    out.sort_by_key(|(tid, _)| (*tid != pid, *tid));
    out
}

fn read_thread(pid: u32, tid: u32) -> Option<Reading> {
    let base = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let name = stat.get(stat.find('(')? + 1..close)?.to_string();
    let mut fields = stat.get(close + 2..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state: fields 4.. of stat(5); utime and stime are fields 14 and 15.
    let mut fields = fields.skip(10);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let syscall = std::fs::read_to_string(format!("{base}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string());
    let wchan = std::fs::read_to_string(format!("{base}/wchan"))
        .ok()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty() && w != "0");
    Some(Reading { name, state, cpu_ticks: utime + stime, syscall, wchan })
}

/// What two readings of a thread say.
fn summarise(first: &Reading, second: &Reading) -> ThreadActivity {
    let number = |r: &Reading| r.syscall.parse::<i64>().ok().filter(|n| *n >= 0);
    match (number(first), number(second)) {
        (Some(a), Some(b)) if a == b => ThreadActivity::Blocked { syscall: a, name: syscall_name(a) },
        _ if first.syscall == "running" && second.syscall == "running" => ThreadActivity::Busy,
        _ if second.cpu_ticks > first.cpu_ticks && number(second).is_none() => ThreadActivity::Busy,
        _ => ThreadActivity::Changing { first: first.syscall.clone(), second: second.syscall.clone() },
    }
}

/// Samples every thread of `pid` twice, [`SAMPLE_GAP`] apart (blocking: run it off the
/// actors).
fn sample_threads(pid: u32) -> Vec<ThreadSample> {
    let first = read_threads(pid);
    std::thread::sleep(SAMPLE_GAP);
    let second = read_threads(pid);
    first
        .into_iter()
        .map(|(tid, a)| match second.iter().find(|(t, _)| *t == tid) {
            Some((_, b)) => ThreadSample {
                tid,
                name: b.name.clone(),
                state: b.state,
                wchan: b.wchan.clone(),
                activity: summarise(&a, b),
            },
            None => {
                ThreadSample { tid, name: a.name, state: a.state, wchan: a.wchan, activity: ThreadActivity::Unknown }
            }
        })
        .collect()
}

/// Whether `pid` has a handler for `signal` (its `SigCgt` mask in `/proc/PID/status`).
fn catches(pid: u32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let Some(mask) = status.lines().find_map(|l| l.strip_prefix("SigCgt:")) else { return false };
    let Ok(mask) = u64::from_str_radix(mask.trim(), 16) else { return false };
    (1..=64).contains(&signal) && mask & (1u64 << (signal - 1)) != 0
}

/// Diagnoses `pid`, a process the caller has not reaped (so the pid cannot have been
/// reused), within about [`BUDGET`]: samples its threads, then asks a corral worker for a
/// backtrace on `hang_pipe` (whatever was left in the pipe is discarded first).
pub(crate) async fn diagnose(pid: u32, hang_pipe: Option<&mut pipe::Receiver>) -> HangReport {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + BUDGET;
    // Both samples before the signal: the handler interrupts a sleep (then restarted as
    // `restart_syscall`), which would blur the second sample.
    let sampling = tokio::task::spawn_blocking(move || sample_threads(pid));
    let threads = match tokio::time::timeout_at(deadline, sampling).await {
        Ok(Ok(threads)) => threads,
        _ => Vec::new(),
    };
    let mut dump = None;
    if let Some(pipe) = hang_pipe
        && catches(pid, HANG_DUMP_SIGNAL)
    {
        let mut stale = [0u8; 4096];
        while matches!(pipe.try_read(&mut stale), Ok(n) if n > 0) {}
        // A real-time signal, which nix's Signal cannot name: sent with libc.
        // SAFETY: kill takes integers only; `pid` is our unreaped child.
        let sent = unsafe { libc::kill(pid as libc::pid_t, HANG_DUMP_SIGNAL) } == 0;
        if sent {
            dump = match tokio::time::timeout_at(deadline, backtrace::read_record(pipe)).await {
                Ok(Some(Ok(record))) => Some(name_addresses(pid, record, deadline).await),
                Ok(Some(Err(e))) => Some(format!("no backtrace: {e}")),
                Ok(None) | Err(_) => None,
            };
        }
    }
    HangReport { pid, threads, backtrace: dump, took: started.elapsed() }
}

/// The text of `record`, its addresses named from `pid`'s maps and files (blocking file
/// reads: off the actors), or left unnamed if that does not finish by `deadline`. `pid` is
/// alive and unreaped meanwhile: the caller kills it only afterwards.
async fn name_addresses(
    pid: u32,
    record: corral_protocol::hang_record::HangRecord,
    deadline: tokio::time::Instant,
) -> String {
    let unnamed = record.clone();
    let naming = tokio::task::spawn_blocking(move || backtrace::render(&record, &mut Symbols::of_process(pid)));
    match tokio::time::timeout_at(deadline, naming).await {
        Ok(Ok(text)) => text,
        _ => backtrace::render(&unnamed, &mut Symbols::default()),
    }
}

/// The name of a common system call, by its number on this architecture.
///
/// ```
/// # #[cfg(target_arch = "x86_64")]
/// assert_eq!(corral_runtime::syscall_name(230), Some("clock_nanosleep"));
/// ```
pub fn syscall_name(number: i64) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    const NAMES: &[(i64, &str)] = &[
        (0, "read"),
        (1, "write"),
        (2, "open"),
        (3, "close"),
        (7, "poll"),
        (16, "ioctl"),
        (17, "pread64"),
        (18, "pwrite64"),
        (19, "readv"),
        (20, "writev"),
        (23, "select"),
        (24, "sched_yield"),
        (34, "pause"),
        (35, "nanosleep"),
        (40, "sendfile"),
        (42, "connect"),
        (43, "accept"),
        (44, "sendto"),
        (45, "recvfrom"),
        (46, "sendmsg"),
        (47, "recvmsg"),
        (61, "wait4"),
        (73, "flock"),
        (74, "fsync"),
        (75, "fdatasync"),
        (128, "rt_sigtimedwait"),
        (130, "rt_sigsuspend"),
        (202, "futex"),
        (219, "restart_syscall"),
        (230, "clock_nanosleep"),
        (232, "epoll_wait"),
        (247, "waitid"),
        (257, "openat"),
        (270, "pselect6"),
        (271, "ppoll"),
        (275, "splice"),
        (281, "epoll_pwait"),
        (288, "accept4"),
        (426, "io_uring_enter"),
        (441, "epoll_pwait2"),
    ];
    #[cfg(target_arch = "aarch64")]
    const NAMES: &[(i64, &str)] = &[
        (22, "epoll_pwait"),
        (29, "ioctl"),
        (32, "flock"),
        (56, "openat"),
        (57, "close"),
        (63, "read"),
        (64, "write"),
        (65, "readv"),
        (66, "writev"),
        (67, "pread64"),
        (68, "pwrite64"),
        (72, "pselect6"),
        (73, "ppoll"),
        (82, "fsync"),
        (95, "waitid"),
        (98, "futex"),
        (101, "nanosleep"),
        (115, "clock_nanosleep"),
        (124, "sched_yield"),
        (128, "restart_syscall"),
        (133, "rt_sigsuspend"),
        (137, "rt_sigtimedwait"),
        (202, "accept"),
        (203, "connect"),
        (206, "sendto"),
        (207, "recvfrom"),
        (211, "sendmsg"),
        (212, "recvmsg"),
        (242, "accept4"),
        (260, "wait4"),
        (426, "io_uring_enter"),
        (441, "epoll_pwait2"),
    ];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const NAMES: &[(i64, &str)] = &[];
    NAMES.iter().find(|(n, _)| *n == number).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(syscall: &str, cpu_ticks: u64) -> Reading {
        Reading { name: "t".into(), state: 'S', cpu_ticks, syscall: syscall.into(), wchan: None }
    }

    #[test]
    fn summaries() {
        assert_eq!(summarise(&reading("running", 1), &reading("running", 1)), ThreadActivity::Busy);
        assert_eq!(summarise(&reading("-1", 1), &reading("running", 9)), ThreadActivity::Busy);
        assert_eq!(
            summarise(&reading("202", 1), &reading("202", 1)),
            ThreadActivity::Blocked { syscall: 202, name: syscall_name(202) }
        );
        assert!(matches!(summarise(&reading("0", 1), &reading("1", 1)), ThreadActivity::Changing { .. }));
    }

    #[test]
    fn samples_this_process() {
        let threads = sample_threads(std::process::id());
        assert!(!threads.is_empty());
        assert_eq!(threads[0].tid, std::process::id());
        assert!(!catches(std::process::id(), 99));
    }
}
