//! Health checks of the current process: heartbeats (a worker whose event loop is stuck is
//! killed), memory (recycled over `max_memory`, sustained), and `max_requests` recycling.

use std::sync::Arc;
use std::time::Instant;

use corral_protocol::{Control, WorkerStats};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::msg::ReplaceReason;
use super::state::{Phase, Role, SlotState};
use crate::api::events::ClusterEvent;
use crate::supervision::kill::KillReason;
use crate::sys::hang::HangReport;
use crate::sys::procfs::rss_bytes;

/// Heartbeats in a row over `max_memory` before the process is recycled: a sustained
/// excess, not a spike.
const OVER_MEMORY_BEATS: u32 = 2;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `Heartbeat`: kills a current process that left the last ping unanswered for
    /// `heartbeat_timeout`, pings it otherwise, and checks its memory.
    pub(crate) async fn heartbeat(&mut self) {
        let slot = self.slot();
        let config = self.args.config.clone();
        let nonce = self.next_nonce;
        let watchdog = config.exec.foreign().and_then(|f| f.watchdog);
        let Some(proc) = self.current_mut() else { return };
        if !matches!(proc.phase, Phase::Online | Phase::Ready) {
            return;
        }
        if !proc.process.speaks_corral() {
            // A foreign worker is not pinged: it says WATCHDOG=1 by itself, if it was told to.
            if let Some(timeout) = watchdog {
                match proc.ping {
                    Some((_, seen)) if seen.elapsed() >= timeout => {
                        tracing::error!(
                            slot,
                            pid = proc.pid(),
                            ?timeout,
                            "worker sent no WATCHDOG=1 in time; killing it"
                        );
                        proc.diagnose_and_kill(KillReason::MissedWatchdog { timeout });
                        return;
                    }
                    Some(_) => {}
                    None => proc.ping = Some((0, Instant::now())),
                }
            }
        } else {
            match proc.ping {
                Some((_, sent)) if sent.elapsed() >= config.heartbeat_timeout => {
                    let timeout = config.heartbeat_timeout;
                    tracing::error!(slot, pid = proc.pid(), ?timeout, "worker missed its heartbeat; killing it");
                    proc.ping = None;
                    proc.diagnose_and_kill(KillReason::MissedHeartbeat { timeout });
                    return;
                }
                Some(_) => {}
                None => {
                    proc.ping = Some((nonce, Instant::now()));
                    proc.process.send_control(Control::Ping { nonce });
                    self.next_nonce += 1;
                }
            }
        }
        let Some(limit) = config.max_memory else { return };
        let recycling = self.recycling();
        let Some(proc) = self.current_mut() else { return };
        if proc.phase != Phase::Ready {
            return;
        }
        let rss = rss_bytes(proc.pid()).unwrap_or(0);
        proc.over_memory = if rss > limit { proc.over_memory + 1 } else { 0 };
        if proc.over_memory >= OVER_MEMORY_BEATS && !recycling {
            tracing::warn!(slot, pid = proc.pid(), rss, limit, "worker over max_memory; recycling it");
            proc.over_memory = 0;
            self.recycle(ReplaceReason::MaxMemory).await;
        }
    }

    /// `Pong`: records the heartbeat's latency and the worker's counters; recycles the
    /// current process once it handled `max_requests`.
    pub(crate) async fn pong(&mut self, generation: u64, nonce: u64, stats: WorkerStats) {
        let slot = self.slot();
        let Some(proc) = self.proc_mut(generation) else { return };
        let mut latency = None;
        if let Some((sent_nonce, sent)) = proc.ping
            && sent_nonce == nonce
        {
            latency = Some(sent.elapsed());
            proc.ping = None;
        }
        if proc.role != Role::Current {
            self.last_latency = latency.or(self.last_latency);
            return;
        }
        let mut recycle = false;
        if let Some(limit) = proc.request_limit
            && stats.handled >= limit
            && proc.phase == Phase::Ready
        {
            proc.request_limit = None;
            recycle = true;
            tracing::info!(slot, pid = proc.pid(), handled = stats.handled, limit, "max_requests reached; recycling");
        }
        self.last_latency = latency.or(self.last_latency);
        self.last_stats = Some(stats);
        if recycle && self.is_live() {
            self.recycle(ReplaceReason::MaxRequests).await;
        }
    }
}

impl<M, R: Clone + Send + 'static> SlotState<M, R> {
    /// `Hung`: a process that missed its heartbeat was diagnosed (its SIGKILL follows):
    /// logged, emitted, and recorded on its lifecycle spans and on the `restart` that follows.
    pub(crate) fn hung(&mut self, generation: u64, report: HangReport) {
        let slot = self.slot();
        let Some(proc) = self.proc_mut(generation) else { return };
        let pid = proc.pid();
        let report = Arc::new(report);
        let spans = &proc.spans;
        for span in [&spans.fork, &spans.restart, &spans.drain, &spans.replace].into_iter().flatten() {
            span.record("corral.hang", tracing::field::display(&report));
        }
        tracing::warn!(slot, pid, took = ?report.took, "worker hung; what it was doing:\n{report}");
        proc.hang = Some(report.clone());
        self.args.bus.emit(ClusterEvent::Hung { slot, pid, report });
    }
}

impl<M, R> SlotState<M, R> {
    /// `Watchdog`: a foreign worker said `WATCHDOG=1`; its watchdog time starts again.
    pub(crate) fn watchdog(&mut self, generation: u64) {
        if let Some(proc) = self.proc_mut(generation) {
            proc.ping = Some((0, Instant::now()));
        }
    }
}
