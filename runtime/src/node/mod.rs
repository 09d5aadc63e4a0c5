//! The node set: one corral primary per host, joined over ractor_cluster (TCP, cookie
//! authentication, process groups through `ractor::pg`), for what one host's cluster cannot
//! do alone — see every worker on every host, broadcast to all of them, roll a reload across
//! hosts one at a time. Needs the `cluster` feature. The load balancer in front of the hosts
//! is not corral's: the node set is for operations, not for traffic.
//!
//! ```text
//! host A: corral (node web-a) ──┐ ractor_cluster sessions (cookie), full mesh
//! host B: corral (node web-b) ──┤ pg group "<cluster name>": one host agent per primary
//! host C: corral (node web-c) ──┘ heartbeats, status / reload / broadcast questions
//! ```
//!
//! Each primary runs a ractor_cluster `NodeServer` on [`NodeConfig::listen`](crate::config::node::NodeConfig::listen)
//! and a host agent ([`AgentMsg`]) that joins the group named after the cluster. The agent
//! dials its seeds and every peer it hears of (`link`), with keep-alive and
//! `TCP_USER_TIMEOUT` on each stream and backoff between dials; it heartbeats the others and
//! reports a silent one down after [`NodeConfig::heartbeat_timeout`](crate::config::node::NodeConfig::heartbeat_timeout).
//! Payloads between hosts are versioned ([`wire`]) and decoded without panicking.
//!
//! [`NodeSet`] is what a library cluster uses (from [`ClusterHandle::node_set`](crate::api::handle::ClusterHandle::node_set)),
//! and what the control socket's `status --all`, `reload --all` and `broadcast` go through.

mod agent;
pub(crate) mod error;
mod lease;
mod link;
mod local;
mod msg;
mod watch;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use serde::Serialize;
use serde_json::Value;

pub use agent::PeerState;
pub use error::{AnswerError, NodeError, NodeStartError, ReloadAllFailure, Silence, WireError};
pub use msg::{AgentMsg, SessionEvent};
pub use wire::WIRE_VERSION;

use agent::{AgentArgs, HostAgent, SharedPeers};
pub(crate) use local::{BoxFuture, LocalNode, PeerChange};
use wire::Reply;
pub(crate) use wire::Request;

use crate::config::node::NodeConfig;

/// How long a peer has to answer a status or broadcast question.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer has to answer `status --all`: short enough that the whole answer comes in
/// bounded time (under 5 s) while a peer is cut off and not yet reported down, long enough
/// for a slow, lossy link (200 ms each way, a retransmission or two).
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one node's rolling reload may take before `reload_all` gives up on it.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a reloaded node has to report every worker ready.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `reload --all` waits for the node set's reload lease another one holds.
const LEASE_WAIT: Duration = Duration::from_secs(120);

/// One node's workers, as `status --all` gathers them.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Every worker of every node that answered: the rows of `corral status --json`, each
    /// with its `node`.
    pub workers: Vec<Value>,
    /// Every node known: this one and its peers, up or down.
    pub nodes: Vec<PeerState>,
    /// The nodes whose workers are missing from `workers` though no node reported them
    /// down, each as `node NAME: …` saying why: a member that did not answer in time (a peer
    /// hanging or cut off, not yet reported down) or answered with an error, or a peer with
    /// no session now (it closed and is being redialled: the peer restarted or was upgraded
    /// in place).
    pub unreachable: Vec<String>,
}

/// One node's part of a `reload_all`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReloaded {
    /// The node.
    pub node: String,
    /// Its reload's answer (`{"replaced": […]}`).
    pub replaced: Value,
}

/// Where a `reload_all` stopped.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("reload --all stopped at node {node}: {failure} (reloaded before it: {})", if done.is_empty() { "none".to_string() } else { done.iter().map(|d| d.node.as_str()).collect::<Vec<_>>().join(", ") })]
pub struct ReloadAllError {
    /// The node whose reload or health check failed.
    pub node: String,
    /// Why (serialized as its Display, under `reason`).
    #[serde(rename = "reason", serialize_with = "as_display")]
    #[source]
    pub failure: ReloadAllFailure,
    /// The nodes reloaded before it, in order.
    pub done: Vec<NodeReloaded>,
    /// The nodes not reloaded (after it).
    pub skipped: Vec<String>,
}

/// This primary's handle on the node set.
#[derive(Clone)]
pub struct NodeSet {
    name: String,
    group: String,
    listen: std::net::SocketAddr,
    peers: SharedPeers,
    server: ActorRef<NodeServerMessage>,
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSet").field("node", &self.name).field("group", &self.group).finish()
    }
}

