//! Operating a running cluster. From inside the program, through a
//! [`ClusterHandle`](crate::ClusterHandle): [`reload`](crate::ClusterHandle::reload) (a
//! [`ReloadReport`] or a [`ReloadError`]), [`scale`](crate::ClusterHandle::scale) to a
//! [`Scale`] (a [`ScaleReport`]), [`restart`](crate::ClusterHandle::restart) one slot (who
//! [`Replaced`] whom, or a [`ReplaceError`]), and [`reopen_log_files`]. From outside, over the
//! control socket ([`ControlSocket`]) that `corral status / reload / scale / restart / signal /
//! stop / config / logs` talk to: its wire format is a length-prefixed JSON [`Request`]
//! carrying a [`Command`], answered by [`Response`]s, read and written by [`read_frame`] and
//! [`write_frame`].
//!
//! # Example
//!
//! ```no_run
//! use corral::ClusterHandle;
//! use corral::control::Scale;
//!
//! async fn grow(cluster: &ClusterHandle<(), ()>) -> Result<(), corral::ClusterError> {
//!     let report = cluster.scale(Scale::By(2)).await?;
//!     println!("{report:?}");
//!     let report = cluster.reload().await?;
//!     println!("{report:?}");
//!     Ok(())
//! }
//! ```

pub use corral_runtime::control::{
    CONTROL_VERSION, Command, ControlError, ControlSocket, ErrorKind, FrameError, IDLE_TIMEOUT, MAX_CLIENTS,
    MAX_FOLLOWERS, MAX_REQUEST, MAX_RESPONSE, Outcome, REQUEST_TIMEOUT, Request, Response, default_dir, read_frame,
    write_frame,
};
pub use corral_runtime::{
    Load, ReloadError, ReloadReport, ReplaceError, Replaced, Scale, ScaleError, ScaleReason, ScaleReport,
    reopen_log_files,
};
