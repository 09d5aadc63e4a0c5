//! The restart decision, Erlang/OTP style: restart types ([`restart`]), exponential backoff
//! with jitter ([`backoff`]), the restart-intensity window ([`intensity`]), how a process
//! ended ([`exit`]) and why corral killed one ([`kill`]), what the cluster does when a slot
//! gives up ([`escalation`]), and the decision itself
//! ([`decision`]): a slot's exit in, `Restart after d` / `Done` / `GiveUp` out, with no clock
//! and no randomness of its own, tested case by case.

pub(crate) mod backoff;
pub(crate) mod decision;
pub(crate) mod escalation;
pub(crate) mod exit;
pub(crate) mod intensity;
pub(crate) mod kill;
pub(crate) mod restart;
