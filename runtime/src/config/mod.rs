//! How a cluster is configured: the [`ClusterConfig`](cluster::ClusterConfig) builder and
//! what it holds — a foreign program and its listeners ([`foreign`]), the sticky key
//! ([`sticky_key`]), the control socket ([`control_socket`]), the node set ([`node`]) — and
//! the command a slot's processes are started with ([`command`]).

pub(crate) mod autoscale;
pub(crate) mod cluster;
pub(crate) mod command;
pub(crate) mod control_socket;
pub(crate) mod error;
pub(crate) mod foreign;
pub(crate) mod node;
pub(crate) mod probe;
pub(crate) mod probe_rules;
pub(crate) mod sticky_key;
