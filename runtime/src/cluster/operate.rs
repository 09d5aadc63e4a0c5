//! Operations on one slot, asked of the cluster: restart (replacement first) and signal.

use std::time::Duration;

use ractor::RpcReplyPort;
use ractor::rpc::CallResult;
use tracing::Span;

use super::state::ClusterState;
use crate::api::error::ClusterError;
use crate::api::reports::Replaced;
use crate::slot::{ReplaceReason, SlotMsg};

impl<M, R> ClusterState<M, R> {
    fn supervisor(&self, slot: usize) -> Result<ractor::ActorRef<SlotMsg>, ClusterError> {
        match self.slots.get(slot) {
            None => Err(ClusterError::NoSuchSlot { slot, workers: self.slots.len() }),
            Some(s) => s.supervisor.clone().ok_or(ClusterError::NotConnected { slot }),
        }
    }

    /// `Restart`: the slot replaces its process; answered (from a task, the cluster keeps
    /// serving) once the replacement is ready or failed.
    pub(crate) fn restart(&self, slot: usize, reply: RpcReplyPort<Result<Replaced, ClusterError>>) {
        let sup = match self.supervisor(slot) {
            Ok(sup) => sup,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let patience = self.replacement_patience();
        tokio::spawn(async move {
            let replace =
                |port| SlotMsg::Replace { reason: ReplaceReason::Restart, parent: Span::none(), reply: Some(port) };
            let result = match sup.call(replace, Some(patience)).await {
                Ok(CallResult::Success(result)) => result.map_err(ClusterError::Replace),
                Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => Err(ClusterError::NotConnected { slot }),
            };
            let _ = reply.send(result);
        });
    }

    /// `Signal`: the slot signals its current process.
    pub(crate) fn signal(
        &self,
        slot: usize,
        signal: nix::sys::signal::Signal,
        reply: RpcReplyPort<Result<u32, ClusterError>>,
    ) {
        let sup = match self.supervisor(slot) {
            Ok(sup) => sup,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        tokio::spawn(async move {
            let result = match sup.call(|port| SlotMsg::Signal(signal, port), Some(Duration::from_secs(2))).await {
                Ok(CallResult::Success(Some(pid))) => Ok(pid),
                _ => Err(ClusterError::NotConnected { slot }),
            };
            let _ = reply.send(result);
        });
    }
}
