//! Where work goes: connections to workers ([`balance`]: the accept loop, the strategies,
//! shared and reuse-port sockets), messages to a worker by slot or key ([`messages`]), and
//! the rendezvous hash both use for keys ([`rendezvous`]).

pub(crate) mod balance;
pub(crate) mod messages;
pub(crate) mod rendezvous;
pub(crate) mod steer;
