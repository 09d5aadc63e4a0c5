//! The frame: [`Envelope`] (sequence number, trace context) and its [`Body`], one of corral's
//! [`Control`] messages or a user message.

use serde::{Deserialize, Serialize};

use crate::control::Control;
use crate::error::ProtocolError;
use crate::handshake::Hello;
use crate::trace::TraceContext;

/// One frame on the IPC stream.
///
/// `M` is the user's own serde type for this direction (one type primary → worker, another
/// worker → primary).
///
/// The control message and the trace context are boxed (the same bytes on the wire): a frame
/// with a small user message is then small itself, so that it moves through the queues, the
/// writer and the reader in registers rather than by `memcpy` (a user-message flood moved
/// each frame half a dozen times, at 168 bytes, before).
///
/// # Example
///
/// ```
/// use corral_protocol::{Body, Envelope};
///
/// let env = Envelope::user(1, 42u32);
/// assert_eq!(env.seq, 1);
/// assert!(env.trace.is_none());
/// assert!(matches!(env.body, Body::User(42)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// Per-direction sequence number, counting from 1; 0 means "not numbered".
    pub seq: u64,
    /// W3C trace context of the sender's current span, when tracing is on.
    pub trace: Option<Box<TraceContext>>,
    /// What the frame carries.
    pub body: Body<M>,
}

/// What an [`Envelope`] carries: corral's own control message or a user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body<M> {
    /// A message of corral's own protocol (boxed: most frames are user messages, and
    /// [`Control`]'s largest variant is much larger than most of them).
    Control(Box<Control>),
    /// A message of the user's type.
    User(M),
}

impl<M> Body<M> {
    /// The control message, if this is one.
    ///
    /// ```
    /// use corral_protocol::{Body, Control};
    /// let body: Body<()> = Body::from(Control::Ready);
    /// assert!(matches!(body.as_control(), Some(Control::Ready)));
    /// assert!(Body::User(()).as_control().is_none());
    /// ```
    pub fn as_control(&self) -> Option<&Control> {
        match self {
            Body::Control(control) => Some(control),
            Body::User(_) => None,
        }
    }
}

impl<M> From<Control> for Body<M> {
    /// A body carrying `control`.
    ///
    /// ```
    /// use corral_protocol::{Body, Control};
    /// assert_eq!(Body::<()>::from(Control::Disconnect), Body::Control(Box::new(Control::Disconnect)));
    /// ```
    fn from(control: Control) -> Self {
        Body::Control(Box::new(control))
    }
}

impl<M> Envelope<M> {
    /// An envelope carrying a user message, with no trace context.
    ///
    /// ```
    /// # use corral_protocol::Envelope;
    /// let env = Envelope::user(3, "x");
    /// assert_eq!(env.seq, 3);
    /// ```
    pub fn user(seq: u64, msg: M) -> Self {
        Envelope { seq, trace: None, body: Body::User(msg) }
    }

    /// An envelope carrying a control message, with no trace context.
    ///
    /// ```
    /// # use corral_protocol::{Control, Envelope};
    /// let env: Envelope<()> = Envelope::control(0, Control::Ready);
    /// assert!(env.trace.is_none());
    /// ```
    pub fn control(seq: u64, control: Control) -> Self {
        Envelope { seq, trace: None, body: Body::from(control) }
    }

    /// The same envelope with a trace context attached.
    ///
    /// ```
    /// # use corral_protocol::{Envelope, TraceContext};
    /// let env = Envelope::user(1, ()).with_trace(Some(TraceContext::default()));
    /// assert!(env.trace.is_some());
    /// ```
    pub fn with_trace(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace.map(Box::new);
        self
    }

    /// Checks the first frame of a worker's stream: it must be a [`Control::Hello`] that
    /// passes [`Hello::check`] for `slot` and `generation`. Returns the hello.
    ///
    /// ```
    /// use corral_protocol::{Control, Envelope, Hello, ProtocolError};
    ///
    /// let first: Envelope<()> = Envelope::control(1, Control::Hello(Hello::new(0, 3, 99)));
    /// assert_eq!(first.check_hello(0, 3).unwrap().pid, 99);
    /// let ready: Envelope<()> = Envelope::control(1, Control::Ready);
    /// assert!(matches!(ready.check_hello(0, 3), Err(ProtocolError::HelloNotFirst)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtocolError::HelloNotFirst`] for any other frame, else as [`Hello::check`].
    pub fn check_hello(&self, slot: u32, generation: u64) -> Result<Hello, ProtocolError> {
        match self.body.as_control() {
            Some(Control::Hello(hello)) => {
                hello.check(slot, generation)?;
                Ok(*hello)
            }
            _ => Err(ProtocolError::HelloNotFirst),
        }
    }
}
