//! The host agent: one actor per primary, member of the process group named after the
//! cluster. Every heartbeat interval it sends a heartbeat to each peer agent; a peer silent
//! for the heartbeat timeout is reported down (and its sessions dropped, so that the link
//! redials it); its next heartbeat brings it back. It answers its peers' questions about its
//! own cluster (status, reload, broadcast), each in a task of its own so that a long reload
//! never delays a heartbeat.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::NodeServerMessage;
use serde::Serialize;

use super::error::AnswerError;
use super::lease::LeaseRecord;
use super::link::Links;
use super::local::LocalNode;
use super::msg::{AgentMsg, SessionEvent};
use super::wire::{self, Heartbeat, Reply, Request};
use crate::config::node::NodeConfig;

/// A peer as the agent last heard of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// The peer's node name.
    pub node: String,
    /// Its node server's address.
    pub listen: String,
    /// Whether it is up (heard from within the heartbeat timeout).
    pub up: bool,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

/// The peers, by node name, shared with [`NodeSet`](super::NodeSet).
#[derive(Debug, Default)]
pub(crate) struct Peers {
    by_name: HashMap<String, Peer>,
}

#[derive(Debug, Clone)]
struct Peer {
    listen: String,
    seen: Instant,
    up: bool,
}

impl Peers {
    pub(crate) fn snapshot(&self) -> Vec<PeerState> {
        let mut out: Vec<PeerState> = self
            .by_name
            .iter()
            .map(|(node, p)| PeerState {
                node: node.clone(),
                listen: p.listen.clone(),
                up: p.up,
                last_seen_ms: p.seen.elapsed().as_millis() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

pub(crate) type SharedPeers = Arc<Mutex<Peers>>;

pub(crate) fn lock(peers: &SharedPeers) -> std::sync::MutexGuard<'_, Peers> {
    // Entries are replaced whole: a poisoned lock is still consistent.
    peers.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host agent.
pub(crate) struct HostAgent;

/// What it starts from.
pub(crate) struct AgentArgs {
    pub node: NodeConfig,
    pub group: String,
    pub local: Arc<dyn LocalNode>,
    pub server: ActorRef<NodeServerMessage>,
    pub links: Links,
    pub peers: SharedPeers,
}

pub(crate) struct AgentState {
    args: AgentArgs,
    /// Sessions that authenticated (the others closed on a bad cookie or a stranger).
    authenticated: HashSet<u64>,
    /// This node's part of the node set's reload lease (`lease.rs`).
    lease: LeaseRecord,
}

impl Actor for HostAgent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(&self, myself: ActorRef<AgentMsg>, args: AgentArgs) -> Result<AgentState, ActorProcessingErr> {
        ractor::pg::join(args.group.clone(), vec![myself.get_cell()]);
        myself.send_interval(args.node.heartbeat_interval, || AgentMsg::Tick);
        tracing::info!(node = %args.node.name, listen = %args.node.listen, group = %args.group, "joined the node set");
        Ok(AgentState { args, authenticated: HashSet::new(), lease: LeaseRecord::default() })
    }

    async fn post_stop(&self, myself: ActorRef<AgentMsg>, state: &mut AgentState) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(state.args.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Tick => tick(&myself, state),
            AgentMsg::Cast(bytes) => match wire::decode::<Heartbeat>(&bytes) {
                Ok(beat) => heard(state, beat),
                Err(e) => tracing::warn!(error = %e, "undecodable payload from a peer node; dropped"),
            },
            AgentMsg::Call(bytes, reply) => {
                let node = state.args.node.name.clone();
                let local = state.args.local.clone();
                let request = wire::decode::<Request>(&bytes);
                // The lease is answered here, one question at a time: two takers never both get it.
                if let Ok(Request::Lease { holder, token, ttl_ms }) = &request {
                    let ttl = std::time::Duration::from_millis(*ttl_ms);
                    let answer = match state.lease.grant(holder, *token, ttl, Instant::now()) {
                        Ok(()) => Reply { node, ok: Some(serde_json::json!({ "holder": holder })), error: None },
                        Err(held_by) => Reply { node, ok: None, error: Some(format!("{LEASE_HELD_BY}{}", held_by.0)) },
                    };
                    let _ = reply.send(wire::encode(&answer));
                    return Ok(());
                }
                if let Ok(Request::Release { holder, token }) = &request {
                    state.lease.release(holder, *token);
                    let _ = reply.send(wire::encode(&Reply { node, ok: Some(serde_json::Value::Null), error: None }));
                    return Ok(());
                }
                tokio::spawn(async move {
                    let answer = match request {
                        Ok(request) => match local.answer(request).await {
                            Ok(data) => Reply { node, ok: Some(data), error: None },
                            // The wire carries the error's Display.
                            Err(error) => Reply { node, ok: None, error: Some(error.to_string()) },
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable request from a peer node; refused");
                            Reply { node, ok: None, error: Some(AnswerError::from(e).to_string()) }
                        }
                    };
                    // The asker may have given up (timed out): nothing to do then.
                    let _ = reply.send(wire::encode(&answer));
                });
            }
            AgentMsg::Session(event) => session(state, event),
        }
        Ok(())
    }
}

/// Heartbeats to every peer agent, and the silent ones reported down.
fn tick(myself: &ActorRef<AgentMsg>, state: &mut AgentState) {
    let args = &state.args;
    let up_peers: Vec<String> = lock(&args.peers).by_name.values().filter(|p| p.up).map(|p| p.listen.clone()).collect();
    let beat = wire::encode(&Heartbeat {
        node: args.node.name.clone(),
        listen: args.node.listen.to_string(),
        peers: up_peers,
    });
    for member in ractor::pg::get_members(&args.group) {
        if member.get_id() == myself.get_id() || member.get_id().is_local() {
            continue;
        }
        let peer: ActorRef<AgentMsg> = member.into();
        // A peer whose session just closed is gone from the group by the next tick.
        let _ = peer.cast(AgentMsg::Cast(beat.clone()));
    }
    let timeout = args.node.heartbeat_timeout;
    let mut down = Vec::new();
    for (node, peer) in lock(&args.peers).by_name.iter_mut() {
        if peer.up && peer.seen.elapsed() > timeout {
            peer.up = false;
            down.push(node.clone());
        }
    }
    for node in down {
        tracing::warn!(node = %node, silent_ms = timeout.as_millis() as u64, "node down: no heartbeat");
        if state.lease.holder_down(&node) {
            tracing::warn!(node = %node, "the reload lease of a node reported down lapses");
        }
        let args = &state.args;
        args.local.peer_changed(&node, super::local::PeerChange::Down(timeout));
        drop_sessions(args.server.clone(), node);
    }
}

/// Stops the sessions to `node` (a silent peer's connection may still look open): its
/// remote actors leave the group, and the link redials it.
fn drop_sessions(server: ActorRef<NodeServerMessage>, node: String) {
    tokio::spawn(async move {
        let Ok(sessions) = ractor::call_t!(server, NodeServerMessage::GetSessions, 2000) else { return };
        for session in sessions.values() {
            if session.peer_name.as_ref().is_some_and(|n| node_name(&n.name) == node) {
                session.actor.stop(Some("heartbeat timeout".into()));
            }
        }
    });
}

/// A peer's heartbeat.
fn heard(state: &mut AgentState, beat: Heartbeat) {
    let args = &state.args;
    if beat.node == args.node.name {
        tracing::warn!(node = %beat.node, listen = %beat.listen, "another node has this node's name; ignored");
        return;
    }
    let came_up = {
        let mut peers = lock(&args.peers);
        let peer = peers.by_name.entry(beat.node.clone()).or_insert(Peer {
            listen: beat.listen.clone(),
            seen: Instant::now(),
            up: false,
        });
        peer.seen = Instant::now();
        peer.listen.clone_from(&beat.listen);
        !std::mem::replace(&mut peer.up, true)
    };
    if came_up {
        tracing::info!(node = %beat.node, listen = %beat.listen, "node up");
        args.local.peer_changed(&beat.node, super::local::PeerChange::Up(beat.listen.clone()));
    }
    if let Ok(addr) = beat.listen.parse() {
        args.links.add(addr);
        args.links.healthy(addr);
    }
    for addr in &beat.peers {
        if let Ok(addr) = addr.parse() {
            args.links.add(addr);
        }
    }
}

fn session(state: &mut AgentState, event: SessionEvent) {
    match event {
        SessionEvent::Authenticated { id, peer } => {
            state.authenticated.insert(id);
            tracing::debug!(session = id, peer = %peer, "node session authenticated");
        }
        SessionEvent::Closed { id, peer, addr } => {
            if state.authenticated.remove(&id) {
                tracing::info!(session = id, peer = ?peer, addr = %addr, "node session closed");
            } else {
                tracing::warn!(
                    session = id,
                    peer = ?peer,
                    addr = %addr,
                    "node connection refused: it did not authenticate (wrong cookie, or not a corral node)"
                );
            }
        }
    }
}

/// How a refused lease names its holder in the reply's error.
pub(crate) const LEASE_HELD_BY: &str = "the reload lease is held by ";

/// `name` of ractor_cluster's `name@host`.
pub(crate) fn node_name(full: &str) -> &str {
    full.split_once('@').map_or(full, |(name, _)| name)
}
