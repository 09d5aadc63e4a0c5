//! What host agents say to each other: versioned JSON payloads inside ractor_cluster's
//! messages. Peers may run different builds during a deploy, so every payload carries
//! [`WIRE_VERSION`] and is decoded into a `Result`, never with a panic: a payload of another
//! version, or one that does not parse, is a [`WireError`] (logged, answered when it was a
//! question), and the agent goes on.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::node::error::WireError;

/// The version of the payloads between host agents.
pub const WIRE_VERSION: u32 = 1;

/// A heartbeat, sent to every peer agent each heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    /// The sender's node name.
    pub node: String,
    /// Its node server's address.
    pub listen: String,
    /// The node servers of the peers it sees up, so that every node meets every other.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// A question to a peer agent (answered with a [`Reply`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Its workers (`{"workers": [rows]}`, the rows of `corral status --json`).
    Status,
    /// Its own rolling reload (answered when done).
    Reload,
    /// A message for each of its workers, as JSON of the cluster's message type.
    Broadcast {
        /// The message.
        message: Value,
    },
    /// Its reload lease, for `holder`'s `reload --all` (`token`), for `ttl_ms` (a renewal
    /// when it holds it already); refused naming the holder when another has it.
    Lease {
        /// The node that runs the `reload --all`.
        holder: String,
        /// That run's token.
        token: u64,
        /// How long the lease lasts without renewal.
        ttl_ms: u64,
    },
    /// Gives its reload lease back.
    Release {
        /// The node that held it.
        holder: String,
        /// Its run's token.
        token: u64,
    },
}

/// An answer: the node's name and its data or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The answering node.
    pub node: String,
    /// The answer's data.
    #[serde(default)]
    pub ok: Option<Value>,
    /// Or why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// `body` with the version: `{"v": 1, …body}`.
pub(crate) fn encode(body: &impl Serialize) -> Vec<u8> {
    let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("v".into(), Value::from(WIRE_VERSION));
    }
    // A `Value` always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The body of a versioned payload.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let value: Value = serde_json::from_slice(bytes)?;
    match value.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(WIRE_VERSION) => Ok(serde_json::from_value(value)?),
        Some(got) => Err(WireError::Version { got, ours: WIRE_VERSION }),
        None => Err(WireError::Version { got: 0, ours: WIRE_VERSION }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_version() {
        let beat =
            Heartbeat { node: "web-1".into(), listen: "127.0.0.1:4370".into(), peers: vec!["127.0.0.2:4370".into()] };
        let bytes = encode(&beat);
        assert!(String::from_utf8_lossy(&bytes).contains("\"v\":1"));
        assert_eq!(decode::<Heartbeat>(&bytes).unwrap(), beat);
        let ask = Request::Broadcast { message: serde_json::json!({"flush": true}) };
        assert_eq!(decode::<Request>(&encode(&ask)).unwrap(), ask);
    }

    #[test]
    fn garbage_and_other_versions_are_errors_not_panics() {
        assert!(matches!(decode::<Request>(b"\xff\x00garbage"), Err(WireError::Malformed(_))));
        assert!(matches!(decode::<Request>(br#"{"v":2,"op":"status"}"#), Err(WireError::Version { got: 2, .. })));
        assert!(matches!(decode::<Request>(br#"{"op":"status"}"#), Err(WireError::Version { got: 0, .. })));
        assert!(matches!(decode::<Request>(br#"{"v":1,"op":"launch_missiles"}"#), Err(WireError::Malformed(_))));
        assert!(matches!(decode::<Heartbeat>(br#"{"v":1,"node":7}"#), Err(WireError::Malformed(_))));
        assert!(decode::<Reply>(b"").is_err());
    }
}
