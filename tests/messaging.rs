//! Typed messages across real processes: primary → one worker, broadcast, worker → primary,
//! worker → worker (and who sent what), ordering and backpressure.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use corral::worker::Origin;
use corral::{ClusterError, ClusterEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_round_trips_to_each_worker() {
    let (cluster, mut events) = spawn(config(3)).await;
    let pids = events.all_ready(3).await;
    // Worker → primary: each worker's start reported a typed Hello.
    for (slot, &pid_of_slot) in pids.iter().enumerate() {
        let hello = events
            .seen_or_wait(
                "hello",
                |e| matches!(e, ClusterEvent::Message { slot: s, message: TestReport::Hello { .. }, .. } if *s == slot),
            )
            .await;
        let ClusterEvent::Message { message: TestReport::Hello { slot: s, generation, pid }, .. } = hello else {
            unreachable!()
        };
        assert_eq!((s, generation, pid), (slot, 1, pid_of_slot));
    }
    // Primary → worker → primary.
    for (slot, &pid_of_slot) in pids.iter().enumerate() {
        cluster.send_to(slot, TestCmd::Ping(100 + slot as u64)).await.expect("send");
        let pong = events
            .wait_for("pong", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { .. }, .. }))
            .await;
        let ClusterEvent::Message { slot: from, message: TestReport::Pong { n, slot: s, pid }, .. } = pong else {
            unreachable!()
        };
        assert_eq!((from, n, s, pid), (slot, 100 + slot as u64, slot, pid_of_slot));
    }
    let status = cluster.status().await.expect("status");
    for w in &status {
        assert_eq!(w.messages_out, 1, "one message sent to slot {}", w.slot);
        assert_eq!(w.messages_in, 2, "hello + pong from slot {}", w.slot);
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_worker() {
    let (cluster, mut events) = spawn(config(4)).await;
    let pids = events.all_ready(4).await;
    assert_eq!(cluster.broadcast(TestCmd::Ping(9)).await, 4);
    let mut from = HashSet::new();
    while from.len() < 4 {
        if let ClusterEvent::Message { slot, message: TestReport::Pong { n: 9, pid, .. }, .. } = events
            .wait_for("broadcast pongs", |e| {
                matches!(e, ClusterEvent::Message { message: TestReport::Pong { n: 9, .. }, .. })
            })
            .await
        {
            assert_eq!(pid, pids[slot]);
            from.insert(slot);
        }
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_their_order_both_ways() {
    let (cluster, mut events) = spawn(config(1)).await;
    events.all_ready(1).await;
    // Sending and reading in separate tasks: with backpressure both ways, one task that sent
    // 2000 messages before reading any answer would wait on itself.
    let sender = cluster.clone();
    let sending = tokio::spawn(async move {
        for n in 0..2000 {
            sender.send_to(0, TestCmd::Ping(n)).await.expect("send");
        }
    });
    let mut next = 0;
    while next < 2000 {
        if let ClusterEvent::Message { message: TestReport::Pong { n, .. }, .. } = events
            .wait_for("pongs in order", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { .. }, .. }))
            .await
        {
            assert_eq!(n, next);
            next += 1;
        }
    }
    sending.await.expect("sender");
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_holds_back_a_flood_without_losing_any() {
    // event_buffer 16: the worker can only run 16 messages ahead of this reader.
    let (cluster, mut events) = spawn(config(1).event_buffer(16)).await;
    events.all_ready(1).await;
    cluster.send_to(0, TestCmd::Flood(5000)).await.expect("send");
    let mut next = 0;
    while next < 5000 {
        if let ClusterEvent::Message { message: TestReport::Flood(i), .. } =
            events.wait_for("flood", |e| matches!(e, ClusterEvent::Message { message: TestReport::Flood(_), .. })).await
        {
            assert_eq!(i, next, "no message lost or reordered");
            next += 1;
            if next % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_a_bad_slot_is_a_typed_error() {
    let (cluster, mut events) = spawn(config(1)).await;
    events.all_ready(1).await;
    assert!(matches!(
        cluster.send_to(5, TestCmd::Ping(0)).await,
        Err(ClusterError::NoSuchSlot { slot: 5, workers: 1 })
    ));
    cluster.stop().await.expect("clean stop");
    assert!(matches!(cluster.send_to(0, TestCmd::Ping(0)).await, Err(ClusterError::NotConnected { slot: 0 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sends_to_another_and_to_every_other_through_the_primary() {
    let (cluster, mut events) = spawn(config(3)).await;
    let pids = events.all_ready(3).await;
    cluster.send_to(0, TestCmd::Relay { to: Some(2), first: 77, count: 1 }).await.expect("send");
    let pong = events
        .wait_for("relayed pong", |e| {
            matches!(e, ClusterEvent::Message { message: TestReport::Pong { n: 77, .. }, .. })
        })
        .await;
    let ClusterEvent::Message { message: TestReport::Pong { slot, pid, .. }, .. } = pong else { unreachable!() };
    assert_eq!((slot, pid), (2, pids[2]));

    cluster.send_to(0, TestCmd::Relay { to: None, first: 88, count: 1 }).await.expect("send");
    let mut from = HashSet::new();
    while from.len() < 2 {
        if let ClusterEvent::Message { message: TestReport::Pong { n: 88, slot, .. }, .. } = events
            .wait_for("broadcast pongs", |e| {
                matches!(e, ClusterEvent::Message { message: TestReport::Pong { n: 88, .. }, .. })
            })
            .await
        {
            assert!(from.insert(slot), "slot {slot} got the broadcast twice");
        }
    }
    assert_eq!(from, HashSet::from([1, 2]), "every other worker, not the sender");
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_between_workers_arrives_whole_and_in_order() {
    // Far more than every queue on the way holds (1,024 frames each): the sender must wait.
    const N: u64 = 20_000;
    let (cluster, mut events) = spawn(config(2)).await;
    events.all_ready(2).await;
    cluster.send_to(0, TestCmd::Relay { to: Some(1), first: 0, count: N }).await.expect("send");
    let mut next = 0;
    while next < N {
        if let ClusterEvent::Message { slot, message: TestReport::Pong { n, .. }, .. } = events
            .wait_for("relayed pongs", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { .. }, .. }))
            .await
        {
            assert_eq!((slot, n), (1, next), "relayed messages in order, none lost");
            next += 1;
        }
        events.seen.clear();
    }
    cluster.stop().await.expect("clean stop");
}

/// The `Sender` answer to `WhoSent(n)` from `slot` (already seen, or waited for): the origin
/// that worker saw. Answers may come in any order across senders.
async fn origin_seen(events: &mut Events, n: u64, slot: usize) -> Option<Origin> {
    let answer = events
        .seen_or_wait("who sent it", |e| {
            matches!(e, ClusterEvent::Message { message: TestReport::Sender { n: m, slot: s, .. }, .. } if *m == n && *s == slot)
        })
        .await;
    let ClusterEvent::Message { slot: from, message: TestReport::Sender { origin, .. }, .. } = answer else {
        unreachable!()
    };
    assert_eq!(from, slot, "answered by the worker asked");
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_knows_whether_the_primary_or_which_worker_sent_its_message() {
    let (cluster, mut events) = spawn(config(3)).await;
    events.all_ready(3).await;
    // From the primary.
    cluster.send_to(1, TestCmd::WhoSent(1)).await.expect("send");
    assert_eq!(origin_seen(&mut events, 1, 1).await, Some(Origin::Primary));
    // From worker 0 to worker 2, through the primary.
    let forward = |to, n| TestCmd::Forward { to, cmd: Box::new(TestCmd::WhoSent(n)) };
    cluster.send_to(0, forward(Some(2), 2)).await.expect("send");
    assert_eq!(origin_seen(&mut events, 2, 2).await, Some(Origin::Worker { slot: 0 }));
    // Broadcast by worker 2: each other worker sees slot 2 as the sender.
    cluster.send_to(2, forward(None, 3)).await.expect("send");
    for slot in [0, 1] {
        assert_eq!(origin_seen(&mut events, 3, slot).await, Some(Origin::Worker { slot: 2 }));
    }
    // Interleaved: each message carries its own origin, not the last one's.
    for n in 10..40u64 {
        let (via, cmd) = if n % 2 == 0 { (0, forward(Some(1), n)) } else { (1, TestCmd::WhoSent(n)) };
        cluster.send_to(via, cmd).await.expect("send");
    }
    for n in 10..40u64 {
        let want = if n % 2 == 0 { Origin::Worker { slot: 0 } } else { Origin::Primary };
        assert_eq!(origin_seen(&mut events, n, 1).await, Some(want), "message {n}");
    }
    cluster.stop().await.expect("clean stop");
}

/// How many ticks each of two workers sends the other from one `handle` call: far more than
/// the queues between them hold (1,024 frames in each of the worker's outbox, the primary's
/// queue to the receiver and the receiver's inbox, plus two socket buffers).
const MUTUAL: u64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handlers_flooding_each_other_with_send_to_worker_deadlock_until_the_heartbeat_kills_one() {
    // The hazard `send_to_worker` documents: each handler waits for room in the other's
    // inbox, which only the other's handler, itself waiting, would make. No silent hang: a
    // stalled worker answers no heartbeat, so the primary kills and replaces it, and with it
    // go the messages to it that held the other back.
    let config = config(2).heartbeat_interval(Duration::from_millis(100)).heartbeat_timeout(Duration::from_secs(1));
    let (cluster, mut events) = spawn(config).await;
    let first = events.all_ready(2).await;
    cluster.send_to(0, TestCmd::FloodPeer { to: 1, count: MUTUAL }).await.expect("send");
    cluster.send_to(1, TestCmd::FloodPeer { to: 0, count: MUTUAL }).await.expect("send");
    // Both handlers are running before either sends: each waits in its `handle` for the go,
    // draining nothing, so neither can finish early while the other still drains its inbox.
    let mut ready = Vec::new();
    while ready.len() < 2 {
        if let ClusterEvent::Message { message: TestReport::FloodReady { go, .. }, .. } = events
            .wait_for("both floods ready", |e| {
                matches!(e, ClusterEvent::Message { message: TestReport::FloodReady { .. }, .. })
            })
            .await
        {
            ready.push(go);
        }
    }
    for go in ready {
        go.send(0).await.expect("go");
    }
    let ends = |e: &ClusterEvent<TestReport>| {
        matches!(e, ClusterEvent::Hung { .. } | ClusterEvent::Message { message: TestReport::FloodSent { .. }, .. })
    };
    // While both live, neither flood gets through: the first to end is found hung.
    let victim = match events.wait_for("a worker found hung", ends).await {
        ClusterEvent::Hung { slot, pid, .. } => {
            assert_eq!(pid, first[slot], "slot {slot}'s flooding worker");
            slot
        }
        other => panic!("a flood got through while both workers lived, so there was no deadlock: {other:?}"),
    };
    // The other one is found hung too, or, once the victim is gone, gets through.
    let other = 1 - victim;
    let other_end = events
        .wait_for("the other worker's end", |e| {
            ends(e)
                && matches!(e, ClusterEvent::Hung { slot, .. } | ClusterEvent::Message { slot, .. } if *slot == other)
        })
        .await;
    let mut replaced = vec![victim];
    if matches!(other_end, ClusterEvent::Hung { .. }) {
        replaced.push(other);
    }
    for slot in replaced {
        events
            .seen_or_wait("replaced", |e| matches!(e, ClusterEvent::Ready { slot: s, generation: 2, .. } if *s == slot))
            .await;
    }
    // Both slots serve again.
    for slot in 0..2 {
        cluster.send_to(slot, TestCmd::Ping(7)).await.expect("send");
        events
            .wait_for("pong", |e| matches!(e, ClusterEvent::Message { slot: s, message: TestReport::Pong { n: 7, .. }, .. } if *s == slot))
            .await;
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handlers_flooding_each_other_with_try_send_to_worker_deliver_every_message_in_order() {
    // The same flood with `try_send_to_worker` (slot 0) and `try_broadcast_workers` (slot 1,
    // whose only other worker is slot 0): a handler stops at `Busy` and returns, so its inbox
    // drains; the primary asks it to go on from where it stopped.
    let (cluster, mut events) = spawn(config(2)).await;
    events.all_ready(2).await;
    let to = |slot: usize| if slot == 0 { Some(1) } else { None };
    for slot in 0..2 {
        cluster.send_to(slot, TestCmd::TryFloodPeer { to: to(slot), first: 0, end: MUTUAL }).await.expect("send");
    }
    let mut next = [0u64; 2];
    let mut rounds = 0;
    while next.iter().any(|n| *n < MUTUAL) {
        match events
            .wait_for("floods sent", |e| {
                matches!(
                    e,
                    ClusterEvent::Hung { .. } | ClusterEvent::Message { message: TestReport::TryFlooded { .. }, .. }
                )
            })
            .await
        {
            ClusterEvent::Message { message: TestReport::TryFlooded { slot, next: n }, .. } => {
                assert!(n >= next[slot], "slot {slot} went back from {} to {n}", next[slot]);
                next[slot] = n;
                rounds += 1;
                if n < MUTUAL {
                    let resume = TestCmd::TryFloodPeer { to: to(slot), first: n, end: MUTUAL };
                    cluster.send_to(slot, resume).await.expect("send");
                }
            }
            other => panic!("a worker stalled: {other:?}"),
        }
        events.seen.clear();
    }
    eprintln!("{MUTUAL} ticks each way in {rounds} rounds");
    assert!(rounds > 2, "the queues filled, so some handler met Busy and returned ({rounds} rounds)");
    // Everything sent was handled, in order, from the other worker.
    for slot in 0..2 {
        cluster.send_to(slot, TestCmd::Tally).await.expect("send");
        let tally = events
            .wait_for(
                "tally",
                |e| matches!(e, ClusterEvent::Message { message: TestReport::Tally { slot: s, .. }, .. } if *s == slot),
            )
            .await;
        let ClusterEvent::Message { message: TestReport::Tally { ticks, out_of_order, .. }, .. } = tally else {
            unreachable!()
        };
        assert_eq!(ticks, vec![(1 - slot, MUTUAL)], "slot {slot} handled every tick of the other");
        assert_eq!(out_of_order, 0, "slot {slot}: ticks in order");
    }
    cluster.stop().await.expect("clean stop");
}
