//! The death notice: how the primary learns that a worker is dying before the kernel has torn
//! it down.
//!
//! A process's exit becomes visible to its parent (`pidfd` readable, `SIGCHLD`, EOF on its
//! sockets) only at the end of `do_exit`, after the kernel has unmapped its whole address
//! space and closed its fds: 0.4–1 ms for a corral worker on a 2-vCPU VM, most of it in
//! `exit_mmap`. A warm spare cannot take a killed worker's place sooner than the primary
//! knows, so that teardown was most of kill → served.
//!
//! The kernel does one thing for a dying thread *before* that teardown: it walks the thread's
//! robust-futex list (`exit_mm_release` → `exit_robust_list`) and, for every robust mutex the
//! thread still holds, marks it owner-died and wakes one waiter, even across processes when
//! the mutex lives in shared memory. So:
//!
//! - the primary makes one page of shared memory per worker (a sealed `memfd`) holding a
//!   process-shared robust `pthread_mutex_t` ([`DeathNotice::new`]) and gives the worker the
//!   memfd at [`DEATH_NOTICE_FD`];
//! - the worker's event-loop thread locks it before it says hello and holds it for its life
//!   ([`hold_inherited`]);
//! - once the worker is online, a watcher thread of the primary blocks in
//!   `pthread_mutex_lock` on it ([`DeathNotice::wait`]), which returns `EOWNERDEAD` the
//!   moment the worker's thread starts to exit: about 0.05 ms after a `SIGKILL`.
//!
//! Only for corral's own workers: a foreign program execs, and an exec releases the robust
//! list too (it would read as a death).
//!
//! ```
//! use corral_protocol::death_notice::{DeathNotice, Notice};
//!
//! let notice = DeathNotice::new().unwrap();
//! // Nobody holds it (no worker locked it): the wait says so at once.
//! assert_eq!(notice.wait(), Notice::NotHeld);
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::bootstrap::DEATH_NOTICE_FD;

/// Bytes of the shared page (one page; the mutex is 40 bytes on x86_64 and aarch64).
const PAGE: usize = 4096;

/// The memfd's name, as `/proc/PID/fd` shows it (`/memfd:corral-death-notice`).
const NAME: &std::ffi::CStr = c"corral-death-notice";

/// Why a death notice could not be made or taken (the worker's death is then seen at its
/// exit, as for any process).
#[derive(Debug, thiserror::Error)]
#[error("death notice: {what}: {source}")]
pub struct DeathNoticeError {
    what: &'static str,
    source: io::Error,
}

impl DeathNoticeError {
    fn os(what: &'static str) -> Self {
        DeathNoticeError { what, source: io::Error::last_os_error() }
    }

    fn code(what: &'static str, code: i32) -> Self {
        DeathNoticeError { what, source: io::Error::from_raw_os_error(code) }
    }
}

/// What [`DeathNotice::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The thread that held the mutex is exiting (or has exited): the worker is dying.
    OwnerDied,
    /// Nobody held the mutex: the worker never locked it (it is not a corral worker, or it
    /// died before it got that far). Nothing is known.
    NotHeld,
    /// Waiting failed (an error code `pthread_mutex_lock` is not documented to give here).
    Failed(i32),
}

