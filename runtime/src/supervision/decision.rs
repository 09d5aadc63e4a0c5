//! The restart decision, in the spirit of OTP's `supervisor:do_restart/3` and
//! `add_restart/1`: clock-free, randomness passed in. [`RestartPolicy::decide`] keeps the
//! backoff exponent and the intensity window (it takes `&mut self`), but reads no clock and
//! draws no random number of its own.
//!
//! When a slot's current process ends, the slot asks [`RestartPolicy::decide`] what follows,
//! giving it the [`Exit`] and the time. The answer is one of:
//!
//! * [`Decision::Done`]: the slot ends without a restart, because the cluster asked for the
//!   exit (stop, scale-down) or because the restart type says so (a `Transient` worker that
//!   exited with code 0, any `Temporary` worker);
//! * [`Decision::GiveUp`]: restarting cannot help (the worker speaks another protocol
//!   version) or one more restart would exceed `max_restarts` within `period` (OTP's
//!   *intensity*); the cluster's escalation decides what follows;
//! * [`Decision::Restart`]: restart after a delay. A process that had been ready for at least
//!   `min_uptime` is restarted at once and the backoff resets; an *early death* (shorter
//!   uptime, never ready, or a protocol error) waits `base · factor^n` (jittered, capped), `n`
//!   counting consecutive early deaths.
//!
//! Every restart counts toward the intensity, as in OTP (PM2 counts only early deaths), but
//! one: a process that could not be started because the machine is out of a resource
//! ([`Launch::Starved`]: `EAGAIN`, `ENOMEM`, `EMFILE`) is retried with the backoff for as long
//! as that lasts, outside the intensity. A full process table is not the program's fault, and
//! giving up on it would turn a passing shortage into an outage. A program that cannot be
//! started at all ([`Launch::Failed`]) is an early death like any other.
//! The policy reads no clock and draws no random number: the caller passes `now` and the
//! jitter `draw`, so every decision can be replayed in a test.

use std::time::{Duration, Instant};

use crate::supervision::backoff::Backoff;
use crate::supervision::exit::ExitStatus;
use crate::supervision::intensity::RestartIntensity;
use crate::supervision::restart::Restart;

/// How a slot's current process ended, as far as the restart decision is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The cluster asked for it (the slot is stopping).
    pub requested: bool,
    /// Exit code or signal.
    pub status: ExitStatus,
    /// How long the process ran.
    pub uptime: Duration,
    /// Whether it ever became ready.
    pub was_ready: bool,
    /// Whether it broke the IPC protocol, and whether restarting could fix that.
    pub protocol: ProtocolFault,
    pub launch: Launch,
    /// The slot ended it for a failed health check (its liveness probe): a failure whatever
    /// its exit status, restarted by every restart type but `Temporary`.
    pub condemned: bool,
}

/// Whether the process was started at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// It ran (this is its exit).
    Started,
    /// It could not be started: the machine is out of a resource.
    Starved,
    /// It could not be started for another reason (missing or broken program).
    Failed,
}

impl Launch {
    /// How a failed start is classed: out of a resource, or not.
    pub(crate) fn of_error(e: &std::io::Error) -> Launch {
        use nix::errno::Errno;
        let starved = [Errno::EAGAIN, Errno::ENOMEM, Errno::EMFILE, Errno::ENFILE].map(|e| e as i32);
        match e.raw_os_error() {
            Some(code) if starved.contains(&code) => Launch::Starved,
            _ => Launch::Failed,
        }
    }
}

/// A protocol error behind an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolFault {
    /// None.
    None,
    /// Garbage, a bad frame, no hello in time: a new process may do better.
    Recoverable,
    /// Another protocol version: no restart will fix it.
    Fatal,
}

/// Why a slot ends without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// The cluster asked for the exit.
    Requested,
    /// The restart type does not restart this exit.
    NotRestarted,
}

/// What follows an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No restart: the slot ends.
    Done(Done),
    /// No restart: the slot gives up and escalates.
    GiveUp {
        /// Restarts counted in the intensity window.
        restarts: usize,
    },
    /// Restart after `delay`.
    Restart {
        /// How long to wait.
        delay: Duration,
        /// Consecutive early deaths so far (0 after a process that lived long enough).
        attempt: u32,
    },
}

/// A slot's restart type, backoff and intensity, with the state they keep.
#[derive(Debug, Clone)]
pub(crate) struct RestartPolicy {
    restart: Restart,
    backoff: Backoff,
    min_uptime: Duration,
    intensity: RestartIntensity,
    /// Consecutive early deaths: the backoff exponent.
    attempt: u32,
}

impl RestartPolicy {
    pub(crate) fn new(
        restart: Restart,
        backoff: Backoff,
        min_uptime: Duration,
        max_restarts: u32,
        period: Duration,
    ) -> Self {
        RestartPolicy {
            restart,
            backoff,
            min_uptime,
            intensity: RestartIntensity::new(max_restarts, period),
            attempt: 0,
        }
    }

    /// Restarts counted in the intensity window now.
    #[cfg(test)]
    pub(crate) fn restarts_in_window(&self) -> usize {
        self.intensity.count()
    }

    /// What follows `exit` at `now`; `draw` (0.0 – 1.0) picks the jitter of a backoff delay.
    pub(crate) fn decide(&mut self, exit: &Exit, now: Instant, draw: f64) -> Decision {
        if exit.requested {
            return Decision::Done(Done::Requested);
        }
        if exit.protocol == ProtocolFault::Fatal {
            return Decision::GiveUp { restarts: self.intensity.count() };
        }
        // A condemned process failed, whatever it exited with.
        let restarts = match exit.condemned {
            true => self.restart != Restart::Temporary,
            false => self.restart.should_restart(&exit.status),
        };
        if !restarts {
            return Decision::Done(Done::NotRestarted);
        }
        if exit.launch == Launch::Starved {
            // Outside the intensity (see the module's docs); the backoff still grows.
            let delay = self.backoff.delay_with(self.attempt, draw);
            self.attempt = self.attempt.saturating_add(1);
            return Decision::Restart { delay, attempt: self.attempt };
        }
        if !self.intensity.allow(now) {
            return Decision::GiveUp { restarts: self.intensity.count() };
        }
        let early = exit.protocol != ProtocolFault::None || !exit.was_ready || exit.uptime < self.min_uptime;
        if !early {
            self.attempt = 0;
            return Decision::Restart { delay: Duration::ZERO, attempt: 0 };
        }
        let delay = self.backoff.delay_with(self.attempt, draw);
        self.attempt = self.attempt.saturating_add(1);
        Decision::Restart { delay, attempt: self.attempt }
    }
}

#[cfg(test)]
mod tests;
