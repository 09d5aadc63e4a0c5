//! Starting a slot's processes: the current one (first start, restarts) and candidates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::life::{Life, Restart};
use super::msg::SlotMsg;
use super::state::probes::ProbeBook;
use super::state::{Phase, Proc, ProcSpans, Role, SlotState};
use crate::api::events::{ClusterEvent, lifecycle};
use crate::process;
use crate::process::{Activation, StartSpec};
use crate::supervision::decision::{Exit, Launch, ProtocolFault};
use crate::supervision::exit::ExitStatus;
use crate::supervision::kill::KillReason;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `Start`: starts the slot's current process (first start, or a restart after its delay).
    pub(crate) async fn start_current(&mut self) {
        let restart = match self.life() {
            _ if self.current().is_some() => return,
            Life::Starting => None,
            // A restart's span stays open until its process is online.
            Life::Restarting(_) => match self.transition(Life::Starting) {
                Ok(Life::Restarting(Restart { span, .. })) => Some(span),
                _ => None,
            },
            // A restart scheduled before a stop, or a duplicate start: nothing to do.
            _ => return,
        };
        let slot = self.slot();
        let parent = restart.clone().unwrap_or_else(Span::none);
        let program = self.args.command.start_program();
        match self.launch(Role::Current, program, &parent).await {
            Ok(generation) => {
                if let Some(proc) = self.proc_mut(generation) {
                    proc.spans.restart = restart;
                }
                let _ = self.transition(Life::Running);
            }
            Err(e) => {
                if let Some(restart) = &restart {
                    lifecycle::fail(restart, format_args!("cannot start worker process: {e}"));
                }
                let launch = Launch::of_error(&e);
                let transient = launch == Launch::Starved;
                if transient {
                    parent.in_scope(
                        || tracing::warn!(slot, error = %e, "cannot start worker process: out of a resource; retrying"),
                    );
                } else {
                    parent.in_scope(|| tracing::error!(slot, error = %e, "cannot start worker process"));
                }
                self.args.bus.emit(ClusterEvent::StartFailed { slot, error: Arc::new(e), transient });
                // A broken executable counts as an early death, so that it hits the intensity
                // limit instead of looping; a shortage is retried (see `Launch`).
                let exit = Exit {
                    requested: false,
                    status: ExitStatus { code: None, signal: None },
                    uptime: Duration::ZERO,
                    was_ready: false,
                    protocol: ProtocolFault::None,
                    launch,
                    condemned: false,
                };
                self.after_exit(exit);
            }
        }
    }

    /// Starts a process in `role` under a `fork` span (child of `parent`); returns its
    /// generation. The process is in the slot's books (and the current one's route set)
    /// before any of its events can arrive.
    pub(crate) async fn launch(&mut self, role: Role, program: PathBuf, parent: &Span) -> std::io::Result<u64> {
        self.generation += 1;
        let (slot, generation) = (self.slot(), self.generation);
        let fork = lifecycle::fork(parent, slot, generation, role.as_str());
        let config = self.args.config.clone();
        // A replacement beside a running process gets reuse-port sockets of its own.
        let beside = role == Role::Candidate && self.procs.iter().any(|p| p.role == Role::Current);
        let activation = match config.exec.foreign() {
            Some(_) => match self.args.listeners.activation(slot, generation, beside) {
                Ok((listeners, names)) => Some(Activation { listeners, names, workers: self.args.routes.len() }),
                Err(e) => {
                    lifecycle::fail(&fork, &e);
                    return Err(e);
                }
            },
            None => None,
        };
        let spec = StartSpec {
            slot,
            generation,
            program,
            argv0: self.args.command.argv0(slot, generation),
            args: self.args.command.args.clone(),
            config: &config,
            activation,
        };
        let (process, io) = match process::start::<M>(spec).await {
            Ok(started) => started,
            Err(e) => {
                lifecycle::fail(&fork, &e);
                return Err(e);
            }
        };
        let pid = process.pid;
        fork.record("process.pid", pid);
        if role == Role::Current {
            self.args.routes.set(slot, process.route(generation));
        }
        let request_limit = request_limit(&config);
        self.procs.push(Proc {
            role,
            phase: Phase::Starting,
            generation,
            started: Instant::now(),
            ready_at: None,
            process,
            accepting: Arc::new(AtomicBool::new(false)),
            killed: None,
            ping: None,
            over_memory: 0,
            request_limit,
            status_text: None,
            hang: None,
            spans: ProcSpans { fork: Some(fork.clone()), ..ProcSpans::default() },
            recycle_turn: None,
            dying: false,
            probes: ProbeBook::default(),
        });
        fork.in_scope(|| tracing::info!(slot, generation, pid, ?role, "worker started"));
        self.args.bus.emit(ClusterEvent::Fork { slot, generation, pid });
        io.run(self.myself.get_derived(), &self.args.bus, &self.counters, &self.args.routes);
        let timeout = config.listen_timeout;
        self.myself.send_after(timeout, move || SlotMsg::StartTimeout { generation });
        Ok(generation)
    }

    /// `StartTimeout`: a process that is not ready within `listen_timeout` is killed.
    pub(crate) fn start_timed_out(&mut self, generation: u64) {
        let (slot, timeout) = (self.slot(), self.args.config.listen_timeout);
        if let Some(proc) = self.proc_mut(generation)
            && matches!(proc.phase, Phase::Starting | Phase::Online)
        {
            if proc.phase == Phase::Starting && proc.process.speaks_corral() {
                // No hello yet: the frame reader enforces the same limit from the fork on and
                // reports the missing hello itself (a protocol fault, which decides the
                // restart); killing here first would turn it into a mere EOF.
                return;
            }
            tracing::error!(slot, pid = proc.pid(), ?timeout, "worker did not become ready in time; killing it");
            proc.kill(KillReason::NotReady { timeout });
        }
    }

    /// `Online`: the process said hello. Its start is over: `fork` ends, and so does the
    /// `restart` behind it.
    pub(crate) fn online(&mut self, generation: u64) {
        if let Some(proc) = self.proc_mut(generation)
            && proc.phase == Phase::Starting
        {
            proc.phase = Phase::Online;
            proc.spans.fork = None;
            proc.spans.restart = None;
        }
    }

    /// `Ready`: the process is ready. A current process starts getting connections; a
    /// candidate takes over.
    pub(crate) fn ready(&mut self, generation: u64) {
        let running = self.is_live();
        // The old process died while this one started: it took over already.
        let took_over = self.life().replacing().is_some_and(|p| p.generation == generation);
        let slot = self.slot();
        let (standby, spares) = (self.standby(), self.args.spares.clone());
        match self.proc(generation) {
            Some(proc) if !proc.is_draining() => {}
            _ => return,
        }
        // Ready by its own word; by the cluster's only once its ready check passes.
        if self.awaits_ready_check(generation) {
            return;
        }
        let Some(proc) = self.proc_mut(generation) else { return };
        proc.phase = Phase::Ready;
        proc.ready_at = Some(Instant::now());
        let pid = proc.pid();
        match proc.role {
            Role::Candidate if running => self.promote(generation),
            Role::Current if running => {
                // A spare waits, ready and idle, until it takes a leaving worker's place.
                proc.set_accepting(!standby);
                spares.set_ready(slot, Some(proc.accepting.clone()));
                self.args.listeners.readiness_changed();
                self.publish_accepting();
                if took_over {
                    // The replacement of this slot is done.
                    self.promote(generation);
                }
            }
            Role::Candidate | Role::Current | Role::Retiring => {}
        }
        self.start_liveness(generation);
        // Announced once the slot has acted on it: whoever reacts to the event finds the
        // worker taking connections (a request sent on `Ready` reaches it).
        self.args.bus.emit(ClusterEvent::Ready { slot, generation, pid });
    }
}

impl<M, R> SlotState<M, R> {
    /// `Status`: a foreign worker's `STATUS=` line.
    pub(crate) fn status_line(&mut self, generation: u64, text: String) {
        if let Some(proc) = self.proc_mut(generation) {
            proc.status_text = Some(text);
        }
    }
}

/// Handled requests after which a new process is recycled: `max_requests` plus its jitter.
pub(crate) fn request_limit(config: &crate::config::cluster::ClusterConfig) -> Option<u64> {
    config.max_requests.map(|limit| {
        let jitter = match config.max_requests_jitter {
            0 => 0,
            jitter => rand::rng().random_range(0..=jitter),
        };
        limit + jitter
    })
}
