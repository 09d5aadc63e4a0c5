//! The ractor actor that drives a [`Worker`] behaviour inside the worker process: `WorkerActor`,
//! its messages `WorkerMsg` (a message to handle, or drain) and its state.

use std::sync::{Arc, OnceLock};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::behaviour::Worker;
use crate::context::WorkerContext;
use crate::error::{Stage, WorkerError};
use crate::origin::Origin;

/// Messages of the worker actor.
pub(crate) enum WorkerMsg<M> {
    /// A message from the primary or relayed from another worker, with who sent it, the
    /// reader's credit for it (given back once handled, which bounds the actor's otherwise
    /// unbounded mailbox) and its `receive` span, in which the behaviour handles it.
    Handle { msg: M, origin: Origin, _credit: OwnedSemaphorePermit, span: tracing::Span },
    /// Everything received before this was handled: stop (runs the behaviour's `stop`).
    Drain,
}

// With ractor's `cluster` feature ractor implements `Message` only for types that say how they
// cross nodes; this one never leaves the worker.
#[cfg(feature = "cluster")]
impl<M: Send + 'static> ractor::Message for WorkerMsg<M> {}

pub(crate) struct WorkerActor<W> {
    pub behaviour: Arc<W>,
    /// The first behaviour failure, for the process's exit code (an actor's join handle does
    /// not say how it ended).
    pub failure: Arc<OnceLock<WorkerError>>,
}

impl<W> WorkerActor<W> {
    fn fail(&self, error: WorkerError) -> ActorProcessingErr {
        let text = error.to_string();
        let _ = self.failure.set(error);
        text.into()
    }
}

pub(crate) struct ActorState<W: Worker> {
    cx: WorkerContext<W::Report>,
    state: Option<W::State>,
}

impl<W: Worker> Actor for WorkerActor<W> {
    type Msg = WorkerMsg<W::Msg>;
    type State = ActorState<W>;
    type Arguments = WorkerContext<W::Report>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        cx: WorkerContext<W::Report>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = self.behaviour.start(&cx).await.map_err(|e| self.fail(WorkerError::Start(e)))?;
        cx.ready_after_start().await.map_err(|e| self.fail(e))?;
        Ok(ActorState { cx, state: Some(state) })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Handle { msg, origin, _credit, span } => {
                if let Some(state) = st.state.as_mut() {
                    // Set for this call only: `cx.origin()` is this message's sender.
                    let cx = st.cx.handling(origin);
                    self.behaviour
                        .handle(&cx, msg, state)
                        .instrument(span)
                        .await
                        .map_err(|source| self.fail(WorkerError::Behaviour { during: Stage::Handle, source }))?;
                }
            }
            WorkerMsg::Drain => myself.stop(Some("drained".into())),
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(state) = st.state.take() {
            self.behaviour
                .stop(&st.cx, state)
                .await
                .map_err(|source| self.fail(WorkerError::Behaviour { during: Stage::Stop, source }))?;
        }
        Ok(())
    }
}
