//! What a tree tells its subscribers: every event of every program's cluster, tagged with
//! the program's name, and the tree's own (a program started, ready, completed, died, the
//! strategy's restarts, everything up, the tree giving up). Each subscriber has its own
//! unbounded queue, so that no lifecycle event is dropped: read it.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::api::events::ClusterEvent;

/// An event of a tree.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TreeEvent<R> {
    /// An event of one program's cluster.
    Program {
        /// The program.
        program: Arc<str>,
        /// What its cluster said.
        event: ClusterEvent<R>,
    },
    /// A program's cluster was started (its processes forked).
    Started {
        /// The program.
        program: Arc<str>,
    },
    /// Every worker of a program has been ready.
    Ready {
        /// The program.
        program: Arc<str>,
    },
    /// A oneshot exited 0.
    Completed {
        /// The program.
        program: Arc<str>,
    },
    /// A program died as a whole (its cluster gave up, its singleton process ended, a
    /// oneshot failed past its restarts).
    Died {
        /// The program.
        program: Arc<str>,
        /// How.
        cause: Arc<str>,
    },
    /// The strategy restarts these programs (the dead one first among them).
    Restarting {
        /// The program that died.
        program: Arc<str>,
        /// Every program restarted, in start order.
        programs: Vec<String>,
    },
    /// A program's cluster has stopped.
    Stopped {
        /// The program.
        program: Arc<str>,
    },
    /// Every program is up for the first time: services ready, oneshots completed.
    Up,
    /// The tree gave up (one program death too many) and stops.
    GaveUp {
        /// The program whose death was one too many.
        program: Arc<str>,
    },
}

/// A stream of a tree's events.
#[derive(Debug)]
pub struct TreeEvents<R>(mpsc::UnboundedReceiver<TreeEvent<R>>);

impl<R> TreeEvents<R> {
    /// The next event; `None` once the tree has stopped.
    pub async fn recv(&mut self) -> Option<TreeEvent<R>> {
        self.0.recv().await
    }
}

/// The subscribers of one tree.
#[derive(Debug)]
pub(crate) struct Subscribers<R>(Arc<Mutex<Vec<mpsc::UnboundedSender<TreeEvent<R>>>>>);

impl<R> Clone for Subscribers<R> {
    fn clone(&self) -> Self {
        Subscribers(self.0.clone())
    }
}

impl<R: Clone> Subscribers<R> {
    pub(crate) fn new() -> Self {
        Subscribers(Arc::new(Mutex::new(Vec::new())))
    }

    pub(crate) fn subscribe(&self) -> TreeEvents<R> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(tx);
        TreeEvents(rx)
    }

    /// To every subscriber still there.
    pub(crate) fn emit(&self, event: TreeEvent<R>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// Ends every stream.
    pub(crate) fn close(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
