//! Length-delimited postcard frames: [`FrameCodec`] (u32 big-endian length prefix, postcard
//! body, a maximum length) and [`DEFAULT_MAX_FRAME_LENGTH`].

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder};

use crate::envelope::Envelope;
use crate::error::ProtocolError;
use crate::reply_sink::{ReplySink, decoding_with};

/// Default maximum frame length: 8 MiB, as `LengthDelimitedCodec`'s.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

/// Width of the length prefix.
const PREFIX: usize = 4;

/// Encodes `Envelope<Out>` and decodes `Envelope<In>` as frames: a u32 big-endian length
/// prefix, then the postcard body.
///
/// The wire format is exactly that of tokio-util's `LengthDelimitedCodec` with a `u32` length
/// field. Both directions work in place: encoding writes the body straight into the output
/// buffer, decoding checks the prefix against the maximum before buffering any of the body.
/// A frame over the maximum length is refused on both sides with
/// [`ProtocolError::FrameTooLarge`], before any of its body is buffered.
///
/// # Example
///
/// ```
/// use bytes::BytesMut;
/// use corral_protocol::{Envelope, FrameCodec, ProtocolError};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec: FrameCodec<Vec<u8>, Vec<u8>> = FrameCodec::new(16);
/// let mut buf = BytesMut::new();
/// let err = codec.encode(Envelope::user(1, vec![0u8; 64]), &mut buf).unwrap_err();
/// assert!(matches!(err, ProtocolError::FrameTooLarge { max: 16, .. }));
/// assert!(buf.is_empty());
/// ```
pub struct FrameCodec<Out, In> {
    max_frame_length: usize,
    /// Where the [`ReplyTo`](crate::ReplyTo)s of decoded requests reply.
    replies: Option<Arc<dyn ReplySink>>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> FrameCodec<Out, In> {
    /// A codec refusing frames whose body is longer than `max_frame_length` bytes.
    ///
    /// ```
    /// # use corral_protocol::FrameCodec;
    /// let codec: FrameCodec<(), ()> = FrameCodec::new(1 << 20);
    /// assert_eq!(codec.max_frame_length(), 1 << 20);
    /// ```
    pub fn new(max_frame_length: usize) -> Self {
        FrameCodec { max_frame_length, replies: None, _types: PhantomData }
    }

    /// The same codec, decoding every [`ReplyTo`](crate::ReplyTo) with `sink` as its way
    /// back (the outgoing queue of this connection, [`reply_sink`](crate::reply_sink)).
    #[must_use]
    pub fn with_replies(mut self, sink: Arc<dyn ReplySink>) -> Self {
        self.replies = Some(sink);
        self
    }

    /// The maximum body length, in bytes.
    ///
    /// ```
    /// # use corral_protocol::{FrameCodec, DEFAULT_MAX_FRAME_LENGTH};
    /// assert_eq!(FrameCodec::<(), ()>::default().max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
    /// ```
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }
}

impl<Out, In> Clone for FrameCodec<Out, In> {
    /// The same codec (it keeps no state between frames: a copy decodes from any frame
    /// boundary of the same stream).
    ///
    /// ```
    /// # use corral_protocol::FrameCodec;
    /// let codec: FrameCodec<(), ()> = FrameCodec::new(64);
    /// assert_eq!(codec.clone().max_frame_length(), 64);
    /// ```
    fn clone(&self) -> Self {
        FrameCodec { max_frame_length: self.max_frame_length, replies: self.replies.clone(), _types: PhantomData }
    }
}

impl<Out, In> Default for FrameCodec<Out, In> {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_LENGTH)
    }
}

impl<Out, In> std::fmt::Debug for FrameCodec<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec").field("max_frame_length", &self.max_frame_length).finish()
    }
}

impl<Out: Serialize, In> Encoder<Envelope<Out>> for FrameCodec<Out, In> {
    type Error = ProtocolError;

    fn encode(&mut self, item: Envelope<Out>, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let start = dst.len();
        dst.put_u32(0);
        let written = postcard::serialize_with_flavor(&item, BytesFlavor(dst));
        let len = dst.len() - start - PREFIX;
        let outcome = match written {
            Err(e) => Err(ProtocolError::Encode(e)),
            Ok(_) if len > self.max_frame_length => {
                Err(ProtocolError::FrameTooLarge { len, max: self.max_frame_length })
            }
            Ok(_) => Ok(()),
        };
        match outcome {
            Ok(()) => {
                // `len <= max_frame_length`, and the constructor's caller chose a max that the
                // decoder's u32 length field carries; a body over 4 GiB cannot pass the check
                // above unless max itself is over u32::MAX, which we refuse here too.
                let Ok(len32) = u32::try_from(len) else {
                    dst.truncate(start);
                    return Err(ProtocolError::FrameTooLarge { len, max: u32::MAX as usize });
                };
                dst[start..start + PREFIX].copy_from_slice(&len32.to_be_bytes());
                Ok(())
            }
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }
}

/// postcard's output written straight into the frame buffer. (Its `io::Write` adapter made a
/// `memcpy` call of every varint byte.)
struct BytesFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Varints come as slices of 1 to 10 bytes: byte by byte beats a `memcpy` call.
        if data.len() <= 10 {
            self.0.reserve(data.len());
            for &byte in data {
                self.0.put_u8(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<Out, In: DeserializeOwned> Decoder for FrameCodec<Out, In> {
    type Item = Envelope<In>;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Envelope<In>>, ProtocolError> {
        if src.len() < PREFIX {
            return Ok(None);
        }
        // The prefix stays in the buffer until its whole frame has arrived, so a frame split
        // anywhere (even right after its prefix) is read again from its start.
        let len = (&src[..PREFIX]).get_u32() as usize;
        if len > self.max_frame_length {
            return Err(ProtocolError::FrameTooLarge { len, max: self.max_frame_length });
        }
        if src.len() < PREFIX + len {
            src.reserve(PREFIX + len - src.len());
            return Ok(None);
        }
        // Decoded in place, then consumed (also when it does not decode: the stream goes on
        // at the next frame, or the caller drops it).
        let decoded = decoding_with(self.replies.as_ref(), || postcard::take_from_bytes(&src[PREFIX..PREFIX + len]))
            .map(|(item, rest)| (item, rest.len()));
        src.advance(PREFIX + len);
        match decoded.map_err(ProtocolError::Decode)? {
            (item, 0) => Ok(Some(item)),
            (_, extra) => Err(ProtocolError::TrailingBytes { extra }),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Envelope<In>>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated { buffered: src.len() }),
        }
    }
}
