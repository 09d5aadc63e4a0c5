//! The cluster's recycling turns ([`RecycleTurns`], `recycle_concurrency` of them), shared by
//! its slots, and one slot's [`RecycleTurn`]. A rolling reload whose configuration says
//! another `recycle_concurrency` changes how many there are, from then on.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The recycling turns of one cluster: at most `at_once` slots recycle at a time.
pub(crate) struct RecycleTurns {
    /// One permit per turn free or held; fewer than that while `owed` turns wait to retire.
    permits: Arc<Semaphore>,
    limit: Mutex<Limit>,
}

/// How many turns there should be, and how many held turns retire when they are given back
/// (the limit was lowered while they were held). Whenever `owed > 0`, no permit is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    at_once: usize,
    owed: usize,
}

impl RecycleTurns {
    pub(crate) fn new(at_once: usize) -> Arc<Self> {
        let at_once = at_once.max(1);
        Arc::new(RecycleTurns {
            permits: Arc::new(Semaphore::new(at_once)),
            limit: Mutex::new(Limit { at_once, owed: 0 }),
        })
    }

    fn limit(&self) -> MutexGuard<'_, Limit> {
        // Every update leaves both counts consistent, so a poisoned lock is still usable.
        self.limit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn, if one is free. Free turns exist only while no slot waits for one (tokio hands
    /// a released permit to the first waiter), so this never jumps the queue.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<RecycleTurn> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(RecycleTurn { permit: Some(permit), turns: self.clone() })
    }

    /// Waits for a turn, first come, first served.
    pub(crate) async fn take(self: Arc<Self>) -> Option<RecycleTurn> {
        // The semaphore is never closed; `None` would only say it was.
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        Some(RecycleTurn { permit: Some(permit), turns: self })
    }

    /// How many slots may recycle at once.
    pub(crate) fn at_once(&self) -> usize {
        self.limit().at_once
    }

    /// Lets `at_once` slots recycle at a time from now on. More turns go at once to the slots
    /// waiting; fewer retire free turns now and held ones as they are given back (a recycle
    /// under way is not cut short), so no new recycle starts until the new limit holds.
    pub(crate) fn resize(&self, at_once: usize) {
        let at_once = at_once.max(1);
        let mut limit = self.limit();
        if at_once > limit.at_once {
            let more = at_once - limit.at_once;
            let repaid = more.min(limit.owed);
            limit.owed -= repaid;
            self.permits.add_permits(more - repaid);
        } else {
            let fewer = limit.at_once - at_once;
            let retired = self.permits.forget_permits(fewer);
            limit.owed += fewer - retired;
        }
        limit.at_once = at_once;
    }
}

/// One slot's turn to recycle: the next slot waiting may start once it is dropped.
pub(crate) struct RecycleTurn {
    permit: Option<OwnedSemaphorePermit>,
    turns: Arc<RecycleTurns>,
}

impl std::fmt::Debug for RecycleTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecycleTurn")
    }
}

impl Drop for RecycleTurn {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        // Given back (or retired) under the lock, so that a `resize` at the same moment sees
        // the permit either held or free, never in between.
        let mut limit = self.turns.limit();
        if limit.owed > 0 {
            limit.owed -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecycleTurns;

    /// Takes every free turn.
    fn take_all(turns: &std::sync::Arc<RecycleTurns>) -> Vec<super::RecycleTurn> {
        std::iter::from_fn(|| turns.try_take()).collect()
    }

    #[test]
    fn more_turns_are_free_at_once() {
        let turns = RecycleTurns::new(1);
        let held = take_all(&turns);
        assert_eq!(held.len(), 1);
        turns.resize(3);
        assert_eq!(turns.at_once(), 3);
        assert_eq!(take_all(&turns).len(), 2, "two more beside the one held");
    }

    #[test]
    fn fewer_turns_retire_free_ones_now_and_held_ones_when_given_back() {
        let turns = RecycleTurns::new(4);
        let mut held = take_all(&turns);
        assert_eq!(held.len(), 4);
        turns.resize(1);
        // Three of the four held turns retire as they are given back; the last one stays.
        for _ in 0..3 {
            held.pop();
            assert!(turns.try_take().is_none(), "no turn while over the new limit");
        }
        held.pop();
        let again = take_all(&turns);
        assert_eq!(again.len(), 1, "one turn at a time from now on");
    }

    #[test]
    fn lowering_with_some_held_and_raising_again_keeps_the_count() {
        let turns = RecycleTurns::new(3);
        let mut held = take_all(&turns);
        held.truncate(1); // one held, two free
        turns.resize(1); // the two free retire now
        assert!(turns.try_take().is_none());
        turns.resize(2); // one more
        let more = take_all(&turns);
        assert_eq!(more.len(), 1);
        drop(more);
        drop(held);
        assert_eq!(take_all(&turns).len(), 2);

        // Lowered while all are held, raised before any comes back: the debt is forgiven first.
        let held = take_all(&turns);
        turns.resize(1); // one owed
        turns.resize(3); // repays it and adds one
        assert_eq!(take_all(&turns).len(), 1);
        drop(held);
        assert_eq!(take_all(&turns).len(), 3);
    }

    #[tokio::test]
    async fn a_waiting_slot_gets_a_turn_added_by_a_resize() {
        let turns = RecycleTurns::new(1);
        let _held = take_all(&turns);
        let waiting = tokio::spawn(turns.clone().take());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        turns.resize(2);
        let turn = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(turn, Ok(Ok(Some(_)))), "the waiting slot got its turn");
    }
}