/// Starts the node server, the host agent and the links to the seeds.
pub(crate) async fn start(node: NodeConfig, group: String, local: Arc<dyn LocalNode>) -> Result<NodeSet, NodeError> {
    let listen = node.listen;
    let start_err = |source: NodeStartError| NodeError::Start { listen, source };
    let server = NodeServer::new(
        listen.port(),
        node.cookie.secret().to_string(),
        node.name.clone(),
        listen.ip().to_string(),
        None,
        // corral dials every peer itself (with keep-alive and a user timeout on the stream).
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(listen.ip());
    // Its listener binds in the node server's start: an address in use fails the spawn.
    let (server, _) = Actor::spawn(None, server, ()).await.map_err(|e| start_err(e.into()))?;
    let links = link::Links::new(listen, &node.seeds);
    let peers = SharedPeers::default();
    let interval = node.heartbeat_interval;
    let user_timeout = node.heartbeat_timeout;
    let args = AgentArgs {
        node: node.clone(),
        group: group.clone(),
        local,
        server: server.clone(),
        links: links.clone(),
        peers: peers.clone(),
    };
    let (agent, _) = Actor::spawn(None, HostAgent, args).await.map_err(|e| start_err(e.into()))?;
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "corral-host-agent".into(),
            subscription: Box::new(watch::Watch { agent: agent.clone() }),
        })
        .map_err(|_| start_err(NodeStartError::Subscribe))?;
    tokio::spawn(links.maintain(server.clone(), interval.min(Duration::from_millis(500)), user_timeout));
    Ok(NodeSet { name: node.name, group, listen, peers, server })
}

impl NodeSet {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// The process group the host agents join (the cluster's name).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This node and every peer it has heard of, up or down, by name.
    pub fn nodes(&self) -> Vec<PeerState> {
        let mut nodes = agent::lock(&self.peers).snapshot();
        nodes.push(PeerState { node: self.name.clone(), listen: self.listen.to_string(), up: true, last_seen_ms: 0 });
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        nodes
    }

    /// The host agents in the group now: this one and every connected peer's.
    fn members(&self) -> Vec<ActorRef<AgentMsg>> {
        ractor::pg::get_members(&self.group).into_iter().map(ActorRef::from).collect()
    }

    /// Asks one agent; its name and data.
    async fn ask(
        member: &ActorRef<AgentMsg>,
        request: &Request,
        timeout: Duration,
    ) -> Result<(String, Value), NodeError> {
        let who = || format!("{}", member.get_id());
        let bytes = wire::encode(request);
        let answer = member
            .call(|reply| AgentMsg::Call(bytes, reply), Some(timeout))
            .await
            .map_err(|_| NodeError::Unreachable { node: who(), silence: Silence::SessionClosed })?;
        let bytes = match answer {
            ractor::rpc::CallResult::Success(bytes) => bytes,
            ractor::rpc::CallResult::Timeout => {
                return Err(NodeError::Unreachable { node: who(), silence: Silence::Timeout(timeout) });
            }
            ractor::rpc::CallResult::SenderError => {
                return Err(NodeError::Unreachable { node: who(), silence: Silence::SessionClosed });
            }
        };
        let reply: Reply = wire::decode(&bytes)?;
        match (reply.ok, reply.error) {
            (Some(data), None) => Ok((reply.node, data)),
            (_, Some(said)) => Err(NodeError::Failed { node: reply.node, said }),
            (None, None) => Err(NodeError::Empty { node: reply.node }),
        }
    }

