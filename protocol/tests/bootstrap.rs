//! The worker bootstrap: environment variables written by the primary and read back by the
//! worker, and the inherited fds (checked in a child process started with fds 3 and 4 set).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use corral_protocol::bootstrap::{
    CPU_THREADS_ENV, GENERATION_ENV, HANDLE_FD, IPC_FD, MAX_FRAME_ENV, PRIMARY_PID_ENV, SLOT_ENV, WORKER_ENV,
    WorkerBootstrap,
};
use corral_protocol::{BootstrapFault, ProtocolError};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{SockType, getsockopt, sockopt};
use proptest::prelude::*;

const ALL_VARS: [&str; 6] = [WORKER_ENV, SLOT_ENV, GENERATION_ENV, PRIMARY_PID_ENV, MAX_FRAME_ENV, CPU_THREADS_ENV];

fn sample() -> WorkerBootstrap {
    WorkerBootstrap { slot: 3, generation: 12, primary_pid: 4321, max_frame_length: 1 << 20, cpu_threads: 2 }
}

fn env_of(boot: &WorkerBootstrap) -> HashMap<String, String> {
    boot.to_env().into_iter().collect()
}

fn bootstrap_error(vars: &HashMap<String, String>) -> BootstrapFault {
    match WorkerBootstrap::from_vars(vars) {
        Err(ProtocolError::Bootstrap(fault)) => fault,
        other => panic!("expected a Bootstrap error, got {other:?}"),
    }
}

#[test]
fn constants() {
    assert_eq!(IPC_FD, 3);
    assert_eq!(HANDLE_FD, 4);
    let mut names = ALL_VARS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL_VARS.len(), "variable names must be distinct");
    assert!(ALL_VARS.iter().all(|n| n.starts_with("CORRAL_")));
}

#[test]
fn to_env_writes_every_variable_once() {
    let pairs = sample().to_env();
    assert_eq!(pairs.len(), 6);
    let env = env_of(&sample());
    assert_eq!(env.len(), 6);
    assert_eq!(env[WORKER_ENV], "1");
    assert_eq!(env[SLOT_ENV], "3");
    assert_eq!(env[GENERATION_ENV], "12");
    assert_eq!(env[PRIMARY_PID_ENV], "4321");
    assert_eq!(env[MAX_FRAME_ENV], "1048576");
    assert_eq!(env[CPU_THREADS_ENV], "2");
}

#[test]
fn no_marker_means_primary() {
    assert_eq!(WorkerBootstrap::from_vars(&HashMap::new()).unwrap(), None);
    // The other variables without the marker do not make a worker either.
    let mut env = env_of(&sample());
    env.remove(WORKER_ENV);
    assert_eq!(WorkerBootstrap::from_vars(&env).unwrap(), None);
}

#[test]
fn round_trip_with_unrelated_variables_around() {
    let mut env = env_of(&sample());
    env.insert("PATH".into(), "/usr/bin".into());
    env.insert("CORRAL_OTHER".into(), "x".into());
    assert_eq!(WorkerBootstrap::from_vars(&env).unwrap(), Some(sample()));
}

#[test]
fn each_missing_variable_is_named() {
    for missing in [SLOT_ENV, GENERATION_ENV, PRIMARY_PID_ENV, MAX_FRAME_ENV, CPU_THREADS_ENV] {
        let mut env = env_of(&sample());
        env.remove(missing);
        assert_eq!(bootstrap_error(&env), BootstrapFault::Missing { var: missing });
    }
}

#[test]
fn each_malformed_variable_is_named_with_its_value() {
    let bad_values = ["", "abc", "-1", "1.5", " 7", "7 ", "0x10", "99999999999999999999999"];
    for var in [SLOT_ENV, GENERATION_ENV, PRIMARY_PID_ENV, MAX_FRAME_ENV, CPU_THREADS_ENV] {
        for value in bad_values {
            let mut env = env_of(&sample());
            env.insert(var.to_string(), value.to_string());
            let fault = bootstrap_error(&env);
            assert!(
                matches!(fault, BootstrapFault::Invalid { var: v, value: ref got, .. } if v == var && got == value),
                "{var}={value:?}: {fault:?}"
            );
        }
    }
}

