//! The restart policy, case by case, in the words of OTP's supervisor documentation:
//! restart type × kind of exit × uptime × intensity window.

use std::time::{Duration, Instant};

use super::{Decision, Done, Exit, Launch, ProtocolFault, RestartPolicy};
use crate::supervision::backoff::Backoff;
use crate::supervision::exit::ExitStatus;
use crate::supervision::restart::Restart;

const MIN_UPTIME: Duration = Duration::from_secs(1);
const PERIOD: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// base 100 ms, ×2, cap 1 s, jitter 0.5; min_uptime 1 s; 3 restarts per 10 s.
fn policy(restart: Restart) -> RestartPolicy {
    policy_with(restart, 3)
}

fn policy_with(restart: Restart, max_restarts: u32) -> RestartPolicy {
    let backoff = Backoff { base: ms(100), factor: 2.0, max: Duration::from_secs(1), jitter: 0.5 };
    RestartPolicy::new(restart, backoff, MIN_UPTIME, max_restarts, PERIOD)
}

fn exit(status: ExitStatus) -> Exit {
    Exit {
        requested: false,
        status,
        uptime: Duration::from_secs(60),
        was_ready: true,
        protocol: ProtocolFault::None,
        launch: Launch::Started,
        condemned: false,
    }
}

/// A start that failed: `launch` says why.
fn not_started(launch: Launch) -> Exit {
    Exit {
        status: ExitStatus { code: None, signal: None },
        uptime: Duration::ZERO,
        was_ready: false,
        launch,
        ..clean()
    }
}

fn clean() -> Exit {
    exit(ExitStatus { code: Some(0), signal: None })
}

fn crash() -> Exit {
    exit(ExitStatus { code: Some(1), signal: None })
}

fn killed() -> Exit {
    exit(ExitStatus { code: None, signal: Some(9) })
}

fn early(mut e: Exit) -> Exit {
    e.uptime = ms(200);
    e
}

fn at_once() -> Decision {
    Decision::Restart { delay: Duration::ZERO, attempt: 0 }
}

fn after(delay: Duration, attempt: u32) -> Decision {
    Decision::Restart { delay, attempt }
}

// Restart types: "A permanent child process is always restarted."

#[test]
fn a_permanent_worker_is_restarted_after_a_clean_exit() {
    assert_eq!(policy(Restart::Permanent).decide(&clean(), Instant::now(), 0.0), at_once());
}

#[test]
fn a_permanent_worker_is_restarted_after_a_crash() {
    assert_eq!(policy(Restart::Permanent).decide(&crash(), Instant::now(), 0.0), at_once());
}

#[test]
fn a_permanent_worker_is_restarted_after_a_signal() {
    assert_eq!(policy(Restart::Permanent).decide(&killed(), Instant::now(), 0.0), at_once());
}

// "A transient child process is restarted only if it terminates abnormally."

#[test]
fn a_transient_worker_that_exits_with_code_0_is_not_restarted() {
    assert_eq!(policy(Restart::Transient).decide(&clean(), Instant::now(), 0.0), Decision::Done(Done::NotRestarted));
}

#[test]
fn a_transient_worker_that_exits_with_a_non_zero_code_is_restarted() {
    assert_eq!(policy(Restart::Transient).decide(&crash(), Instant::now(), 0.0), at_once());
}

#[test]
fn a_transient_worker_killed_by_a_signal_is_restarted() {
    assert_eq!(policy(Restart::Transient).decide(&killed(), Instant::now(), 0.0), at_once());
}

#[test]
fn a_worker_condemned_by_its_probe_is_restarted_even_after_a_clean_exit() {
    // Drained after failed liveness probes, it exited 0 as a drained worker does.
    let condemned = Exit { condemned: true, ..clean() };
    assert_eq!(policy(Restart::Transient).decide(&condemned, Instant::now(), 0.0), at_once());
    assert_eq!(policy(Restart::Permanent).decide(&condemned, Instant::now(), 0.0), at_once());
    assert_eq!(policy(Restart::Temporary).decide(&condemned, Instant::now(), 0.0), Decision::Done(Done::NotRestarted));
}

// "A temporary child process is never restarted."

#[test]
fn a_temporary_worker_is_not_restarted_after_a_crash() {
    assert_eq!(policy(Restart::Temporary).decide(&crash(), Instant::now(), 0.0), Decision::Done(Done::NotRestarted));
}

#[test]
fn a_temporary_worker_is_not_restarted_after_a_clean_exit() {
    assert_eq!(policy(Restart::Temporary).decide(&clean(), Instant::now(), 0.0), Decision::Done(Done::NotRestarted));
}

// Exits the cluster asked for (stop, scale-down) are never restarted, whatever the type.

#[test]
fn a_requested_exit_of_a_permanent_worker_is_not_restarted() {
    let e = Exit { requested: true, ..clean() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), Decision::Done(Done::Requested));
}

