//! `CpuPool`: a fixed set of dedicated OS threads for CPU-heavy work inside a worker.
//!
//! A worker runs its event loop on one single-threaded tokio runtime, as a Node worker does:
//! a handler that hashes a password or renders a PDF for 50 ms stalls every connection of the
//! worker and makes it miss its heartbeats. [`CpuPoolHandle::run`] moves such a closure to a
//! pool thread and awaits its result; the event loop keeps serving meanwhile.
//!
//! The design, the stopping rules and an example are on [`CpuPool`] (this module is private;
//! the crate re-exports its items). Its parts, each importing only those below it:
//!
//! * `pool`: the actor, [`CpuPool`], and its state;
//! * `handle`: [`CpuPoolHandle`], what callers keep, and [`CpuPoolMsg`], the actor's messages;
//! * `task`: [`CpuTask`], a queued task as its caller awaits it;
//! * `thread`: the pool threads' side (the job queue, the thread loop, the live counters,
//!   the threads, spawned by the first task);
//! * `spin`: when an awaited task spins instead of letting its runtime park;
//! * `config`, `stats`, `error`: [`CpuPoolConfig`], [`CpuPoolStats`], [`CpuPoolError`].

mod config;
mod error;
mod handle;
mod pool;
mod spin;
mod stats;
mod task;
mod thread;

pub use config::{CpuPoolConfig, default_threads};
pub use error::{CpuPoolConfigFault, CpuPoolError};
pub use handle::{CpuPoolHandle, CpuPoolMsg};
pub use pool::{CpuPool, CpuPoolState};
pub use stats::CpuPoolStats;
pub use task::CpuTask;