#[test]
fn error_texts_name_the_variable_and_its_value() {
    let mut env = env_of(&sample());
    env.remove(SLOT_ENV);
    let err = WorkerBootstrap::from_vars(&env).unwrap_err();
    assert_eq!(err.to_string(), "bad worker environment: CORRAL_SLOT is not set");
    env.insert(SLOT_ENV.to_string(), "abc".to_string());
    let err = WorkerBootstrap::from_vars(&env).unwrap_err();
    assert_eq!(err.to_string(), "bad worker environment: CORRAL_SLOT=\"abc\" is not a valid number");
    // The parse error stays reachable as the source.
    let source = std::error::Error::source(&err).and_then(std::error::Error::source).expect("a source");
    assert_eq!(source.to_string(), "invalid digit found in string");
}

#[test]
fn values_out_of_range_for_their_type_are_refused() {
    // slot and primary_pid are u32.
    for var in [SLOT_ENV, PRIMARY_PID_ENV] {
        let mut env = env_of(&sample());
        env.insert(var.to_string(), (u64::from(u32::MAX) + 1).to_string());
        assert!(matches!(bootstrap_error(&env), BootstrapFault::Invalid { var: v, .. } if v == var));
    }
    // generation is u64.
    let mut env = env_of(&sample());
    env.insert(GENERATION_ENV.to_string(), (u128::from(u64::MAX) + 1).to_string());
    assert!(matches!(bootstrap_error(&env), BootstrapFault::Invalid { var: GENERATION_ENV, .. }));
}

#[test]
fn extremes_round_trip() {
    for boot in [
        WorkerBootstrap { slot: 0, generation: 0, primary_pid: 0, max_frame_length: 0, cpu_threads: 0 },
        WorkerBootstrap {
            slot: u32::MAX,
            generation: u64::MAX,
            primary_pid: u32::MAX,
            max_frame_length: usize::MAX,
            cpu_threads: usize::MAX,
        },
    ] {
        assert_eq!(WorkerBootstrap::from_vars(&env_of(&boot)).unwrap(), Some(boot));
    }
}

proptest! {
    #![proptest_config(common::config(256))]

    #[test]
    fn to_env_from_vars_round_trip(
        slot in any::<u32>(),
        generation in any::<u64>(),
        primary_pid in any::<u32>(),
        max_frame_length in any::<usize>(),
        cpu_threads in any::<usize>(),
    ) {
        let boot = WorkerBootstrap { slot, generation, primary_pid, max_frame_length, cpu_threads };
        prop_assert_eq!(WorkerBootstrap::from_vars(&env_of(&boot)).unwrap(), Some(boot));
    }
}

// ---- inherited fds, in a child process -----------------------------------------------------

/// Which scenario the child runs; absent in a normal test run.
const CHILD_MODE_ENV: &str = "CORRAL_PROTOCOL_TEST_CHILD";
const CHILD_TEST: &str = "take_fds_child";
const CHILD_DONE: &str = "take_fds_child: done";