#[test]
fn a_requested_exit_is_not_restarted_even_when_it_crashed() {
    let e = Exit { requested: true, ..crash() };
    assert_eq!(policy(Restart::Transient).decide(&e, Instant::now(), 0.0), Decision::Done(Done::Requested));
}

#[test]
fn a_requested_exit_wins_over_a_fatal_protocol_error() {
    let e = Exit { requested: true, protocol: ProtocolFault::Fatal, ..crash() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), Decision::Done(Done::Requested));
}

#[test]
fn requested_exits_do_not_count_toward_the_intensity() {
    let mut p = policy_with(Restart::Permanent, 1);
    let now = Instant::now();
    for _ in 0..5 {
        p.decide(&Exit { requested: true, ..crash() }, now, 0.0);
    }
    assert_eq!(p.decide(&crash(), now, 0.0), at_once());
}

// Uptime and backoff: a worker that lived `min_uptime` is restarted at once; early deaths wait.

#[test]
fn a_worker_that_was_up_for_min_uptime_is_restarted_at_once() {
    let e = Exit { uptime: MIN_UPTIME, ..crash() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), at_once());
}

#[test]
fn an_early_death_waits_the_base_delay() {
    assert_eq!(policy(Restart::Permanent).decide(&early(crash()), Instant::now(), 0.0), after(ms(100), 1));
}

#[test]
fn consecutive_early_deaths_wait_longer_each_time() {
    let mut p = policy_with(Restart::Permanent, 100);
    let now = Instant::now();
    let delays: Vec<Decision> = (0..4).map(|_| p.decide(&early(crash()), now, 0.0)).collect();
    assert_eq!(delays, vec![after(ms(100), 1), after(ms(200), 2), after(ms(400), 3), after(ms(800), 4)]);
}

#[test]
fn the_backoff_delay_is_capped() {
    let mut p = policy_with(Restart::Permanent, 100);
    let now = Instant::now();
    let last = (0..10).map(|_| p.decide(&early(crash()), now, 0.0)).last();
    assert_eq!(last, Some(after(Duration::from_secs(1), 10)));
}

#[test]
fn a_worker_that_lived_long_enough_resets_the_backoff() {
    let mut p = policy_with(Restart::Permanent, 100);
    let now = Instant::now();
    p.decide(&early(crash()), now, 0.0);
    p.decide(&early(crash()), now, 0.0);
    assert_eq!(p.decide(&crash(), now, 0.0), at_once());
    assert_eq!(p.decide(&early(crash()), now, 0.0), after(ms(100), 1));
}

#[test]
fn a_worker_that_never_became_ready_died_early_however_long_it_ran() {
    let e = Exit { was_ready: false, uptime: Duration::from_secs(3600), ..crash() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), after(ms(100), 1));
}

#[test]
fn jitter_takes_off_at_most_its_fraction_of_the_delay() {
    let now = Instant::now();
    assert_eq!(policy(Restart::Permanent).decide(&early(crash()), now, 1.0), after(ms(50), 1));
    assert_eq!(policy(Restart::Permanent).decide(&early(crash()), now, 0.5), after(ms(75), 1));
}

// Protocol errors.

#[test]
fn a_recoverable_protocol_error_is_an_early_death() {
    let e = Exit { protocol: ProtocolFault::Recoverable, ..killed() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), after(ms(100), 1));
}

#[test]
fn a_protocol_version_mismatch_gives_up_at_once() {
    let e = Exit { protocol: ProtocolFault::Fatal, ..killed() };
    assert_eq!(policy(Restart::Permanent).decide(&e, Instant::now(), 0.0), Decision::GiveUp { restarts: 0 });
}

// Intensity: "If more than MaxR restarts occur within MaxT seconds, the supervisor terminates
// all the child processes and then itself."

#[test]
fn max_restarts_within_the_period_are_allowed() {
    let mut p = policy(Restart::Permanent);
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(p.decide(&crash(), t0 + Duration::from_secs(i), 0.0), at_once(), "restart {i}");
    }
    assert_eq!(p.restarts_in_window(), 3);
}

#[test]
fn one_restart_more_within_the_period_gives_up() {
    let mut p = policy(Restart::Permanent);
    let t0 = Instant::now();
    for i in 0..3 {
        p.decide(&crash(), t0 + Duration::from_secs(i), 0.0);
    }
    assert_eq!(p.decide(&crash(), t0 + Duration::from_secs(3), 0.0), Decision::GiveUp { restarts: 3 });
}

#[test]
fn restarts_older_than_the_period_leave_the_window() {
    let mut p = policy(Restart::Permanent);
    let t0 = Instant::now();
    for i in 0..3 {
        p.decide(&crash(), t0 + Duration::from_secs(i), 0.0);
    }
    assert_eq!(p.decide(&crash(), t0 + PERIOD + Duration::from_secs(1), 0.0), at_once());
}

