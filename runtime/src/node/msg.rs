//! The host agent's messages, and how they cross nodes.
//!
//! Two of them travel between hosts, each as one opaque byte payload (a versioned JSON
//! [`wire`](super::wire) body): a cast ([`AgentMsg::Cast`], heartbeats) and a call
//! ([`AgentMsg::Call`], a question with ractor's reply port). The `Message` impl is written
//! out rather than derived so that decoding can only fail, never panic: the bytes are taken
//! as they are (no `BytesConvertable::from_bytes`), and anything else a peer sends is refused
//! with ractor's `BoxedDowncastErr`, which drops it. The others are local to this primary.

use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};

/// The `variant` tag of [`AgentMsg::Cast`] on the wire.
const CAST: &str = "corral.cast";
/// The `variant` tag of [`AgentMsg::Call`] on the wire.
const CALL: &str = "corral.call";

/// Messages of a primary's host agent.
#[derive(Debug)]
pub enum AgentMsg {
    /// A one-way payload from a peer (a heartbeat).
    Cast(Vec<u8>),
    /// A question from a peer (or from this primary's control socket) and where its answer
    /// goes.
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Time to send heartbeats and look for silent peers (local).
    Tick,
    /// A node session changed (local, from the node server's event subscription).
    Session(SessionEvent),
}

/// What the node server tells the agent about its sessions.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A session authenticated: the peer knew the cookie.
    Authenticated {
        /// The session's id.
        id: u64,
        /// The peer's node name (`name@host`).
        peer: String,
    },
    /// A session ended.
    Closed {
        /// The session's id.
        id: u64,
        /// The peer's node name, if it got as far as saying it.
        peer: Option<String>,
        /// The peer's address.
        addr: String,
    },
}

impl ractor::Message for AgentMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            AgentMsg::Cast(args) => Ok(SerializedMessage::Cast { variant: CAST.into(), args, metadata: None }),
            AgentMsg::Call(args, reply) => {
                Ok(SerializedMessage::Call { variant: CALL.into(), args, reply, metadata: None })
            }
            // Local only: never sent to another node.
            AgentMsg::Tick | AgentMsg::Session(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { variant, args, .. } if variant == CAST => Ok(AgentMsg::Cast(args)),
            SerializedMessage::Call { variant, args, reply, .. } if variant == CALL => Ok(AgentMsg::Call(args, reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::Message;

    use super::*;

    #[test]
    fn casts_and_calls_cross_and_unknown_ones_are_refused() {
        let SerializedMessage::Cast { variant, args, .. } = AgentMsg::Cast(b"x".to_vec()).serialize().unwrap() else {
            panic!("a cast")
        };
        assert!(matches!(
            AgentMsg::deserialize(SerializedMessage::Cast { variant, args, metadata: None }),
            Ok(AgentMsg::Cast(b)) if b == b"x"
        ));
        assert!(AgentMsg::Tick.serialize().is_err());
        let other = SerializedMessage::Cast { variant: "Launch".into(), args: vec![0xff; 3], metadata: None };
        assert!(AgentMsg::deserialize(other).is_err());
        assert!(AgentMsg::deserialize(SerializedMessage::CallReply(1, vec![])).is_err());
    }
}
