//! [`Origin`]: who sent the message a worker is handling, the primary or another worker.

use serde::{Deserialize, Serialize};

/// Who sent the message a [`Worker::handle`](crate::Worker::handle) call is handling, as
/// [`WorkerContext::origin`](crate::WorkerContext::origin) tells it.
///
/// A message from another worker ([`send_to_worker`](crate::WorkerContext::send_to_worker),
/// [`broadcast_workers`](crate::WorkerContext::broadcast_workers)) travels through the
/// primary, but its origin is that worker's slot, not the primary.
///
/// # Examples
///
/// Answering whoever asked, a worker through the primary, the primary directly:
///
/// ```no_run
/// use corral_workers::{BoxError, Origin, Worker, WorkerContext};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum Msg { Lookup(String), Found(String, Option<u64>) }
///
/// struct Shard;
///
/// impl Worker for Shard {
///     type Msg = Msg;
///     type Report = Msg;
///     type State = std::collections::HashMap<String, u64>;
///
///     async fn start(&self, _cx: &WorkerContext<Msg>) -> Result<Self::State, BoxError> {
///         Ok(Default::default())
///     }
///
///     async fn handle(&self, cx: &WorkerContext<Msg>, msg: Msg, map: &mut Self::State) -> Result<(), BoxError> {
///         let Msg::Lookup(key) = msg else { return Ok(()) };
///         let found = Msg::Found(key.clone(), map.get(&key).copied());
///         match cx.origin() {
///             Some(Origin::Worker { slot }) => cx.send_to_worker(slot, &found).await?,
///             _ => cx.report(found).await?,
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Origin {
    /// The primary: `ClusterHandle::send_to`, `broadcast`, `send_keyed`, a call.
    Primary,
    /// Another worker of the cluster, relayed by the primary.
    Worker {
        /// The sender's slot (answer it with
        /// [`send_to_worker`](crate::WorkerContext::send_to_worker)).
        slot: usize,
    },
}

impl std::fmt::Display for Origin {
    /// `primary`, or `worker <slot>`.
    ///
    /// ```
    /// use corral_workers::Origin;
    /// assert_eq!(Origin::Primary.to_string(), "primary");
    /// assert_eq!(Origin::Worker { slot: 3 }.to_string(), "worker 3");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Primary => f.write_str("primary"),
            Origin::Worker { slot } => write!(f, "worker {slot}"),
        }
    }
}
