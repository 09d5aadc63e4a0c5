//! The control socket's protocol: versioned requests and responses, each a 4-byte big-endian
//! length and a JSON body (gunicornc's framing), with request ids.
//!
//! ```
//! use corral_runtime::control::{Command, Request};
//!
//! let request = Request::new(7, Command::Scale { to: None, by: Some(-1), auto: false });
//! let json = serde_json::to_string(&request).unwrap();
//! assert_eq!(json, r#"{"v":1,"id":7,"command":"scale","args":{"to":null,"by":-1}}"#);
//! let back: Request = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, request);
//! ```

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version every request and response carries.
pub const CONTROL_VERSION: u32 = 1;

/// The largest request the server reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The largest response a client reads.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A request: the version, an id (echoed in the response) and a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`CONTROL_VERSION`].
    pub v: u32,
    /// Echoed in every response to this request.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    /// A request of this version.
    pub fn new(id: u64, command: Command) -> Self {
        Request { v: CONTROL_VERSION, id, command }
    }
}

/// The scale a `scale` command asks for: `to`, `by` or `auto`, exactly one of them.
pub(crate) fn scale_request(
    to: Option<usize>,
    by: Option<i64>,
    auto: bool,
) -> Result<crate::api::reports::Scale, crate::operator::control::ControlFailure> {
    use crate::api::reports::Scale;
    match (to, by, auto) {
        (Some(n), None, false) => Ok(Scale::To(n)),
        (None, Some(d), false) => Ok(Scale::By(d)),
        (None, None, true) => Ok(Scale::Auto),
        _ => Err(crate::operator::control::ControlFailure::ScaleArgs),
    }
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", content = "args", rename_all = "snake_case")]
pub enum Command {
    /// Every worker's status.
    Status,
    /// A rolling reload; answered when it is done.
    Reload,
    /// Exactly `to` workers, or `by` more (fewer when negative), or (`auto`) back to
    /// autoscaling after a scale pinned the count.
    Scale {
        /// The number of workers wanted.
        to: Option<usize>,
        /// The change wanted.
        by: Option<i64>,
        /// `corral scale auto`: lift the pin of an autoscaled cluster.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        auto: bool,
    },
    /// Replace one slot's process (replacement first).
    Restart {
        /// The slot.
        slot: usize,
    },
    /// Send a signal to one slot's current process.
    Signal {
        /// The slot.
        slot: usize,
        /// The signal's number.
        signal: i32,
    },
    /// Stop the cluster gracefully.
    Stop,
    /// Upgrade the primary in place (it execs the executable now on disk); answered only
    /// when refused: on success the connection closes as the image is replaced.
    Upgrade,
    /// The effective configuration.
    Config,
    /// Every worker of every node of the node set, each with its `node`.
    StatusAll,
    /// A rolling reload across the node set, one node at a time; answered when done.
    ReloadAll,
    /// A message (JSON of the cluster's message type) to every worker on every node.
    Broadcast {
        /// The message.
        message: serde_json::Value,
    },
    /// Captured worker output: the last `lines` lines (of `slot`, or of every slot), then,
    /// with `follow`, every new line as it comes.
    Logs {
        /// Only this slot's lines.
        slot: Option<usize>,
        /// Only this program's lines (a tree of programs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        /// How many past lines.
        lines: usize,
        /// Keep the response open and send new lines.
        follow: bool,
    },
    /// A tree of programs: a rolling restart of one program, or of one slot of it.
    RestartProgram {
        /// The program.
        program: String,
        /// Only this slot.
        slot: Option<usize>,
    },
    /// A tree of programs: a rolling reload of one program, its configuration re-read.
    ReloadProgram {
        /// The program.
        program: String,
    },
    /// A tree of programs: scale one program to `to` workers, or by `by`.
    ScaleProgram {
        /// The program.
        program: String,
        /// The number of workers wanted.
        to: Option<usize>,
        /// The change wanted.
        by: Option<i64>,
        /// Back to autoscaling (`corral scale NAME auto`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        auto: bool,
    },
    /// A tree of programs: stop one program (it stays stopped).
    StopProgram {
        /// The program.
        program: String,
    },
    /// A tree of programs: start a stopped program (once what it depends on holds).
    StartProgram {
        /// The program.
        program: String,
    },
}

/// An answer: the version, the request's id, and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`CONTROL_VERSION`].
    pub v: u32,
    /// The request's id (0 when the request could not be read).
    pub id: u64,
    /// What came of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What came of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; the data depends on the command.
    Ok {
        /// The answer.
        data: serde_json::Value,
    },
    /// Part of a streamed answer (`logs --follow`); more follows.
    More {
        /// This part.
        data: serde_json::Value,
    },
    /// Refused or failed.
    Error {
        /// Why.
        error: ControlError,
    },
}

/// Why a request was refused or failed, as the wire carries it: the kind, and the Display of
/// the server's typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{said}")]
pub struct ControlError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What the server said, for people (the Display of its error; `message` on the wire).
    #[serde(rename = "message")]
    pub said: String,
}

/// Kinds of [`ControlError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a request (bad JSON, bad framing).
    BadRequest,
    /// Over [`MAX_REQUEST`].
    TooLarge,
    /// Another protocol version.
    Version,
    /// The peer is not the cluster's user nor root.
    NotPermitted,
    /// Too many clients at once.
    Busy,
    /// The cluster refused the request (e.g. a reload while one runs).
    Refused,
    /// The request was carried out and failed (e.g. a reload aborted).
    Failed,
    /// No such slot.
    NoSuchSlot,
}

impl ControlError {
    /// An error of `kind`, saying `error`'s Display.
    pub fn new(kind: ErrorKind, error: &impl std::fmt::Display) -> Self {
        ControlError { kind, said: error.to_string() }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix is over the limit.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not the expected JSON.
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads one length-prefixed JSON frame (at most `max` bytes of body).
///
/// # Errors
///
/// I/O errors (EOF included), a length over `max`, JSON that does not decode.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    io: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<T, FrameError> {
    let len = io.read_u32().await? as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one length-prefixed JSON frame.
///
/// # Errors
///
/// I/O errors.
pub async fn write_frame(io: &mut (impl AsyncWrite + Unpin), value: &impl Serialize) -> Result<(), FrameError> {
    let body = serde_json::to_vec(value)?;
    let len =
        u32::try_from(body.len()).map_err(|_| FrameError::TooLarge { len: body.len(), max: u32::MAX as usize })?;
    io.write_u32(len).await?;
    io.write_all(&body).await?;
    io.flush().await?;
    Ok(())
}
