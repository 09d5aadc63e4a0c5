//! The control socket: how `corral status / reload / scale / restart / signal / stop /
//! config / logs` reach a running cluster, a `corral run` cluster or a library one alike.
//!
//! [`protocol`] is the wire format (also what the `corral` program speaks as a client);
//! the server runs in the primary, one task per client, bounded in time and number.

mod describe;
mod error;
mod logs;
pub mod protocol;
mod server;

pub use crate::config::control_socket::{ControlSocket, default_dir};
pub use protocol::{
    CONTROL_VERSION, Command, ControlError, ErrorKind, FrameError, MAX_REQUEST, MAX_RESPONSE, Outcome, Request,
    Response, read_frame, write_frame,
};
pub use server::{IDLE_TIMEOUT, MAX_CLIENTS, MAX_FOLLOWERS, REQUEST_TIMEOUT};

pub(crate) use describe::describe;
pub(crate) use error::ControlFailure;
pub(crate) use logs::LogRing;
pub(crate) use server::{Target, listening_fd, serve, serve_target};
