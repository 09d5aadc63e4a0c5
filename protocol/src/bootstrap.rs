//! How a worker process finds out that it is one, and where its channels are.
//!
//! The primary starts each worker with [`WORKER_ENV`] set and its two socket ends moved to the
//! fixed fd numbers [`IPC_FD`] and [`HANDLE_FD`]; every other fd of the primary is
//! close-on-exec. [`WorkerBootstrap`] is that information as a value, both for writing it
//! ([`WorkerBootstrap::to_env`]) and for reading it back ([`WorkerBootstrap::from_env`]).

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

use crate::error::{BootstrapFault, ProtocolError};

/// The marker: present in a worker's environment, absent in the primary's.
pub const WORKER_ENV: &str = "CORRAL_WORKER";
/// The worker's slot number.
pub const SLOT_ENV: &str = "CORRAL_SLOT";
/// The slot's generation.
pub const GENERATION_ENV: &str = "CORRAL_GENERATION";
/// The primary's pid, to notice a primary that died before `PR_SET_PDEATHSIG` was armed.
pub const PRIMARY_PID_ENV: &str = "CORRAL_PRIMARY_PID";
/// The maximum frame length both sides use.
pub const MAX_FRAME_ENV: &str = "CORRAL_MAX_FRAME";
/// Threads of the worker's CPU pool.
pub const CPU_THREADS_ENV: &str = "CORRAL_CPU_THREADS";
/// The fd number of the worker's end of the frame stream (`SOCK_STREAM`).
pub const IPC_FD: RawFd = 3;
/// The fd number of the worker's end of the handle channel (`SOCK_SEQPACKET`).
pub const HANDLE_FD: RawFd = 4;
/// The fd number of the write end of the worker's hang-report pipe: when the primary sends
/// [`HANG_DUMP_SIGNAL`] to a worker that stopped answering heartbeats, the worker's signal
/// handler writes a raw backtrace of its event-loop thread here, one
/// [`hang_record`](crate::hang_record) in one atomic write, which the primary names from the
/// worker's `/proc/PID/maps`. Optional: a
/// worker without it (or one that does not catch the signal) is diagnosed from `/proc` only.
pub const HANG_FD: RawFd = 5;
/// The fd number of the worker's death notice: a one-page memfd holding a process-shared
/// robust mutex that the worker's event-loop thread locks for its life, so that the primary
/// learns of its death as the kernel starts tearing it down, not after
/// ([`death_notice`](crate::death_notice)). Optional, like [`HANG_FD`].
pub const DEATH_NOTICE_FD: RawFd = 6;
/// The real-time signal (`SIGRTMIN+3` under glibc: 37) a corral worker catches to dump a
/// backtrace of its event-loop thread into [`HANG_FD`]. A fixed number, not
/// `SIGRTMIN() + 3`, because glibc and musl reserve different real-time signals for
/// themselves and primary and worker must agree.
///
/// ```
/// assert!(corral_protocol::bootstrap::HANG_DUMP_SIGNAL > 34);
/// ```
pub const HANG_DUMP_SIGNAL: i32 = 37;

/// What a worker process is told at start.
///
/// # Example
///
/// ```
/// use corral_protocol::bootstrap::{WorkerBootstrap, WORKER_ENV};
///
/// let boot = WorkerBootstrap { slot: 2, generation: 7, primary_pid: 100, max_frame_length: 1 << 20, cpu_threads: 1 };
/// let env: std::collections::HashMap<_, _> = boot.to_env().into_iter().collect();
/// assert_eq!(env[WORKER_ENV], "1");
/// assert_eq!(WorkerBootstrap::from_vars(&env).unwrap(), Some(boot));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerBootstrap {
    /// The slot the worker fills.
    pub slot: u32,
    /// The slot's generation (1 for the first process of a slot).
    pub generation: u64,
    /// The pid of the primary that started the worker.
    pub primary_pid: u32,
    /// The maximum frame length on the frame stream.
    pub max_frame_length: usize,
    /// Threads of the worker's CPU pool.
    pub cpu_threads: usize,
}

impl WorkerBootstrap {
    /// The environment variables that describe this worker.
    pub fn to_env(&self) -> Vec<(String, String)> {
        vec![
            (WORKER_ENV.to_string(), "1".to_string()),
            (SLOT_ENV.to_string(), self.slot.to_string()),
            (GENERATION_ENV.to_string(), self.generation.to_string()),
            (PRIMARY_PID_ENV.to_string(), self.primary_pid.to_string()),
            (MAX_FRAME_ENV.to_string(), self.max_frame_length.to_string()),
            (CPU_THREADS_ENV.to_string(), self.cpu_threads.to_string()),
        ]
    }

