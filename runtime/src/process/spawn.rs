//! Starting worker processes: re-exec with the socket ends at fixed fd numbers.
//!
//! All spawning happens on one dedicated, never-ending OS thread. `PR_SET_PDEATHSIG` fires
//! when the *thread* that forked the child exits, not the process; tokio's blocking threads
//! come and go, so a worker forked from one would be signalled when that thread retired.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{OnceLock, mpsc as std_mpsc};

use corral_protocol::bootstrap::{DEATH_NOTICE_FD, HANDLE_FD, HANG_FD, IPC_FD, WorkerBootstrap};
use nix::fcntl::{FcntlArg, fcntl};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Everything needed to start one worker process.
pub(crate) struct SpawnSpec {
    pub program: PathBuf,
    pub argv0: Option<OsString>,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub boot: WorkerBootstrap,
    /// The worker's end of the frame stream; ends up at [`IPC_FD`].
    pub ipc: OwnedFd,
    /// The worker's end of the handle channel; ends up at [`HANDLE_FD`].
    pub handles: OwnedFd,
    /// The write end of the worker's hang-report pipe; ends up at [`HANG_FD`].
    pub hang: Option<OwnedFd>,
    /// The worker's death notice (a memfd); ends up at [`DEATH_NOTICE_FD`].
    pub notice: Option<OwnedFd>,
    /// Pipe the worker's stdout and stderr to the primary instead of inheriting them.
    pub capture_output: bool,
}

/// Work to run on the spawner thread (a fork, or the primary's own exec).
struct Job {
    run: Box<dyn FnOnce() + Send>,
    runtime: tokio::runtime::Handle,
}

fn spawner() -> io::Result<&'static std_mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();
    if let Some(tx) = SPAWNER.get() {
        return Ok(tx);
    }
    let (tx, rx) = std_mpsc::channel::<Job>();
    // Two callers may race here; the loser's thread sees its channel closed and ends.
    std::thread::Builder::new().name("corral-spawner".into()).spawn(move || {
        for job in rx {
            let _guard = job.runtime.enter();
            (job.run)();
        }
    })?;
    Ok(SPAWNER.get_or_init(|| tx))
}

/// Starts a worker process from the spawner thread; the returned child is reaped by the
/// caller's tokio runtime and killed if dropped.
pub(crate) async fn spawn_worker(spec: SpawnSpec) -> io::Result<Child> {
    on_spawner_thread(move || spawn_now(spec)).await
}

/// Runs `start` (which forks) on the spawner thread, inside the caller's tokio runtime.
pub(crate) async fn on_spawner_thread(start: impl FnOnce() -> io::Result<Child> + Send + 'static) -> io::Result<Child> {
    on_spawner_thread_with(start).await?
}

/// Runs `work` on the spawner thread, inside the caller's tokio runtime, and returns what it
/// returns. The primary's own exec (an upgrade) runs here too: the thread that forked the
/// workers is the one that survives `execve`, so their `PR_SET_PDEATHSIG` does not fire.
pub(crate) async fn on_spawner_thread_with<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (reply, rx) = oneshot::channel();
    let run = Box::new(move || {
        let _ = reply.send(work());
    });
    let job = Job { run, runtime: tokio::runtime::Handle::current() };
    spawner()?.send(job).map_err(|_| io::Error::other("the corral spawner thread has ended"))?;
    rx.await.map_err(|_| io::Error::other("the corral spawner thread dropped the request"))
}

/// Lowest fd number the child's ends are moved to before the fork, so that neither is
/// already at 3 or 4 (a `dup2` onto itself would leave close-on-exec set).
const HIGH_FD: RawFd = 10;

fn spawn_now(spec: SpawnSpec) -> io::Result<Child> {
    let ipc = dup_high(&spec.ipc)?;
    let handles = dup_high(&spec.handles)?;
    let (ipc_raw, handles_raw) = (ipc.as_raw_fd(), handles.as_raw_fd());
    let hang = spec.hang.as_ref().map(dup_high).transpose()?;
    let hang_raw = hang.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let notice = spec.notice.as_ref().map(dup_high).transpose()?;
    let notice_raw = notice.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let primary_pid = spec.boot.primary_pid as libc::pid_t;

    let mut cmd = Command::new(&spec.program);
    if let Some(argv0) = &spec.argv0 {
        cmd.arg0(argv0);
    }
    // What the service manager told the primary is the primary's own.
    for var in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]
        .into_iter()
        .chain(crate::upgrade::PRIMARY_ONLY_ENV)
    {
        cmd.env_remove(var);
    }
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(spec.boot.to_env())
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        // Its own process group: a terminal's Ctrl-C reaches only the primary, which drains
        // the workers in order instead of all of them dying at once.
        .process_group(0);
    if spec.capture_output {
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    }
    // SAFETY: the closure runs in the child between fork and exec, so it may only call
    // async-signal-safe functions: dup2, prctl, getppid, sigemptyset and pthread_sigmask are
    // plain system calls (or fill a stack value), and it
    // allocates nothing (the io::Error it may build wraps an errno, without allocating).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(ipc_raw, IPC_FD) < 0 || libc::dup2(handles_raw, HANDLE_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if hang_raw >= 0 && libc::dup2(hang_raw, HANG_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if notice_raw >= 0 && libc::dup2(notice_raw, DEATH_NOTICE_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The primary may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != primary_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // No signal blocked, whatever the forking thread had blocked (the primary blocks
            // its own signals around an upgrade's exec).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = crate::sys::children::spawn_known(|| cmd.spawn());
    // The parent's copies of the child's ends must go, or the primary never sees EOF when
    // the worker dies.
    drop((ipc, handles, hang, notice, spec.ipc, spec.handles, spec.hang, spec.notice));
    child
}

/// A close-on-exec duplicate of `fd` numbered [`HIGH_FD`] or above.
fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    dup_above(fd.as_fd(), HIGH_FD)
}

/// A close-on-exec duplicate of `fd` numbered `min` or above.
pub(crate) fn dup_above(fd: std::os::fd::BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min)).map_err(io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC just created `raw` for us; nothing else owns it, so the OwnedFd
    // closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
