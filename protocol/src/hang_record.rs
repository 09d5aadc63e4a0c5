//! The hang record: the raw backtrace a corral worker's [`HANG_DUMP_SIGNAL`] handler writes to
//! [`HANG_FD`], for the primary to name (symbolise) from the worker's `/proc/PID/maps` and the
//! symbol tables of the mapped files.
//!
//! A small versioned binary format, built so that the signal handler can write it with no
//! allocation and no lock ([`encode`] only copies bytes into a caller's fixed buffer) and in
//! one `write` of at most [`MAX_RECORD_BYTES`] bytes, under `PIPE_BUF`, so that the write is
//! atomic and the reader gets a whole record or nothing. Primary and worker run on the same
//! machine: integers are in the machine's byte order.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | [`MAGIC`] (`b"CHR\0"`) |
//! | 4..6 | [`VERSION`] (u16) |
//! | 6..8 | frame count (u16, at most [`MAX_FRAMES`]) |
//! | 8..10 | scanned count (u16, at most [`MAX_SCANNED`]) |
//! | 10..12 | 0 (reserved) |
//! | 12..16 | the thread id of the interrupted (event-loop) thread (i32) |
//! | 16.. | the frame addresses, then the scanned addresses (u64 each), innermost first |
//!
//! ```
//! use corral_protocol::hang_record::{HangRecord, MAX_RECORD_BYTES, encode};
//!
//! let mut buf = [0u8; MAX_RECORD_BYTES];
//! let len = encode(&mut buf, 42, &[0x1000, 0x2000], &[0x3000]);
//! let record = HangRecord::decode(&buf[..len]).unwrap();
//! assert_eq!(record, HangRecord { tid: 42, frames: vec![0x1000, 0x2000], scanned: vec![0x3000] });
//! ```
//!
//! [`HANG_DUMP_SIGNAL`]: crate::bootstrap::HANG_DUMP_SIGNAL
//! [`HANG_FD`]: crate::bootstrap::HANG_FD

/// The first four bytes of a record.
pub const MAGIC: [u8; 4] = *b"CHR\0";
/// The format's version; a reader refuses another.
pub const VERSION: u16 = 1;
/// Bytes before the addresses.
pub const HEADER_BYTES: usize = 16;
/// Frames of the frame-pointer walk, at most.
pub const MAX_FRAMES: usize = 64;
/// Return-address candidates of the stack scan, at most.
pub const MAX_SCANNED: usize = 16;
/// The largest record: 656 bytes, under `PIPE_BUF` (4096 on Linux), so one `write` of it to
/// a pipe is atomic.
///
/// ```
/// assert!(corral_protocol::hang_record::MAX_RECORD_BYTES <= 4096);
/// ```
pub const MAX_RECORD_BYTES: usize = HEADER_BYTES + 8 * (MAX_FRAMES + MAX_SCANNED);

/// Writes a record of `tid`, `frames` and `scanned` into `out` and returns its length. Extra
/// addresses beyond [`MAX_FRAMES`] and [`MAX_SCANNED`] are left out.
///
/// Async-signal-safe: no allocation, no lock, no panic (every index is within `out`, whose
/// size is the largest record); it only copies bytes.
///
/// ```
/// use corral_protocol::hang_record::{HEADER_BYTES, MAX_RECORD_BYTES, encode};
/// let mut buf = [0u8; MAX_RECORD_BYTES];
/// assert_eq!(encode(&mut buf, 7, &[1, 2, 3], &[]), HEADER_BYTES + 3 * 8);
/// ```
pub fn encode(out: &mut [u8; MAX_RECORD_BYTES], tid: i32, frames: &[u64], scanned: &[u64]) -> usize {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let scanned = &scanned[..scanned.len().min(MAX_SCANNED)];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_ne_bytes());
    // Both counts are at most 64: they fit a u16.
    out[6..8].copy_from_slice(&(frames.len() as u16).to_ne_bytes());
    out[8..10].copy_from_slice(&(scanned.len() as u16).to_ne_bytes());
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&tid.to_ne_bytes());
    let mut at = HEADER_BYTES;
    for &addr in frames.iter().chain(scanned) {
        out[at..at + 8].copy_from_slice(&addr.to_ne_bytes());
        at += 8;
    }
    at
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HangRecord {
    /// The interrupted thread (the worker's event loop).
    pub tid: i32,
    /// Addresses from the frame-pointer walk, innermost (the interrupted program counter)
    /// first.
    pub frames: Vec<u64>,
    /// Words on the stack that point into executable code (likely return addresses; a
    /// heuristic for code built without frame pointers), innermost first.
    pub scanned: Vec<u64>,
}