/// One page of shared memory holding a process-shared robust mutex: the primary's side of a
/// worker's death notice (see the [module docs](self)).
#[derive(Debug)]
pub struct DeathNotice {
    mutex: NonNull<libc::pthread_mutex_t>,
    /// The memfd, until the spawner takes it ([`DeathNotice::take_fd`]).
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is shared memory that stays mapped while `self` lives; the mutex in it
// is process-shared and meant to be used from any thread of any process. Nothing else holds
// the pointer.
unsafe impl Send for DeathNotice {}

impl DeathNotice {
    /// A new, unlocked notice: a sealed one-page memfd (close-on-exec: the spawner moves it to
    /// [`DEATH_NOTICE_FD`] in the child), mapped here, with the mutex initialised.
    ///
    /// # Errors
    ///
    /// A system call failed (`memfd_create`, `ftruncate`, `fcntl`, `mmap`, or the mutex's
    /// initialisation).
    pub fn new() -> Result<Self, DeathNoticeError> {
        // SAFETY: memfd_create reads a NUL-terminated name and returns a new fd or -1.
        let raw = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(DeathNoticeError::os("memfd_create"));
        }
        // SAFETY: memfd_create just returned this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on an fd we own, with an integer size.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) } < 0 {
            return Err(DeathNoticeError::os("ftruncate"));
        }
        // A fixed size: neither side can shrink the page under the other's mapping (SIGBUS).
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on an fd we own, with integer arguments only.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(DeathNoticeError::os("F_ADD_SEALS"));
        }
        let mutex = map(fd.as_fd())?;
        let notice = DeathNotice { mutex, fd: Some(fd) };
        // SAFETY: the attribute object is initialised before use and destroyed after; the
        // mutex lies in the fresh zeroed mapping, used by no one yet.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            let mut err = libc::pthread_mutexattr_init(&mut attr);
            if err == 0 {
                err = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            }
            if err == 0 {
                err = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            if err == 0 {
                err = libc::pthread_mutex_init(notice.mutex.as_ptr(), &attr);
            }
            libc::pthread_mutexattr_destroy(&mut attr);
            if err != 0 {
                return Err(DeathNoticeError::code("pthread_mutex_init", err));
            }
        }
        Ok(notice)
    }

    /// Hands over the memfd, for the spawner to place at [`DEATH_NOTICE_FD`] in the worker;
    /// `None` once taken. This side keeps only the mapping, which is all the wait needs.
    ///
    /// ```
    /// let mut notice = corral_protocol::death_notice::DeathNotice::new().unwrap();
    /// assert!(notice.take_fd().is_some());
    /// assert!(notice.take_fd().is_none());
    /// ```
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// Blocks until the thread holding the mutex exits ([`Notice::OwnerDied`]); returns at
    /// once with [`Notice::NotHeld`] when nobody holds it. Call it after the worker said it
    /// holds the mutex (its hello comes after the lock), on a thread that may block: this
    /// can wait for the worker's whole life.
    pub fn wait(self) -> Notice {
        let mutex = self.mutex.as_ptr();
        // SAFETY: `mutex` is the initialised process-shared mutex in our live mapping.
        let first = unsafe { libc::pthread_mutex_trylock(mutex) };
        let result = match first {
            0 => Notice::NotHeld,
            libc::EOWNERDEAD => Notice::OwnerDied,
            // SAFETY: as above; blocks in the kernel until the owner unlocks or dies.
            libc::EBUSY => match unsafe { libc::pthread_mutex_lock(mutex) } {
                // The worker unlocked it: it never does, short of an exec or a bug; either way
                // its thread no longer vouches for the process.
                0 | libc::EOWNERDEAD => Notice::OwnerDied,
                err => return Notice::Failed(err),
            },
            err => return Notice::Failed(err),
        };
        // We hold it now. Leave it consistent and unlocked, which also takes it off this
        // thread's robust list before the page is unmapped (on drop).
        // SAFETY: the mutex is ours (locked by this thread just above).
        unsafe {
            if result == Notice::OwnerDied {
                libc::pthread_mutex_consistent(mutex);
            }
            libc::pthread_mutex_unlock(mutex);
        }
        result
    }
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        // SAFETY: unmaps the page `map` mapped; the mutex in it is not held by this process
        // (`wait` unlocks it before returning) and nothing uses the pointer after this.
        unsafe { libc::munmap(self.mutex.as_ptr().cast(), PAGE) };
    }
}

