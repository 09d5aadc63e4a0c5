//! Listen grants: a worker's request to listen on an address, answered by the cluster's
//! [`Listeners`](crate::routing::balance::Listeners).

use corral_protocol::Control;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::msg::SlotReport;
use super::state::SlotState;
use crate::api::events::ClusterEvent;
use crate::routing::balance::Target;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `Listen`: binds (or shares) the address, registers the process on it as the
    /// cluster's distribution requires, and answers. A refusal stops the cluster.
    pub(crate) async fn listen(&mut self, generation: u64, id: u64, requested: &str) {
        let slot = self.slot();
        let Some(proc) = self.proc(generation) else { return };
        if !self.args.config.may_listen(requested) {
            // A worker asking for a port the configuration does not allow (a bug, or a
            // compromised worker): refused to it alone; the cluster goes on.
            let refusal = corral_protocol::ListenRefusal::NotAllowed { addr: requested.to_string() };
            tracing::error!(slot, pid = proc.pid(), error = %refusal, "listen request refused");
            proc.process.send_control(Control::ListenAck { id, result: Err(refusal) });
            return;
        }
        // Only corral workers ask, and every one of them has a handle channel.
        let Some(channel) = proc.process.handles.clone() else { return };
        let target = Target {
            slot,
            generation,
            listen_id: id,
            channel,
            accepting: proc.accepting.clone(),
            load: proc.process.load.clone(),
            untaken: proc.process.untaken.clone(),
        };
        let listeners = self.args.listeners.clone();
        match listeners.grant(requested, target).await {
            Ok((addr, grant)) => {
                if let Some(proc) = self.proc(generation) {
                    proc.process.send_control(Control::ListenAck { id, result: Ok(grant) });
                }
                self.args.bus.emit(ClusterEvent::Listening { slot, addr });
            }
            Err(corral_protocol::ListenRefusal::Pass { errno, .. }) if worker_gone(errno) => {
                // The worker died while its listener was being passed (a kill during its
                // start): nothing is wrong with the address; its exit restarts it.
                tracing::debug!(slot, errno, "the worker was gone before its listener could be passed");
            }
            Err(refusal) => {
                // The cluster decides what a refusal means (it stops) and says why once.
                tracing::debug!(slot, error = %refusal, "listen failed");
                if let Some(proc) = self.proc(generation) {
                    proc.process.send_control(Control::ListenAck { id, result: Err(refusal.clone()) });
                }
                let _ = self.args.cluster.send_message(SlotReport::ListenFailed { slot, refusal });
            }
        }
    }
}

/// Whether a failed send on the handle channel means the worker's end is closed (it died).
fn worker_gone(errno: i32) -> bool {
    matches!(errno, libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOTCONN)
}
