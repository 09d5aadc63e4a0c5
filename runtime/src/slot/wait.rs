//! A reload's replacement that waits for its slot: asked for while the slot restarts, starts
//! or is being recycled, it is not refused (a deploy right after a crash must not silently
//! keep the old code) but held until the slot has a ready process and nothing under way, then
//! run; at most `listen_timeout` after it was asked for, it is refused as before.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::msg::{ReplaceReason, ReplaceReply, SlotMsg};
use super::state::{Phase, SlotState, Waiting};
use crate::api::error::ReplaceError;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// Whether a replacement could start now: a live slot, a ready current process, no
    /// replacement under way.
    pub(crate) fn can_replace_now(&self) -> bool {
        self.is_live() && self.life().replacing().is_none() && self.current().is_some_and(|p| p.phase == Phase::Ready)
    }

    /// Holds a replacement the slot cannot start now (`busy`: another one is under way;
    /// otherwise no ready process), for at most `listen_timeout`. Returns it back when one
    /// is held already.
    pub(crate) fn wait_for_slot(
        &mut self,
        reason: ReplaceReason,
        parent: &Span,
        reply: Option<ReplaceReply>,
        busy: bool,
    ) -> Option<Option<ReplaceReply>> {
        if self.waiting.is_some() {
            return Some(reply);
        }
        let slot = self.slot();
        let timeout = self.args.config.listen_timeout;
        self.next_wait += 1;
        let id = self.next_wait;
        let what = if busy { "being replaced" } else { "not ready (starting or restarting)" };
        parent.in_scope(|| {
            tracing::info!(slot, ?timeout, reason = reason.as_str(), "slot {what}: the replacement waits for it")
        });
        self.waiting = Some(Waiting { id, reason, parent: parent.clone(), reply, busy });
        self.myself.send_after(timeout, move || SlotMsg::WaitTimeout { id });
        None
    }

    /// After every message: runs the held replacement once the slot can take it, refuses it
    /// once the slot is no longer live.
    pub(crate) async fn resume_waiting(&mut self) {
        if self.waiting.is_none() {
            return;
        }
        if !self.is_live() {
            if let Some(w) = self.waiting.take() {
                let slot = self.slot();
                refuse(w.reply, ReplaceError::Stopping { slot });
            }
            return;
        }
        if !self.can_replace_now() {
            return;
        }
        if let Some(w) = self.waiting.take() {
            let slot = self.slot();
            w.parent
                .in_scope(|| tracing::info!(slot, reason = w.reason.as_str(), "slot ready: the held replacement runs"));
            self.start_replacement(w.reason, &w.parent, w.reply, None).await;
        }
    }

    /// `WaitTimeout`: the held replacement waited `listen_timeout`; it is refused.
    pub(crate) fn wait_timed_out(&mut self, id: u64) {
        if self.waiting.as_ref().is_none_or(|w| w.id != id) {
            return;
        }
        let Some(w) = self.waiting.take() else { return };
        let slot = self.slot();
        let timeout = self.args.config.listen_timeout;
        let error = if w.busy { ReplaceError::Busy { slot } } else { ReplaceError::NoReadyWorker { slot } };
        w.parent
            .in_scope(|| tracing::warn!(slot, ?timeout, %error, "the replacement waited listen_timeout for its slot"));
        refuse(w.reply, error);
    }
}

/// Answers the held replacement's requester (whose `reload` span records the failure).
fn refuse(reply: Option<ReplaceReply>, error: ReplaceError) {
    if let Some(reply) = reply {
        let _ = reply.send(Err(error));
    }
}
