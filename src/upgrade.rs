//! Upgrading the primary in place (`corral upgrade`, SIGUSR2,
//! [`ClusterHandle::upgrade`](crate::ClusterHandle::upgrade)): the new binary is checked first
//! (a [`PreflightError`] refuses it), then the primary hands its workers, listeners and state
//! over to it through an `exec`, keeping every worker running. [`UpgradeError`] says why an
//! upgrade did not happen; [`UPGRADE_FD_ENV`] and [`UPGRADE_CHECK_ENV`] are the environment
//! variables the old primary sets for the new one.
//!
//! # Example
//!
//! ```no_run
//! use corral::ClusterHandle;
//! use corral::upgrade::UpgradeError;
//!
//! async fn upgrade(cluster: &ClusterHandle<(), ()>) {
//!     // On success the process is the new binary, and this call never returns.
//!     let error: UpgradeError = match cluster.upgrade().await {
//!         Ok(never) => match never {},
//!         Err(e) => e,
//!     };
//!     eprintln!("upgrade refused, the old primary keeps running: {error}");
//! }
//! ```

pub use corral_runtime::{PreflightError, UPGRADE_CHECK_ENV, UPGRADE_FD_ENV, UpgradeError};
