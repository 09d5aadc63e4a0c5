//! Starting a foreign worker by socket activation: its listening sockets at fds 3, 4, …,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` equal to its own pid.
//!
//! The pid exists only after the fork, and `setenv` is not async-signal-safe in a
//! multi-threaded primary. So the whole environment block and argv are built before the fork,
//! with room for the digits of `LISTEN_PID`; the child writes its pid there (no allocation)
//! and calls `execve` itself, from `pre_exec`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::error::LaunchError;
use super::spawn::{dup_above, on_spawner_thread};

/// Environment variables of the primary that must not reach a foreign worker: its own socket
/// activation (when it was activated itself) and corral's worker bootstrap.
const NOT_INHERITED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CORRAL_SLOT",
    "CORRAL_GENERATION",
    "CORRAL_WORKERS",
    "CORRAL_UPGRADE_FD",
    "CORRAL_UPGRADE_CHECK",
];

/// The first fd a foreign worker's listeners get (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Digits reserved for `LISTEN_PID` (a pid is at most 2^22 on Linux, 7 digits).
const PID_DIGITS: usize = 20;

/// Everything needed to start one foreign worker.
pub(crate) struct ActivationSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The configured extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// The listening sockets, in order, with their names.
    pub listeners: Vec<OwnedFd>,
    pub fd_names: String,
    /// The value of `NOTIFY_SOCKET`.
    pub notify_socket: String,
    pub watchdog: Option<Duration>,
    pub slot: usize,
    pub generation: u64,
    pub workers: usize,
    pub cwd: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub capture_output: bool,
}

/// Starts a foreign worker from the spawner thread.
///
/// # Errors
///
/// The program is not found, or the fork or exec fails.
pub(crate) async fn spawn_activated(spec: ActivationSpec) -> io::Result<Child> {
    on_spawner_thread(move || spawn_now(spec)).await
}

/// argv and envp, built before the fork.
struct ExecImage {
    path: CString,
    /// Keeps the argv strings alive for `argv`.
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// Each `KEY=VALUE\0`; `LISTEN_PID`'s has room for the digits. Only read through `envp`.
    _env: Vec<Vec<u8>>,
    envp: Vec<*const libc::c_char>,
    /// Index of the `LISTEN_PID=` entry in `env`.
    listen_pid: usize,
}

// SAFETY: the raw pointers point into the vectors the image owns; the image is only used in
// the forked child (one thread) after the parent moved it into the pre_exec closure.
unsafe impl Send for ExecImage {}
// SAFETY: as above; the parent never reads or writes through the pointers.
unsafe impl Sync for ExecImage {}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

fn spawn_now(spec: ActivationSpec) -> io::Result<Child> {
    let path = resolve_program(&spec.program)?;
    let count = spec.listeners.len();
    let high = LISTEN_FDS_START + RawFd::try_from(count).unwrap_or(RawFd::MAX - 16) + 16;
    let sources: Vec<OwnedFd> =
        spec.listeners.iter().map(|fd| dup_above(fd.as_fd(), high)).collect::<io::Result<_>>()?;
    let raw: Vec<RawFd> = sources.iter().map(AsRawFd::as_raw_fd).collect();
    let mut image = exec_image(&path, &spec)?;

    let mut cmd = Command::new(&path);
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        // Its own process group: a stop reaches the whole tree of a worker (npm → sh → node).
        .process_group(0);
    if spec.capture_output {
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    let primary_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec, so it may only call
    // async-signal-safe functions: dup2, prctl, getppid, getpid, sigemptyset, pthread_sigmask
    // and execve are plain system calls (or fill a stack value); the pid is written into a buffer allocated before the fork; nothing allocates
    // (an io::Error from an errno does not allocate).
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                // dup2 clears close-on-exec on the new fd, so exactly these fds are inherited.
                if libc::dup2(fd, LISTEN_FDS_START + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != primary_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            image.write_pid(libc::getpid());
            // The program starts with no signal blocked, whatever the forking thread had
            // blocked (the primary blocks its own signals around an upgrade's exec).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::execve(image.path.as_ptr(), image.argv.as_ptr(), image.envp.as_ptr());
            Err(io::Error::last_os_error())
        });
    }
    let child = crate::sys::children::spawn_known(|| cmd.spawn());
    drop((sources, spec.listeners));
    child
}

impl ExecImage {
    /// Writes `pid` as the value of `LISTEN_PID` (in the child; no allocation).
    fn write_pid(&mut self, pid: libc::pid_t) {
        let start = b"LISTEN_PID=".len();
        let mut digits = [0u8; PID_DIGITS];
        let mut n = pid.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
            if n == 0 || len == PID_DIGITS {
                break;
            }
        }
        // Written through the pointer envp holds (derived from the entry's mutable pointer),
        // so the bytes execve reads are these.
        let entry = self.envp[self.listen_pid].cast_mut().cast::<u8>();
        for i in 0..len {
            // SAFETY: the entry has `LISTEN_PID=` plus PID_DIGITS + 1 bytes; start + len + 1 is
            // within it, and nothing else refers to these bytes in the child.
            unsafe { entry.add(start + i).write(digits[len - 1 - i]) };
        }
        // SAFETY: as above.
        unsafe { entry.add(start + len).write(0) };
    }
}

fn exec_image(path: &Path, spec: &ActivationSpec) -> io::Result<ExecImage> {
    let mut args = vec![c_string(spec.program.as_os_str())?];
    for arg in &spec.args {
        args.push(c_string(arg)?);
    }
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            !NOT_INHERITED.iter().any(|n| OsStr::new(n) == k) && !k.as_bytes().starts_with(b"CORRAL_WORKER")
        })
        .collect();
    let mut set = |key: &str, value: OsString| {
        vars.retain(|(k, _)| k != key);
        vars.push((key.into(), value));
    };
    for (k, v) in &spec.env {
        let key = k.to_string_lossy().into_owned();
        set(&key, v.clone());
    }
    set("LISTEN_FDS", spec.listeners.len().to_string().into());
    set("LISTEN_FDNAMES", spec.fd_names.clone().into());
    set("NOTIFY_SOCKET", spec.notify_socket.clone().into());
    set("CORRAL_SLOT", spec.slot.to_string().into());
    set("CORRAL_GENERATION", spec.generation.to_string().into());
    set("CORRAL_WORKERS", spec.workers.to_string().into());
    if let Some(watchdog) = spec.watchdog {
        set("WATCHDOG_USEC", watchdog.as_micros().to_string().into());
    }
    let mut env: Vec<Vec<u8>> = Vec::with_capacity(vars.len() + 1);
    for (k, v) in &vars {
        let mut entry = Vec::with_capacity(k.len() + v.len() + 2);
        entry.extend_from_slice(k.as_bytes());
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        if entry.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the environment"));
        }
        entry.push(0);
        env.push(entry);
    }
    let listen_pid = env.len();
    let mut entry = b"LISTEN_PID=".to_vec();
    entry.extend_from_slice(&[0u8; PID_DIGITS + 1]);
    env.push(entry);
    let path = c_string(path.as_os_str())?;
    let argv = args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp =
        env.iter_mut().map(|e| e.as_mut_ptr().cast_const().cast()).chain(std::iter::once(std::ptr::null())).collect();
    Ok(ExecImage { path, _args: args, argv, _env: env, envp, listen_pid })
}

/// `program` as given when it names a path; otherwise the first executable of that name in
/// `PATH` (looked up before the fork: the child may not allocate).
fn resolve_program(program: &Path) -> io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, LaunchError::NotInPath(program.to_path_buf())))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