fn cloexec(fd: impl AsFd) -> bool {
    FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

/// The child's half: run only when the parent test below starts this binary with the mode
/// variable set and fds 3 and 4 in place.
#[test]
#[ignore = "run in a child process by take_fds_in_a_child_process"]
fn take_fds_child() {
    let Ok(mode) = std::env::var(CHILD_MODE_ENV) else {
        return;
    };
    let boot = WorkerBootstrap::from_env().unwrap().expect("worker marker set by the parent");
    assert_eq!(boot, sample());
    match mode.as_str() {
        "sockets" => {
            // Inherited without close-on-exec (dup2 clears it).
            assert!(!cloexec(unsafe { std::os::fd::BorrowedFd::borrow_raw(IPC_FD) }));
            let (ipc, handle) = boot.take_fds().unwrap();
            assert!(cloexec(&ipc));
            assert!(cloexec(&handle));
            assert_eq!(getsockopt(&ipc, sockopt::SockType).unwrap(), SockType::Stream);
            assert_eq!(getsockopt(&handle, sockopt::SockType).unwrap(), SockType::SeqPacket);
            UnixStream::from(ipc).write_all(b"hello from the child").unwrap();
        }
        "not-a-socket" => match boot.take_fds() {
            Err(ProtocolError::Bootstrap(fault)) => assert_eq!(fault, BootstrapFault::FdNotSocket { fd: IPC_FD }),
            other => panic!("{other:?}"),
        },
        "closed" => match boot.take_fds() {
            Err(ProtocolError::Bootstrap(fault)) => {
                assert_eq!(fault, BootstrapFault::FdNotOpen { fd: HANDLE_FD, errno: nix::errno::Errno::EBADF })
            }
            other => panic!("{other:?}"),
        },
        other => panic!("unknown mode {other}"),
    }
    println!("{CHILD_DONE}");
}

/// A close-on-exec copy of `fd` numbered 10 or above, so that moving it to 3 or 4 in the
/// child cannot clobber (or be a no-op on) the other source fd.
fn high_copy(fd: OwnedFd) -> OwnedFd {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap();
    // SAFETY: fcntl just created `raw` for us alone.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Starts this test binary again, running only `take_fds_child`, with `fd3` at fd 3 and `fd4`
/// at fd 4 (or fd 4 closed). Returns the child's stdout.
fn run_child(mode: &str, fd3: OwnedFd, fd4: Option<OwnedFd>) -> String {
    let fd3 = high_copy(fd3);
    let fd4 = fd4.map(high_copy);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE_ENV, mode)
        .envs(sample().to_env());
    let raw3 = std::os::fd::AsRawFd::as_raw_fd(&fd3);
    let raw4 = fd4.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // SAFETY: between fork and exec only dup2 and close are called (async-signal-safe); the
    // `OwnedFd`s made from 3 and 4 are never dropped (`ManuallyDrop`), so nothing is closed
    // twice, and `close(4)` consumes its own.
    unsafe {
        cmd.pre_exec(move || {
            let src3 = std::os::fd::BorrowedFd::borrow_raw(raw3);
            let mut dst3 = ManuallyDrop::new(OwnedFd::from_raw_fd(IPC_FD));
            nix::unistd::dup2(src3, &mut dst3)?;
            match raw4 {
                Some(raw4) => {
                    let src4 = std::os::fd::BorrowedFd::borrow_raw(raw4);
                    let mut dst4 = ManuallyDrop::new(OwnedFd::from_raw_fd(HANDLE_FD));
                    nix::unistd::dup2(src4, &mut dst4)?;
                }
                None => {
                    // Make sure nothing inherited sits at fd 4; EBADF is fine.
                    let _ = nix::unistd::close(HANDLE_FD);
                }
            }
            Ok(())
        });
    }
    let output = cmd.output().unwrap();
    drop((fd3, fd4));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(CHILD_DONE), "the child test did not run:\n{stdout}");
    stdout
}

#[test]
fn take_fds_in_a_child_process() {
    let ipc = corral_protocol::stream_pair().unwrap();
    let handle = corral_protocol::seqpacket_pair().unwrap();
    run_child("sockets", ipc.worker, Some(handle.worker));
    // The child wrote on its end of the frame stream: the fds really were ours.
    let mut primary = UnixStream::from(ipc.primary);
    primary.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 20];
    primary.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello from the child");
}

#[test]
fn take_fds_refuses_a_fd_that_is_not_a_socket() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let handle = corral_protocol::seqpacket_pair().unwrap();
    run_child("not-a-socket", file.into(), Some(handle.worker));
}

#[test]
fn take_fds_refuses_a_closed_fd() {
    let ipc = corral_protocol::stream_pair().unwrap();
    run_child("closed", ipc.worker, None);
}
