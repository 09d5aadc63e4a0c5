//! Hang dumps: a raw backtrace of the event-loop thread on [`HANG_DUMP_SIGNAL`], for the
//! primary to name and record before it kills a worker that stopped answering heartbeats.
//!
//! Nothing that allocates or locks runs in the signal handler, and the worker starts no thread
//! for this (a worker is a single-threaded process unless its code asks for more):
//!
//! 1. [`install`] (on the event-loop thread, at start) records that thread's id and the top
//!    of its stack and the executable segments of the loaded objects, makes sure the thread
//!    has an alternate signal stack, makes [`HANG_FD`] non-blocking and installs the handler
//!    (`SA_ONSTACK`).
//! 2. The handler runs on the event-loop thread (a copy of the signal delivered to another
//!    thread is forwarded to it with `tgkill`): it walks the frame-pointer chain from the
//!    interrupted registers and scans the stack above the interrupted stack pointer for words
//!    that point into executable code (return addresses; a heuristic, for code built without
//!    frame pointers), into a buffer on the signal stack, and writes them as one
//!    [`hang_record`](corral_protocol::hang_record) straight to [`HANG_FD`], the pipe the
//!    primary gave the worker at start, in one `write` (under `PIPE_BUF`, so atomic). Every
//!    read is bounded by the interrupted stack pointer and the stack's top, so the walk cannot
//!    fault.
//! 3. The primary, which reads that pipe while it diagnoses the hang (the worker is still
//!    alive: the kill comes after), names the addresses from the worker's `/proc/PID/maps` and
//!    the symbol tables of the mapped files. The channel depends neither on the event loop
//!    (stuck) nor on the worker's stdout (maybe not captured).
//!
//! [`HANG_DUMP_SIGNAL`]: corral_protocol::bootstrap::HANG_DUMP_SIGNAL
//! [`HANG_FD`]: corral_protocol::bootstrap::HANG_FD

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use corral_protocol::bootstrap::HANG_DUMP_SIGNAL;
use corral_protocol::hang_record::{self, MAX_FRAMES, MAX_RECORD_BYTES, MAX_SCANNED};

/// Bytes of stack scanned above the interrupted stack pointer, at most.
const SCAN_BYTES: usize = 64 * 1024;
/// Size of the alternate signal stack this module allocates when the thread has none.
const ALT_STACK_BYTES: usize = 64 * 1024;
/// Executable segments remembered for the stack scan, at most.
const MAX_TEXT: usize = 64;

/// The event-loop thread's id (0: not installed).
static EVENT_LOOP_TID: AtomicI32 = AtomicI32::new(0);
/// The top (highest address) of the event-loop thread's stack.
static STACK_TOP: AtomicUsize = AtomicUsize::new(0);
/// The primary's hang pipe ([`HANG_FD`](corral_protocol::bootstrap::HANG_FD)), non-blocking
/// (-1: none).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
/// Set while a dump is being taken: a second signal meanwhile is dropped.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Executable segments of the loaded objects, `(start, end)`, filled once before the handler
/// is installed and only read after.
static TEXT: OnceLock<Vec<(usize, usize)>> = OnceLock::new();

/// Why hang dumps could not be set up (the worker runs on without them).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up hang dumps: {what}: {source}")]
pub(crate) struct InstallError {
    what: &'static str,
    source: io::Error,
}

fn os_error(what: &'static str) -> InstallError {
    InstallError { what, source: io::Error::last_os_error() }
}

/// Sets up hang dumps for the calling thread (the event loop's), reporting to `report`.
/// Call once, from the thread that runs the event loop.
pub(crate) fn install(report: OwnedFd) -> Result<(), InstallError> {
    if EVENT_LOOP_TID.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    let top = stack_top()?;
    ensure_alt_stack()?;
    // The handler must never block on a full pipe.
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    if unsafe { libc::fcntl(report.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(os_error("fcntl"));
    }
    TEXT.get_or_init(text_segments);
    STACK_TOP.store(top, Ordering::Release);
    EVENT_LOOP_TID.store(gettid(), Ordering::Release);
    // The pipe lives as long as the process: the handler may use it at any time.
    REPORT_FD.store(report.into_raw_fd(), Ordering::Release);

    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: sigemptyset fills the mask it is given; sigaction installs a handler that only
    // calls async-signal-safe functions (see `on_signal`) and reads `action` only.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(HANG_DUMP_SIGNAL, &action, std::ptr::null_mut()) < 0 {
            return Err(os_error("sigaction"));
        }
    }
    Ok(())
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    i32::try_from(tid).unwrap_or(0)
}

/// The highest address of the calling thread's stack.
fn stack_top() -> Result<usize, InstallError> {
    // SAFETY: a zeroed pthread_attr_t is filled by pthread_getattr_np before any use, and
    // destroyed after; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let err = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if err != 0 {
            return Err(InstallError { what: "pthread_getattr_np", source: io::Error::from_raw_os_error(err) });
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let err = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if err != 0 {
            return Err(InstallError { what: "pthread_attr_getstack", source: io::Error::from_raw_os_error(err) });
        }
        Ok(addr as usize + size)
    }
}