    /// Reads the worker description from this process's environment: `Ok(None)` when the
    /// marker is absent (this process is a primary).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Bootstrap`] when the marker is present but another variable is missing
    /// ([`BootstrapFault::Missing`]) or malformed ([`BootstrapFault::Invalid`]).
    pub fn from_env() -> Result<Option<Self>, ProtocolError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(&vars)
    }

    /// As [`from_env`](Self::from_env), from a given map.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Bootstrap`] naming the variable that is missing or malformed.
    ///
    /// ```
    /// # use corral_protocol::bootstrap::{SLOT_ENV, WorkerBootstrap};
    /// # use corral_protocol::{BootstrapFault, ProtocolError};
    /// let mut env = std::collections::HashMap::new();
    /// assert_eq!(WorkerBootstrap::from_vars(&env).unwrap(), None);
    /// env.insert("CORRAL_WORKER".to_string(), "1".to_string());
    /// let err = WorkerBootstrap::from_vars(&env).unwrap_err();
    /// assert!(matches!(err, ProtocolError::Bootstrap(BootstrapFault::Missing { var: SLOT_ENV })));
    /// ```
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<Self>, ProtocolError> {
        if !vars.contains_key(WORKER_ENV) {
            return Ok(None);
        }
        Ok(Some(WorkerBootstrap {
            slot: parse(vars, SLOT_ENV)?,
            generation: parse(vars, GENERATION_ENV)?,
            primary_pid: parse(vars, PRIMARY_PID_ENV)?,
            max_frame_length: parse(vars, MAX_FRAME_ENV)?,
            cpu_threads: parse(vars, CPU_THREADS_ENV)?,
        }))
    }

    /// Takes ownership of the inherited frame-stream and handle-channel fds, after checking
    /// that both are open sockets, and marks them close-on-exec so that the worker's own
    /// children do not inherit them. Call once.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Bootstrap`] when a fd is not open ([`BootstrapFault::FdNotOpen`]) or
    /// not a socket ([`BootstrapFault::FdNotSocket`]): the process was started with the marker
    /// but not by a corral primary.
    pub fn take_fds(&self) -> Result<(OwnedFd, OwnedFd), ProtocolError> {
        Ok((take_socket_fd(IPC_FD)?, take_socket_fd(HANDLE_FD)?))
    }

    /// Takes ownership of the inherited hang-report pipe ([`HANG_FD`]) if there is one (an
    /// open pipe at that number), marked close-on-exec; `None` otherwise (an older primary,
    /// or an fd the worker's own launcher left there that is not a pipe). Call once.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), corral_protocol::ProtocolError> {
    /// let boot = corral_protocol::bootstrap::WorkerBootstrap::from_env()?.expect("a worker");
    /// if let Some(pipe) = boot.take_hang_fd() {
    ///     // Hang reports are written to `pipe`.
    /// #   drop(pipe);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_hang_fd(&self) -> Option<OwnedFd> {
        // SAFETY: fstat only reads the fd's metadata; an fd that is not open gives EBADF.
        let stat = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(HANG_FD) }).ok()?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
            return None;
        }
        // SAFETY: the primary placed this pipe at HANG_FD for us alone (dup2 in the spawner),
        // it is open (fstat above), and this is the only place that takes ownership of it.
        let owned = unsafe { OwnedFd::from_raw_fd(HANG_FD) };
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
        Some(owned)
    }
}

fn parse<T>(vars: &HashMap<String, String>, var: &'static str) -> Result<T, BootstrapFault>
where
    T: std::str::FromStr<Err = std::num::ParseIntError>,
{
    let value = vars.get(var).ok_or(BootstrapFault::Missing { var })?;
    value.parse().map_err(|source| BootstrapFault::Invalid { var, value: value.clone(), source })
}

fn take_socket_fd(fd: RawFd) -> Result<OwnedFd, BootstrapFault> {
    // SAFETY: fstat only reads the fd's metadata; an fd that is not open gives EBADF.
    let stat = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        .map_err(|errno| BootstrapFault::FdNotOpen { fd, errno })?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(BootstrapFault::FdNotSocket { fd });
    }
    // SAFETY: the primary placed this socket at `fd` for us alone (dup2 in the spawner), we
    // checked above that it is open, and this is the only place that takes ownership of it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|errno| BootstrapFault::Cloexec { fd, errno })?;
    Ok(owned)
}
