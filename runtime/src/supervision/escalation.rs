//! What the cluster does when one of its slots gives up.

/// What the cluster does when a slot gives up (it exceeded its restart intensity).
///
/// ```
/// use corral_runtime::Escalation;
/// assert_eq!(Escalation::default(), Escalation::Stop);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escalation {
    /// Stop every other worker gracefully, then fail the cluster actor with
    /// [`ClusterError::GaveUp`](crate::api::error::ClusterError::GaveUp), as an Erlang supervisor does; a
    /// ractor supervisor above it sees the failure.
    #[default]
    Stop,
    /// Keep the other workers running, one slot short (an event says so).
    Degraded,
}
