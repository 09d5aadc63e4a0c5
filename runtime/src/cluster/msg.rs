//! The cluster actor's mailbox: users' requests, and notifications from its own parts.

use crate::api::msg::ClusterMsg;
use crate::api::reports::ReloadReport;
use crate::slot::SlotReport;

/// A message of the cluster actor. Users send [`ClusterMsg`]s (through a derived actor
/// reference); the rest is the cluster's own and cannot be built outside this crate.
#[derive(Debug)]
pub struct ClusterSignal(pub(crate) Signal);

#[derive(Debug)]
pub(crate) enum Signal {
    /// A user's request.
    Request(ClusterMsg),
    /// A slot ended, or its worker's listen request failed.
    Slot(SlotReport),
    /// The reload task is done; its requesters.
    ReloadFinished(ReloadReport, Vec<ractor::RpcReplyPort<ReloadReport>>),
    /// The autoscaler asks for a step to this many workers, for this reason (refused while
    /// pinned, stopping or reloading).
    Autoscale(
        usize,
        crate::api::reports::ScaleReason,
        ractor::RpcReplyPort<Result<crate::api::reports::ScaleReport, crate::api::error::ScaleError>>,
    ),
    /// An upgrade's preflight check of the new executable is done.
    PreflightDone(Result<(), crate::upgrade::error::PreflightError>),
}

impl From<ClusterMsg> for ClusterSignal {
    fn from(msg: ClusterMsg) -> Self {
        ClusterSignal(Signal::Request(msg))
    }
}

impl TryFrom<ClusterSignal> for ClusterMsg {
    type Error = ();

    fn try_from(signal: ClusterSignal) -> Result<Self, ()> {
        match signal.0 {
            Signal::Request(msg) => Ok(msg),
            _ => Err(()),
        }
    }
}

impl From<SlotReport> for ClusterSignal {
    fn from(report: SlotReport) -> Self {
        ClusterSignal(Signal::Slot(report))
    }
}

impl TryFrom<ClusterSignal> for SlotReport {
    type Error = ();

    fn try_from(signal: ClusterSignal) -> Result<Self, ()> {
        match signal.0 {
            Signal::Slot(report) => Ok(report),
            _ => Err(()),
        }
    }
}