#[test]
fn every_restart_counts_toward_the_intensity_not_only_early_ones() {
    let mut p = policy_with(Restart::Permanent, 2);
    let t0 = Instant::now();
    assert_eq!(p.decide(&crash(), t0, 0.0), at_once());
    assert_eq!(p.decide(&crash(), t0 + Duration::from_secs(2), 0.0), at_once());
    assert_eq!(p.decide(&crash(), t0 + Duration::from_secs(4), 0.0), Decision::GiveUp { restarts: 2 });
}

#[test]
fn a_refused_restart_is_not_counted() {
    let mut p = policy_with(Restart::Permanent, 1);
    let t0 = Instant::now();
    p.decide(&crash(), t0, 0.0);
    for _ in 0..3 {
        assert_eq!(p.decide(&crash(), t0 + Duration::from_secs(1), 0.0), Decision::GiveUp { restarts: 1 });
    }
    assert_eq!(p.restarts_in_window(), 1);
}

#[test]
fn an_intensity_of_zero_gives_up_on_the_first_exit() {
    assert_eq!(
        policy_with(Restart::Permanent, 0).decide(&crash(), Instant::now(), 0.0),
        Decision::GiveUp { restarts: 0 }
    );
}

#[test]
fn exits_that_are_not_restarted_do_not_count_toward_the_intensity() {
    let mut p = policy_with(Restart::Transient, 1);
    let now = Instant::now();
    for _ in 0..5 {
        assert_eq!(p.decide(&clean(), now, 0.0), Decision::Done(Done::NotRestarted));
    }
    assert_eq!(p.decide(&crash(), now, 0.0), at_once());
}

#[test]
fn early_deaths_hit_the_intensity_limit_too() {
    let mut p = policy(Restart::Permanent);
    let t0 = Instant::now();
    let decisions: Vec<Decision> = (0..4).map(|i| p.decide(&early(crash()), t0 + ms(i * 300), 0.0)).collect();
    assert_eq!(
        decisions,
        vec![after(ms(100), 1), after(ms(200), 2), after(ms(400), 3), Decision::GiveUp { restarts: 3 }]
    );
}

// A start that failed for want of a resource (EAGAIN from fork, ENOMEM, EMFILE) is retried with
// the backoff, never counted toward the intensity; one that failed otherwise is an early death.

#[test]
fn starved_starts_are_retried_with_backoff_outside_the_intensity() {
    let mut p = policy_with(Restart::Permanent, 2);
    let t = Instant::now();
    let mut last = Duration::ZERO;
    for n in 1..=20u32 {
        match p.decide(&not_started(Launch::Starved), t + ms(u64::from(n)), 0.0) {
            Decision::Restart { delay, attempt } => {
                assert_eq!(attempt, n);
                assert!(delay >= last, "the backoff grows (or stays at its cap)");
                last = delay;
            }
            other => panic!("starved start {n}: {other:?}"),
        }
    }
    assert_eq!(last, Duration::from_secs(1), "capped at the backoff's max");
    assert_eq!(p.restarts_in_window(), 0, "none counted");
    // Once the shortage is over, the intensity is whole.
    assert!(matches!(p.decide(&crash(), t + ms(30), 0.0), Decision::Restart { .. }));
    assert!(matches!(p.decide(&crash(), t + ms(31), 0.0), Decision::Restart { .. }));
    assert!(matches!(p.decide(&crash(), t + ms(32), 0.0), Decision::GiveUp { restarts: 2 }));
}

#[test]
fn a_program_that_cannot_be_started_gives_up_like_an_early_death() {
    let mut p = policy_with(Restart::Permanent, 2);
    let t = Instant::now();
    assert!(matches!(p.decide(&not_started(Launch::Failed), t, 0.0), Decision::Restart { attempt: 1, .. }));
    assert!(matches!(p.decide(&not_started(Launch::Failed), t + ms(1), 0.0), Decision::Restart { attempt: 2, .. }));
    assert!(matches!(p.decide(&not_started(Launch::Failed), t + ms(2), 0.0), Decision::GiveUp { restarts: 2 }));
}

#[test]
fn a_starved_start_of_a_temporary_worker_is_not_retried() {
    let mut p = policy_with(Restart::Temporary, 5);
    assert_eq!(p.decide(&not_started(Launch::Starved), Instant::now(), 0.0), Decision::Done(Done::NotRestarted));
}

#[test]
fn fork_errors_are_classed_by_errno() {
    let e = |errno: i32| std::io::Error::from_raw_os_error(errno);
    assert_eq!(Launch::of_error(&e(libc::EAGAIN)), Launch::Starved);
    assert_eq!(Launch::of_error(&e(libc::ENOMEM)), Launch::Starved);
    assert_eq!(Launch::of_error(&e(libc::EMFILE)), Launch::Starved);
    assert_eq!(Launch::of_error(&e(libc::ENFILE)), Launch::Starved);
    assert_eq!(Launch::of_error(&e(libc::ENOENT)), Launch::Failed);
    assert_eq!(Launch::of_error(&e(libc::EACCES)), Launch::Failed);
    assert_eq!(Launch::of_error(&std::io::Error::other("no errno")), Launch::Failed);
}
