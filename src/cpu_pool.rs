//! CPU-heavy work off a worker's event loop: every worker has a [`CpuPoolHandle`]
//! ([`WorkerContext::cpu_pool`](crate::WorkerContext::cpu_pool)) to a pool of dedicated OS
//! threads, sized by `ClusterConfig::cpu_threads` (default [`default_threads`]); a full queue
//! answers [`CpuPoolError::Busy`] rather than piling work up. [`CpuPool`] starts a pool of
//! your own from a [`CpuPoolConfig`].
//!
//! # Example
//!
//! ```
//! use corral::cpu_pool::CpuPoolError;
//! use corral::{BoxError, Worker, WorkerContext};
//!
//! struct Hasher;
//!
//! impl Worker for Hasher {
//!     type Msg = u64;
//!     type Report = u64;
//!     type State = ();
//!
//!     async fn start(&self, _cx: &WorkerContext<u64>) -> Result<(), BoxError> {
//!         Ok(())
//!     }
//!
//!     async fn handle(&self, cx: &WorkerContext<u64>, n: u64, _: &mut ()) -> Result<(), BoxError> {
//!         match cx.cpu_pool().run(move || (0..n).sum::<u64>()).await {
//!             Ok(sum) => cx.report(sum).await?,
//!             Err(CpuPoolError::Busy) => tracing::warn!("pool full, {n} dropped"),
//!             Err(e) => return Err(e.into()),
//!         }
//!         Ok(())
//!     }
//! }
//! ```

pub use corral_workers::{
    CpuPool, CpuPoolConfig, CpuPoolConfigFault, CpuPoolError, CpuPoolHandle, CpuPoolMsg, CpuPoolState, CpuPoolStats,
    CpuTask, default_threads,
};