    /// The node names of the group's members' sessions, by ractor node id (a member whose
    /// session has not said its name yet is not there).
    async fn session_names(&self) -> HashMap<u64, String> {
        let Ok(sessions) = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 1000) else {
            return HashMap::new();
        };
        sessions
            .into_iter()
            .filter_map(|(id, s)| Some((id, agent::node_name(&s.peer_name?.name).to_string())))
            .collect()
    }

    /// Every agent's answer to `request`, asked at once, by node name; a member that did not
    /// answer is named by its node's name where its session said it.
    async fn ask_all(&self, request: Request, timeout: Duration) -> Vec<Result<(String, Value), NodeError>> {
        let names = self.session_names().await;
        let asks = self.members().into_iter().map(|member| {
            let request = request.clone();
            let id = member.get_id();
            let name = if id.is_local() { Some(self.name.clone()) } else { names.get(&id.node()).cloned() };
            tokio::spawn(async move {
                Self::ask(&member, &request, timeout).await.map_err(|e| match (e, name) {
                    (NodeError::Unreachable { silence, .. }, Some(node)) => NodeError::Unreachable { node, silence },
                    (e, _) => e,
                })
            })
        });
        let mut out = Vec::new();
        for ask in asks.collect::<Vec<_>>() {
            out.push(
                ask.await
                    .unwrap_or_else(|e| Err(NodeError::Unreachable { node: "?".into(), silence: Silence::Task(e) })),
            );
        }
        // By node name; the failures last.
        out.sort_by(|a, b| match (a, b) {
            (Ok((x, _)), Ok((y, _))) => x.cmp(y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        out
    }

    /// Every worker of every node, each row with its `node`, plus the nodes known and the
    /// nodes whose workers are not in the answer though they are up: members that did not
    /// answer, and peers up (heard from within the heartbeat timeout) with no session now
    /// (it closed and is being redialled: the peer restarted, upgraded in place, or the
    /// network blinked) — never left out silently.
    pub async fn status_all(&self) -> NodeStatus {
        let mut workers = Vec::new();
        let mut unreachable = Vec::new();
        let mut named = HashSet::new();
        for answer in self.ask_all(Request::Status, STATUS_TIMEOUT).await {
            match answer {
                Ok((node, data)) => {
                    named.insert(node.clone());
                    for mut row in data.get("workers").and_then(Value::as_array).cloned().unwrap_or_default() {
                        if let Value::Object(map) = &mut row {
                            map.insert("node".into(), Value::from(node.clone()));
                        }
                        workers.push(row);
                    }
                }
                Err(e) => {
                    // Named already (by its node's name where known).
                    if let NodeError::Unreachable { node, .. }
                    | NodeError::Failed { node, .. }
                    | NodeError::Empty { node } = &e
                    {
                        named.insert(node.clone());
                    }
                    unreachable.push(e.to_string());
                }
            }
        }
        let nodes = self.nodes();
        for peer in nodes.iter().filter(|p| p.up && p.node != self.name && !named.contains(&p.node)) {
            unreachable
                .push(NodeError::Unreachable { node: peer.node.clone(), silence: Silence::NoSession }.to_string());
        }
        NodeStatus { workers, nodes, unreachable }
    }

    /// Sends `message` (the cluster's message type, as every node decodes it) to every worker
    /// of every node; each node's answer (`{"reached": n, "workers": n}`) by name, or why
    /// it failed.
    ///
    /// # Errors
    ///
    /// [`NodeError::Wire`] when `message` does not serialize to JSON.
    pub async fn broadcast<M: Serialize>(
        &self,
        message: &M,
    ) -> Result<Vec<Result<(String, Value), NodeError>>, NodeError> {
        let message = serde_json::to_value(message).map_err(WireError::from)?;
        Ok(self.broadcast_value(message).await)
    }

    /// [`broadcast`](Self::broadcast) of a message already in JSON.
    pub async fn broadcast_value(&self, message: Value) -> Vec<Result<(String, Value), NodeError>> {
        self.ask_all(Request::Broadcast { message }, ASK_TIMEOUT).await
    }

    /// Rolls a reload across the node set, one node at a time in name order: the node's own
    /// rolling reload, then its health (every worker ready), then the next. Never two nodes
    /// reloading at once, whoever starts what when: it first takes the node set's reload
    /// lease (every reachable node's, in name order, waiting up to two minutes while another
    /// `reload --all` holds it), and only with a majority of the nodes the set knows — on the
    /// minority side of a partition it is refused. Stops at the first failure and says where.
    ///
    /// # Errors
    ///
    /// [`ReloadAllError`]: the node that failed, why, and what was done before.
    pub async fn reload_all(&self) -> Result<Vec<NodeReloaded>, ReloadAllError> {
        let refused =
            |failure| ReloadAllError { node: self.name.clone(), failure, done: Vec::new(), skipped: Vec::new() };
        let token: u64 = rand::random();
        let members = self.take_lease(token).await.map_err(refused)?;
        // Renewed while the reload runs; given back at the end, whatever happens.
        let renew = tokio::spawn({
            let (members, holder) = (members.clone(), self.name.clone());
            async move {
                loop {
                    tokio::time::sleep(lease::RENEW_EVERY).await;
                    for member in &members {
                        let _ = Self::ask(member, &lease_request(&holder, token), ASK_TIMEOUT).await;
                    }
                }
            }
        });
        let result = self.reload_each().await;
        renew.abort();
        let release = Request::Release { holder: self.name.clone(), token };
        for member in &members {
            let _ = Self::ask(member, &release, ASK_TIMEOUT).await;
        }
        result
    }

    /// Takes the reload lease of every member, in node-name order, with a majority of the
    /// known nodes; waits (bounded) while another holds it. Returns the members holding it
    /// for us.
    async fn take_lease(&self, token: u64) -> Result<Vec<ActorRef<AgentMsg>>, ReloadAllFailure> {
        let started = tokio::time::Instant::now();
        let mut logged = false;
        loop {
            let mut named = Vec::new();
            for member in self.members() {
                if let Ok((node, _)) = Self::ask(&member, &Request::Status, STATUS_TIMEOUT).await {
                    named.push((node, member));
                }
            }
            named.sort_by(|a, b| a.0.cmp(&b.0));
            let known = self.nodes().len();
            if !lease::majority(named.len(), known) {
                return Err(ReloadAllFailure::Minority { reached: named.len(), known });
            }
            let mut taken = Vec::new();
            let mut held_by = None;
            for (node, member) in &named {
                match Self::ask(member, &lease_request(&self.name, token), ASK_TIMEOUT).await {
                    Ok(_) => taken.push(member.clone()),
                    Err(NodeError::Failed { said, .. }) if said.starts_with(agent::LEASE_HELD_BY) => {
                        held_by = Some(said[agent::LEASE_HELD_BY.len()..].to_string());
                        break;
                    }
                    // Gone meanwhile: counted out below.
                    Err(e) => tracing::debug!(node = %node, error = %e, "reload lease: no answer"),
                }
            }
            match held_by {
                None if lease::majority(taken.len(), known) => return Ok(taken),
                _ => {}
            }
            let release = Request::Release { holder: self.name.clone(), token };
            for member in &taken {
                let _ = Self::ask(member, &release, ASK_TIMEOUT).await;
            }
            let holder = held_by.unwrap_or_else(|| "an unreachable node".to_string());
            if started.elapsed() >= LEASE_WAIT {
                return Err(ReloadAllFailure::LeaseBusy { holder, waited: started.elapsed() });
            }
            if !logged {
                tracing::info!(holder = %holder, "reload --all waits: another reload --all holds the node set");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(rand::random_range(150..400))).await;
        }
    }

    /// The reloads of [`reload_all`](Self::reload_all), the lease held.
    async fn reload_each(&self) -> Result<Vec<NodeReloaded>, ReloadAllError> {
        // Who is there, by name.
        let mut members: Vec<(String, ActorRef<AgentMsg>)> = Vec::new();
        for member in self.members() {
            match Self::ask(&member, &Request::Status, ASK_TIMEOUT).await {
                Ok((node, _)) => members.push((node, member)),
                Err(e) => {
                    return Err(ReloadAllError {
                        node: member.get_id().to_string(),
                        failure: ReloadAllFailure::Node(Arc::new(e)),
                        done: Vec::new(),
                        skipped: Vec::new(),
                    });
                }
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
        let mut done = Vec::new();
        for (i, (node, member)) in members.iter().enumerate() {
            tracing::info!(node = %node, "reload --all: reloading node");
            let result = match Self::ask(member, &Request::Reload, RELOAD_TIMEOUT).await {
                Ok((_, replaced)) => healthy(member).await.map(|()| replaced),
                Err(e) => Err(ReloadAllFailure::Node(Arc::new(e))),
            };
            match result {
                Ok(replaced) => done.push(NodeReloaded { node: node.clone(), replaced }),
                Err(failure) => {
                    tracing::warn!(node = %node, reason = %failure, "reload --all stopped");
                    let skipped = names[i + 1..].to_vec();
                    return Err(ReloadAllError { node: node.clone(), failure, done, skipped });
                }
            }
        }
        Ok(done)
    }
}

/// The lease question for `holder`'s run `token`.
fn lease_request(holder: &str, token: u64) -> Request {
    Request::Lease { holder: holder.to_string(), token, ttl_ms: lease::TTL.as_millis() as u64 }
}

/// Waits (bounded) until every worker of `member`'s node is ready.
async fn healthy(member: &ActorRef<AgentMsg>) -> Result<(), ReloadAllFailure> {
    let deadline = tokio::time::Instant::now() + HEALTH_TIMEOUT;
    loop {
        let last = match NodeSet::ask(member, &Request::Status, ASK_TIMEOUT).await {
            Ok((_, data)) => {
                let rows = data.get("workers").and_then(Value::as_array).cloned().unwrap_or_default();
                let not_ready: Vec<String> = rows
                    .iter()
                    .filter(|r| r.get("state").and_then(Value::as_str) != Some("ready"))
                    .map(|r| format!("slot {} {}", r["slot"], r["state"].as_str().unwrap_or("?")))
                    .collect();
                if !rows.is_empty() && not_ready.is_empty() {
                    return Ok(());
                }
                ReloadAllFailure::NotReady(not_ready)
            }
            Err(e) => ReloadAllFailure::NoStatus(Arc::new(e)),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A value serialized as its Display (the wire's text for a typed error).
fn as_display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}