/// Maps the notice's page, shared, read-write.
fn map(fd: BorrowedFd<'_>) -> Result<NonNull<libc::pthread_mutex_t>, DeathNoticeError> {
    // SAFETY: maps one page of a memfd of exactly one page (sealed against shrinking) at an
    // address of the kernel's choice; no existing memory is touched.
    let at = unsafe {
        libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if at == libc::MAP_FAILED {
        return Err(DeathNoticeError::os("mmap"));
    }
    NonNull::new(at.cast()).ok_or(DeathNoticeError { what: "mmap", source: io::Error::other("null mapping") })
}

/// The worker's side: when the primary placed a death notice at [`DEATH_NOTICE_FD`], maps it,
/// closes the fd and locks the mutex on the calling thread, which must be the one that runs
/// the event loop for the process's whole life: the primary reads that thread's exit as the
/// worker's death. `None` when there is no notice (an older primary; not a memfd of ours);
/// `Some(Err)` when there is one and taking it failed (the primary then sees the death at
/// the exit, as before). Call once, before the hello.
///
/// ```no_run
/// if let Some(Err(e)) = corral_protocol::death_notice::hold_inherited() {
///     eprintln!("the primary learns of this worker's death at its exit only: {e}");
/// }
/// ```
pub fn hold_inherited() -> Option<Result<(), DeathNoticeError>> {
    // SAFETY: F_GET_SEALS reads the fd's seals; an fd that is not open gives EBADF and one
    // that is not a memfd EINVAL: both mean "no notice here".
    let seals = unsafe { libc::fcntl(DEATH_NOTICE_FD, libc::F_GET_SEALS) };
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    if seals < 0 || seals & want != want {
        return None;
    }
    // SAFETY: the primary placed this memfd at DEATH_NOTICE_FD for us alone (dup2 in the
    // spawner), it is open (F_GET_SEALS above), and this is the only place that owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(DEATH_NOTICE_FD) };
    Some(hold(fd))
}

fn hold(fd: OwnedFd) -> Result<(), DeathNoticeError> {
    // SAFETY: a zeroed stat is a valid out-value for fstat to fill.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills `stat` for an fd we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
        return Err(DeathNoticeError::os("fstat"));
    }
    if stat.st_size != PAGE as libc::off_t {
        return Err(DeathNoticeError { what: "fstat", source: io::Error::other("not a one-page notice") });
    }
    let mutex = map(fd.as_fd())?;
    // The mapping outlives the fd; children the worker starts do not inherit it.
    drop(fd);
    // SAFETY: the primary initialised a process-shared robust mutex at the start of this
    // page before it started us; the mapping is never unmapped (it must stay until the
    // process ends, for the kernel to release the lock when this thread exits).
    let err = unsafe { libc::pthread_mutex_lock(mutex.as_ptr()) };
    match err {
        0 => Ok(()),
        libc::EOWNERDEAD => {
            // A previous holder died holding it (it cannot: the page is ours alone); take it
            // all the same.
            // SAFETY: we hold it now (EOWNERDEAD locks it).
            unsafe { libc::pthread_mutex_consistent(mutex.as_ptr()) };
            Ok(())
        }
        err => Err(DeathNoticeError::code("pthread_mutex_lock", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_forked_holder_that_is_killed_is_seen_dying_before_it_is_reaped() {
        let notice = DeathNotice::new().unwrap();
        let (mut read, mut write) = std::io::pipe().unwrap();
        // SAFETY: the child only locks (a futex call), writes one byte and pauses: no
        // allocation after fork in this single-purpose test process path.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: the mutex is the initialised shared one, inherited mapped.
            unsafe {
                libc::pthread_mutex_lock(notice.mutex.as_ptr());
                use std::io::Write;
                let _ = write.write_all(b"x");
                loop {
                    libc::pause();
                }
            }
        }
        drop(write);
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut read, &mut byte).unwrap();
        let waiter = std::thread::spawn(move || notice.wait());
        // SAFETY: kill takes integers; the pid is our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let started = Instant::now();
        while !waiter.is_finished() {
            assert!(started.elapsed() < Duration::from_secs(10), "no notice");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(waiter.join().unwrap(), Notice::OwnerDied);
        let mut status = 0;
        // SAFETY: reaps our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    }

    #[test]
    fn a_notice_nobody_holds_says_so() {
        let notice = DeathNotice::new().unwrap();
        assert_eq!(notice.wait(), Notice::NotHeld);
    }
}
