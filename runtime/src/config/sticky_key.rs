//! Sticky connections: what of a client's address picks its worker ([`StickyKey`]).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use crate::config::error::ConfigProblem;

/// What identifies one client for [`Scheduling::Sticky`](corral_protocol::Scheduling::Sticky): every
/// connection with the same key goes to the same ready worker (rendezvous hashing over the
/// worker slots, so a restart or a scale step moves only the clients of the slots that
/// changed).
///
/// # Example
///
/// ```
/// use corral_runtime::{ClusterConfig, Scheduling, StickyKey};
///
/// // Subscribers behind a carrier-grade NAT share one address, each with its own block of
/// // 2048 source ports: the top 5 bits of the port tell them apart.
/// let config = ClusterConfig::default()
///     .scheduling(Scheduling::Sticky)
///     .sticky_key(StickyKey::IpPortPrefix { bits: 5 });
/// assert!(config.validate().is_ok());
/// assert_eq!("ip+port/5".parse::<StickyKey>(), Ok(StickyKey::IpPortPrefix { bits: 5 }));
/// assert_eq!("ip".parse::<StickyKey>(), Ok(StickyKey::Ip));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StickyKey {
    /// The client's IP address (the default): one worker per client host.
    #[default]
    Ip,
    /// The client's IP address and the top `bits` (1 – 16) of its source port: tells apart
    /// the clients of a NAT that gives each one a block of ports (`bits = 16` is the whole
    /// port: one connection's own key).
    IpPortPrefix {
        /// How many of the port's high bits count.
        bits: u8,
    },
}

impl StickyKey {
    /// The key of a connection from `peer`. IPv4-mapped IPv6 addresses count as the IPv4
    /// address they carry (a dual-stack listener sees those).
    pub(crate) fn of(self, peer: SocketAddr) -> ClientKey {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let port_block = match self {
            StickyKey::Ip => None,
            StickyKey::IpPortPrefix { bits } => Some(peer.port() >> (16 - u32::from(bits.clamp(1, 16)))),
        };
        ClientKey { ip, port_block }
    }

    /// Whether the key is well formed (`bits` 1 – 16).
    /// The top bits of the source port the key takes (0: the address alone).
    pub(crate) fn port_bits(self) -> u8 {
        match self {
            StickyKey::Ip => 0,
            StickyKey::IpPortPrefix { bits } => bits.clamp(1, 16),
        }
    }

    pub(crate) fn check(self) -> Result<(), ConfigProblem> {
        match self {
            StickyKey::Ip => Ok(()),
            StickyKey::IpPortPrefix { bits } if (1..=16).contains(&bits) => Ok(()),
            StickyKey::IpPortPrefix { bits } => Err(ConfigProblem::PortPrefix { bits }),
        }
    }
}

/// What one client is, by a [`StickyKey`]: the value a sticky strategy hashes
/// (`routing/rendezvous.rs`) to pick its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientKey {
    ip: IpAddr,
    /// The top bits of the source port, for [`StickyKey::IpPortPrefix`].
    port_block: Option<u16>,
}

impl Hash for ClientKey {
    /// Hashes as the address alone, or as the pair `(address, port block)`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ip.hash(state);
        if let Some(block) = self.port_block {
            block.hash(state);
        }
    }
}

/// A [`StickyKey`] that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a sticky key: use \"ip\" or \"ip+port/BITS\" (BITS 1 – 16)")]
pub struct StickyKeyError {
    /// What was given.
    pub text: String,
}

impl std::str::FromStr for StickyKey {
    type Err = StickyKeyError;

    /// `ip`, or `ip+port/BITS` with BITS from 1 to 16.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StickyKeyError { text: s.to_string() };
        if s == "ip" {
            return Ok(StickyKey::Ip);
        }
        let bits = s.strip_prefix("ip+port/").ok_or_else(bad)?.parse::<u8>().map_err(|_| bad())?;
        let key = StickyKey::IpPortPrefix { bits };
        key.check().map_err(|_| bad())?;
        Ok(key)
    }
}

impl std::fmt::Display for StickyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StickyKey::Ip => f.write_str("ip"),
            StickyKey::IpPortPrefix { bits } => write!(f, "ip+port/{bits}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StickyKey;

    #[test]
    fn ip_keys_ignore_the_port() {
        let a = StickyKey::Ip.of("127.0.0.2:40000".parse().unwrap());
        let b = StickyKey::Ip.of("127.0.0.2:51234".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, StickyKey::Ip.of("127.0.0.3:40000".parse().unwrap()));
    }

    #[test]
    fn mapped_ipv6_is_its_ipv4_address() {
        let v4 = StickyKey::Ip.of("127.0.0.2:1".parse().unwrap());
        let mapped = StickyKey::Ip.of("[::ffff:127.0.0.2]:1".parse().unwrap());
        assert_eq!(v4, mapped);
    }

    #[test]
    fn a_port_prefix_splits_one_address_into_port_blocks() {
        let key = StickyKey::IpPortPrefix { bits: 5 }; // blocks of 2048 ports
        let of = |port: u16| key.of(format!("10.0.0.1:{port}").parse().unwrap());
        assert_eq!(of(2048), of(4095));
        assert_ne!(of(2047), of(2048));
    }

    #[test]
    fn parses_and_prints() {
        for text in ["ip", "ip+port/1", "ip+port/16"] {
            assert_eq!(text.parse::<StickyKey>().unwrap().to_string(), text);
        }
        for bad in ["", "port", "ip+port/0", "ip+port/17", "ip+port/x", "ip/24"] {
            assert!(bad.parse::<StickyKey>().is_err(), "{bad}");
        }
    }
}