/// Gives the calling thread an alternate signal stack unless it has one (Rust's runtime
/// installs one on the threads it starts, for its stack-overflow handler).
fn ensure_alt_stack() -> Result<(), InstallError> {
    // SAFETY: a zeroed stack_t is a valid out-value for sigaltstack to fill.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries the current one into `current`.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } < 0 {
        return Err(os_error("sigaltstack"));
    }
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= ALT_STACK_BYTES / 4 {
        return Ok(());
    }
    // Leaked: the signal stack must stay valid for the life of the thread (the process).
    let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK_BYTES].into_boxed_slice());
    let new = libc::stack_t { ss_sp: stack.as_mut_ptr().cast(), ss_flags: 0, ss_size: stack.len() };
    // SAFETY: `new` describes a leaked buffer that stays valid and unused by anything else.
    if unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) } < 0 {
        return Err(os_error("sigaltstack"));
    }
    Ok(())
}

/// The executable `PT_LOAD` segments of every loaded object.
fn text_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and
        // `data` is the Vec passed below, borrowed mutably for the whole iteration.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers of this object.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for h in headers {
            if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 && out.len() < MAX_TEXT {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                out.push((start, start + h.p_memsz as usize));
            }
        }
        0
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and pushes into `out`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut out).cast()) };
    out
}

/// The interrupted program counter, stack pointer and frame pointer.
///
/// # Safety
///
/// `context` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "x86_64")]
unsafe fn registers(context: *mut c_void) -> (usize, usize, usize) {
    // SAFETY: the caller passes the kernel's ucontext_t, valid during the handler.
    let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let reg = |r: libc::c_int| gregs[r as usize] as usize;
    (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP))
}

/// The interrupted program counter, stack pointer and frame pointer.
///
/// # Safety
///
/// `context` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "aarch64")]
unsafe fn registers(context: *mut c_void) -> (usize, usize, usize) {
    // SAFETY: the caller passes the kernel's ucontext_t, valid during the handler.
    let mc = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
    (mc.pc as usize, mc.sp as usize, mc.regs[29] as usize)
}

/// No register access on other architectures: no backtrace.
///
/// # Safety
///
/// Always safe; `unsafe` for the same signature as the others.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn registers(_context: *mut c_void) -> (usize, usize, usize) {
    (0, 0, 0)
}

/// Fills `frames` (the frame-pointer walk) and `scanned` (the stack scan) from the interrupted
/// context; returns how many of each are used. Async-signal-safe: reads memory only within
/// `[sp, top)`, the part of the interrupted thread's stack in use, which is mapped.
///
/// # Safety
///
/// As [`registers`]; called only on the thread whose stack ends at [`STACK_TOP`].
unsafe fn capture(
    context: *mut c_void,
    frames_out: &mut [u64; MAX_FRAMES],
    scanned_out: &mut [u64; MAX_SCANNED],
) -> (usize, usize) {
    // SAFETY: forwarded from the caller.
    let (pc, sp, mut fp) = unsafe { registers(context) };
    let top = STACK_TOP.load(Ordering::Acquire);
    let word = std::mem::size_of::<usize>();
    let mut frames = 0;
    if pc != 0 {
        frames_out[frames] = pc as u64;
        frames += 1;
    }
    // Frame records are [saved fp, return address] on both x86_64 and aarch64.
    while frames < MAX_FRAMES && sp != 0 && fp >= sp && fp % word == 0 && fp.saturating_add(2 * word) <= top {
        // SAFETY: fp and fp + word lie within [sp, top), mapped stack of this thread.
        let (next, ret) = unsafe {
            (std::ptr::read_volatile(fp as *const usize), std::ptr::read_volatile((fp + word) as *const usize))
        };
        if ret < 4096 {
            break;
        }
        frames_out[frames] = ret as u64;
        frames += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    let mut scanned = 0;
    if let Some(text) = TEXT.get()
        && sp != 0
        && sp % word == 0
    {
        let end = top.min(sp.saturating_add(SCAN_BYTES));
        let mut at = sp;
        while at + word <= end && scanned < MAX_SCANNED {
            // SAFETY: `at` lies within [sp, top), mapped stack of this thread, word-aligned.
            let value = unsafe { std::ptr::read_volatile(at as *const usize) };
            if text.iter().any(|&(start, stop)| value > start && value < stop) {
                scanned_out[scanned] = value as u64;
                scanned += 1;
            }
            at += word;
        }
    }
    (frames, scanned)
}

/// The signal handler. Async-signal-safe: atomics, `gettid`, `getpid`, `tgkill`, `write`,
/// reads of the interrupted stack and copies into buffers on the signal stack; no allocation,
/// no lock; errno is preserved.
extern "C" fn on_signal(signal: libc::c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    let saved = nix::errno::Errno::last_raw();
    let target = EVENT_LOOP_TID.load(Ordering::Acquire);
    if gettid() != target {
        if target > 0 {
            // SAFETY: tgkill takes integers only; it signals our own event-loop thread.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), target, signal) };
        }
    } else if !BUSY.swap(true, Ordering::AcqRel) {
        let (mut frames, mut scanned) = ([0u64; MAX_FRAMES], [0u64; MAX_SCANNED]);
        // SAFETY: `context` is the kernel's ucontext_t (SA_SIGINFO), and this is the
        // event-loop thread, whose stack top `capture` bounds its reads with.
        let (f, s) = unsafe { capture(context, &mut frames, &mut scanned) };
        let mut record = [0u8; MAX_RECORD_BYTES];
        let len = hang_record::encode(&mut record, target, &frames[..f], &scanned[..s]);
        let fd = REPORT_FD.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: write reads `len` bytes of `record`, a live local array at least that
            // long; `fd` is the hang pipe this module owns for the life of the process.
            unsafe { libc::write(fd, record.as_ptr().cast(), len) };
        }
        BUSY.store(false, Ordering::Release);
    }
    nix::errno::Errno::set_raw(saved);
}
