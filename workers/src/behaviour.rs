//! The [`Worker`] trait: what a worker process does (`start`, `handle`, `stop`).

use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};

use crate::context::WorkerContext;
use crate::error::BoxError;

/// A worker's behaviour, driven by a ractor actor inside the worker process.
///
/// * [`start`](Worker::start) runs first; the worker is *ready* (gets work, counts as up for
///   the restart policy) once it returns `Ok`. An `Err` ends the process with exit code 1, and
///   the primary restarts it by its policy.
/// * [`handle`](Worker::handle) runs for each message from the primary or from another
///   worker ([`WorkerContext::origin`] says which), one at a time, in order. An `Err` crashes
///   the worker (exit code 1; let it crash, the supervisor restarts it): handle recoverable
///   errors inside and return `Ok`.
/// * [`stop`](Worker::stop) runs once when the worker is told to drain (primary shutdown,
///   SIGTERM, or the primary's death), after every message already received was handled.
///
/// # Example
///
/// ```
/// use corral_workers::{BoxError, Worker, WorkerContext};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum Cmd { Ping(u64) }
/// #[derive(Serialize, Deserialize)]
/// enum Report { Pong(u64) }
///
/// struct Echo;
///
/// impl Worker for Echo {
///     type Msg = Cmd;
///     type Report = Report;
///     type State = u64;
///
///     async fn start(&self, _cx: &WorkerContext<Report>) -> Result<u64, BoxError> {
///         Ok(0)
///     }
///
///     async fn handle(&self, cx: &WorkerContext<Report>, msg: Cmd, seen: &mut u64) -> Result<(), BoxError> {
///         let Cmd::Ping(n) = msg;
///         *seen += 1;
///         cx.report(Report::Pong(n)).await?;
///         Ok(())
///     }
/// }
/// ```
pub trait Worker: Send + Sync + Sized + 'static {
    /// Messages to this worker: from the primary, or from other workers through it.
    type Msg: DeserializeOwned + Send + 'static;
    /// Messages from this worker to the primary.
    type Report: Serialize + Send + 'static;
    /// The behaviour's state, made by `start`.
    type State: Send + 'static;

    /// Starts the worker: bind listeners, spawn servers, build the state.
    fn start(&self, cx: &WorkerContext<Self::Report>) -> impl Future<Output = Result<Self::State, BoxError>> + Send;

    /// Handles one message, from the primary or another worker
    /// ([`WorkerContext::origin`]). The default ignores it.
    fn handle(
        &self,
        cx: &WorkerContext<Self::Report>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (cx, msg, state);
        async { Ok(()) }
    }

    /// Drains: finish in-flight work, release resources. The default does nothing. The
    /// [`WorkerContext::shutdown_token`] is already cancelled when this runs.
    fn stop(
        &self,
        cx: &WorkerContext<Self::Report>,
        state: Self::State,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (cx, state);
        async { Ok(()) }
    }
}
