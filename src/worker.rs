//! The worker side, beyond [`Worker`](crate::Worker) and
//! [`WorkerContext`](crate::WorkerContext) (at the crate root): where a message came from
//! ([`Origin`]), answering a call ([`ReplyTo`], [`ReplyError`]) and the caller's side of one
//! ([`CallError`]), listening through the primary ([`Listener`], [`Connection`],
//! [`ListenRefusal`]), a worker's errors ([`WorkerError`], at which [`Stage`]), and the exit
//! codes of a worker process ([`EXIT_OK`] …). Serving HTTP on a listener is
//! [`http`](crate::http); CPU-heavy work, [`cpu_pool`](crate::cpu_pool).
//!
//! # Example
//!
//! ```
//! use corral::worker::{Origin, ReplyTo};
//! use corral::{BoxError, Worker, WorkerContext};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! enum Msg {
//!     Hello(String),
//!     Add(u64, u64, ReplyTo<u64>),
//! }
//!
//! struct Calc;
//!
//! impl Worker for Calc {
//!     type Msg = Msg;
//!     type Report = ();
//!     type State = ();
//!
//!     async fn start(&self, _cx: &WorkerContext<()>) -> Result<(), BoxError> {
//!         Ok(())
//!     }
//!
//!     async fn handle(&self, cx: &WorkerContext<()>, msg: Msg, _: &mut ()) -> Result<(), BoxError> {
//!         match msg {
//!             Msg::Hello(text) => match cx.origin() {
//!                 Some(Origin::Worker { slot }) => println!("worker {slot} says {text}"),
//!                 _ => println!("the primary says {text}"),
//!             },
//!             Msg::Add(a, b, reply) => reply.send(a + b).await?,
//!         }
//!         Ok(())
//!     }
//! }
//! ```

pub use corral_protocol::{CallError, ListenRefusal, ReplyError, ReplyTo};
pub use corral_workers::{
    Connection, EXIT_BEHAVIOUR, EXIT_BOOTSTRAP, EXIT_DRAIN_TIMEOUT, EXIT_OK, EXIT_PROTOCOL, Listener, Origin, Stage,
    WORKER_SPAN_TARGET, WorkerError,
};
