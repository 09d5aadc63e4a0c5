//! The hello handshake: [`Hello`], the first frame a worker sends, checked against
//! [`PROTOCOL_VERSION`] and the slot and generation the primary started.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// The protocol version this crate speaks. Bumped on every incompatible change of the frames.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame a worker sends: who it is and which protocol version it speaks.
///
/// # Example
///
/// ```
/// use corral_protocol::{Hello, PROTOCOL_VERSION, ProtocolError};
///
/// let hello = Hello::new(0, 1, 4242);
/// assert_eq!(hello.version, PROTOCOL_VERSION);
/// assert!(hello.check(0, 1).is_ok());
///
/// let old = Hello { version: 0, ..hello };
/// assert!(matches!(old.check(0, 1), Err(ProtocolError::VersionMismatch { ours: 1, theirs: 0 })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The worker slot the process was started for.
    pub slot: u32,
    /// The generation of that slot (bumped at every restart or reload).
    pub generation: u64,
    /// The worker's process id.
    pub pid: u32,
}

impl Hello {
    /// A hello for this crate's protocol version.
    ///
    /// ```
    /// # use corral_protocol::Hello;
    /// assert_eq!(Hello::new(2, 5, 99).slot, 2);
    /// ```
    pub fn new(slot: u32, generation: u64, pid: u32) -> Self {
        Hello { version: PROTOCOL_VERSION, slot, generation, pid }
    }

    /// Checks a received hello against what the primary expects of that connection.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::VersionMismatch`] for another protocol version,
    /// [`ProtocolError::WrongPeer`] when slot or generation differ.
    ///
    /// ```
    /// # use corral_protocol::{Hello, ProtocolError};
    /// let err = Hello::new(1, 1, 7).check(0, 1).unwrap_err();
    /// assert!(matches!(err, ProtocolError::WrongPeer { .. }));
    /// ```
    pub fn check(&self, slot: u32, generation: u64) -> Result<(), ProtocolError> {
        if self.version != PROTOCOL_VERSION {
            return Err(ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: self.version });
        }
        if self.slot != slot || self.generation != generation {
            return Err(ProtocolError::WrongPeer {
                expected_slot: slot,
                expected_generation: generation,
                slot: self.slot,
                generation: self.generation,
            });
        }
        Ok(())
    }
}
