//! The node server's session events, forwarded to the host agent.

use ractor::ActorRef;
use ractor_cluster::NodeEventSubscription;
use ractor_cluster::node::NodeServerSessionInformation;

use super::msg::{AgentMsg, SessionEvent};

/// Subscribed to the node server's events for the agent.
pub(crate) struct Watch {
    pub agent: ActorRef<AgentMsg>,
}

impl NodeEventSubscription for Watch {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        tracing::debug!(session = ses.node_id, addr = %ses.peer_addr, incoming = ses.is_server, "node session opened");
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let peer = ses.peer_name.map(|n| n.name);
        let _ = self.agent.cast(AgentMsg::Session(SessionEvent::Closed { id: ses.node_id, peer, addr: ses.peer_addr }));
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let peer = ses.peer_name.map(|n| n.name).unwrap_or_default();
        let _ = self.agent.cast(AgentMsg::Session(SessionEvent::Authenticated { id: ses.node_id, peer }));
    }
}