/// Why bytes are not a record.
///
/// ```
/// use corral_protocol::hang_record::{HangRecord, HangRecordError};
/// assert_eq!(HangRecord::decode(b"CHR"), Err(HangRecordError::Truncated { needed: 16, got: 3 }));
/// assert_eq!(HangRecord::decode(&[0u8; 16]), Err(HangRecordError::BadMagic));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HangRecordError {
    /// Fewer bytes than the header or its counts say.
    #[error("a truncated hang record: {got} of {needed} bytes")]
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes there are.
        got: usize,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error("not a hang record (bad magic)")]
    BadMagic,
    /// Another version of the format (a worker built from another corral).
    #[error("a hang record of version {0}, not {VERSION}")]
    Version(u16),
    /// More addresses than the format allows.
    #[error("a hang record with {frames} frames and {scanned} scanned addresses (too many)")]
    TooLong {
        /// The frame count read.
        frames: usize,
        /// The scanned count read.
        scanned: usize,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

impl HangRecord {
    /// The length of the record whose first [`HEADER_BYTES`] (at least) are `header`: how
    /// many bytes a reader must have before [`decode`](Self::decode).
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode), for the header.
    ///
    /// ```
    /// use corral_protocol::hang_record::{HangRecord, MAX_RECORD_BYTES, encode};
    /// let mut buf = [0u8; MAX_RECORD_BYTES];
    /// let len = encode(&mut buf, 1, &[1, 2], &[3]);
    /// assert_eq!(HangRecord::length(&buf[..16]), Ok(len));
    /// ```
    pub fn length(header: &[u8]) -> Result<usize, HangRecordError> {
        if header.len() < HEADER_BYTES {
            return Err(HangRecordError::Truncated { needed: HEADER_BYTES, got: header.len() });
        }
        if header[0..4] != MAGIC {
            return Err(HangRecordError::BadMagic);
        }
        let version = u16_at(header, 4);
        if version != VERSION {
            return Err(HangRecordError::Version(version));
        }
        let (frames, scanned) = (usize::from(u16_at(header, 6)), usize::from(u16_at(header, 8)));
        if frames > MAX_FRAMES || scanned > MAX_SCANNED {
            return Err(HangRecordError::TooLong { frames, scanned });
        }
        Ok(HEADER_BYTES + 8 * (frames + scanned))
    }

    /// Decodes the record at the start of `bytes` (bytes after it are ignored).
    ///
    /// # Errors
    ///
    /// [`HangRecordError`] when `bytes` are not a whole record of this version.
    pub fn decode(bytes: &[u8]) -> Result<HangRecord, HangRecordError> {
        let length = Self::length(bytes)?;
        if bytes.len() < length {
            return Err(HangRecordError::Truncated { needed: length, got: bytes.len() });
        }
        let frames = usize::from(u16_at(bytes, 6));
        let tid = i32::from_ne_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let mut addrs = bytes[HEADER_BYTES..length].chunks_exact(8).map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_ne_bytes(word)
        });
        let frames_list: Vec<u64> = addrs.by_ref().take(frames).collect();
        Ok(HangRecord { tid, frames: frames_list, scanned: addrs.collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_record_round_trips(
            tid in any::<i32>(),
            frames in proptest::collection::vec(any::<u64>(), 0..80),
            scanned in proptest::collection::vec(any::<u64>(), 0..30),
        ) {
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let len = encode(&mut buf, tid, &frames, &scanned);
            prop_assert!(len <= MAX_RECORD_BYTES);
            prop_assert_eq!(HangRecord::length(&buf[..HEADER_BYTES]), Ok(len));
            let record = HangRecord::decode(&buf[..len]).unwrap();
            prop_assert_eq!(record.tid, tid);
            prop_assert_eq!(&record.frames[..], &frames[..frames.len().min(MAX_FRAMES)]);
            prop_assert_eq!(&record.scanned[..], &scanned[..scanned.len().min(MAX_SCANNED)]);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = HangRecord::decode(&bytes);
        }
    }

    #[test]
    fn a_short_or_foreign_record_is_refused() {
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let len = encode(&mut buf, 3, &[1, 2, 3], &[4]);
        assert_eq!(HangRecord::decode(&buf[..len - 1]), Err(HangRecordError::Truncated { needed: len, got: len - 1 }));
        buf[4..6].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(HangRecord::decode(&buf[..len]), Err(HangRecordError::Version(2)));
        buf[4..6].copy_from_slice(&VERSION.to_ne_bytes());
        buf[6..8].copy_from_slice(&65u16.to_ne_bytes());
        assert_eq!(HangRecord::length(&buf), Err(HangRecordError::TooLong { frames: 65, scanned: 1 }));
    }
}
