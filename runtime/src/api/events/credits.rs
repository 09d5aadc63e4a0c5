//! [`Credits`]: how many user messages may wait unread in one subscriber's queue, as a
//! counter that costs one atomic operation per batch of messages for the sender and one per
//! message for the reader (a semaphore's permit costs an `Arc` clone, and giving it back takes
//! a lock, every time).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A bounded count of messages in flight to one subscriber: senders take one per message
/// ([`try_take`](Credits::try_take), or [`take`](Credits::take) several at once, waiting while
/// too few are free), the subscriber [`give_back`](Credits::give_back)s one per message it
/// reads.
pub(crate) struct Credits {
    /// Messages sent and not read yet.
    out: AtomicUsize,
    limit: usize,
    /// Waiting senders are woken once this many credits are free again (the most one of them
    /// asks for), not at every credit given back: one wake-up per batch, not per message.
    refill: usize,
    /// Senders waiting in [`take`](Credits::take): only then does a credit given back wake
    /// anyone (waking takes the lock of `returned`).
    waiting: AtomicUsize,
    /// Woken when a credit comes back while senders wait.
    returned: Notify,
}

impl Credits {
    /// `limit` credits (at least one), taken at most `batch` at a time.
    pub(crate) fn new(limit: usize, batch: usize) -> Self {
        let limit = limit.max(1);
        Credits {
            out: AtomicUsize::new(0),
            limit,
            refill: batch.clamp(1, limit),
            waiting: AtomicUsize::new(0),
            returned: Notify::new(),
        }
    }

    /// Takes `n` credits if that many are free.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        self.out
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |out| (out + n <= self.limit).then_some(out + n))
            .is_ok()
    }

    /// Takes `n` credits (at most the batch size given to [`new`](Credits::new): asking for
    /// more takes that many), waiting until that many are free.
    pub(crate) async fn take(&self, n: usize) {
        let n = n.min(self.refill);
        if self.try_take(n) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted out again however this ends (a caller may drop the wait).
        let _waiting = Waiting(&self.waiting);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before looking again: a credit given back after this wakes us, and
            // one given back before it is seen by the look.
            returned.as_mut().enable();
            if self.try_take(n) {
                return;
            }
            returned.await;
        }
    }

    /// Gives one credit back (the subscriber read a message).
    pub(crate) fn give_back(&self) {
        let out = self.out.fetch_sub(1, Ordering::SeqCst) - 1;
        if self.limit - out >= self.refill && self.waiting.load(Ordering::SeqCst) > 0 {
            // Room for any waiter's batch: each looks again (one that loses the race to
            // another waits again, and the next credit given back wakes it).
            self.returned.notify_waiters();
        }
    }
}

/// One sender counted in [`Credits::waiting`] while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Credits;

    #[tokio::test]
    async fn a_dropped_wait_is_no_longer_counted() {
        let credits = Credits::new(1, 1);
        credits.take(1).await;
        let wait = tokio::time::timeout(Duration::from_millis(1), credits.take(1)).await;
        assert!(wait.is_err());
        assert_eq!(credits.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn no_more_than_the_limit_are_out() {
        let credits = Credits::new(3, 2);
        assert!(credits.try_take(2));
        assert!(!credits.try_take(2));
        assert!(credits.try_take(1));
        assert!(!credits.try_take(1));
        credits.give_back();
        assert!(credits.try_take(1));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_the_credit_given_back() {
        let credits = Arc::new(Credits::new(2, 2));
        credits.take(2).await;
        let waiting = tokio::spawn({
            let credits = credits.clone();
            async move { credits.take(2).await }
        });
        tokio::task::yield_now().await;
        credits.give_back();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one free credit is not two");
        credits.give_back();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").expect("no panic");
        assert!(!credits.try_take(1), "the waiter holds both credits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_and_one_reader_lose_no_wake_up() {
        let credits = Arc::new(Credits::new(3, 2));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (credits, tx) = (credits.clone(), tx.clone());
                tokio::spawn(async move {
                    for i in 0..10_000u32 {
                        // Two at a time, then one: waits for more than one credit too.
                        let n = 1 + (i % 2) as usize;
                        credits.take(n).await;
                        for _ in 0..n {
                            tx.send(i).expect("reader alive");
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut read = 0;
        let reader = async {
            while rx.recv().await.is_some() {
                credits.give_back();
                read += 1;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reader).await.expect("no lost wake-up");
        for sender in senders {
            sender.await.expect("no panic");
        }
        assert_eq!(read, 60_000);
    }
}
