//! Routing by key: sticky connections (one client address → one worker, by rendezvous hashing
//! over the slots) and keyed messages, across real processes, kills and restarts.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use corral::ClusterEvent;
use corral::config::Scheduling;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Twelve client addresses, all local: 127.0.0.2 … 127.0.0.13.
fn client_ips() -> Vec<IpAddr> {
    (2..14).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect()
}

/// One `GET /` from `source` on a fresh connection: the (slot, pid) that answered.
async fn get_from(addr: SocketAddr, source: IpAddr) -> std::io::Result<(usize, u32)> {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let mut stream = socket.connect(addr).await?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        Ok::<_, std::io::Error>(answered_by(&body))
    };
    tokio::time::timeout(TIMEOUT, exchange).await.unwrap_or_else(|_| Err(std::io::Error::other("GET timed out")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_clients_keep_their_worker_and_a_kill_moves_only_the_victims_clients() {
    clients_keep_their_worker_and_a_kill_moves_only_the_victims_clients(http_config(3, Scheduling::Sticky)).await;
}

/// The same with the kernel handing connections out: a reuse-port group steered by the
/// client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_steered_by_client_keeps_clients_and_a_kill_moves_only_the_victims_clients() {
    let config = http_config(3, Scheduling::ReusePort).steer_by_client(true);
    clients_keep_their_worker_and_a_kill_moves_only_the_victims_clients(config).await;
}

async fn clients_keep_their_worker_and_a_kill_moves_only_the_victims_clients(config: corral::ClusterConfig) {
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(3).await;
    let mut owner: HashMap<IpAddr, (usize, u32)> = HashMap::new();
    for ip in client_ips() {
        let mut seen = HashSet::new();
        for _ in 0..6 {
            seen.insert(get_from(addr, ip).await.expect("GET"));
        }
        assert_eq!(seen.len(), 1, "client {ip} reached {seen:?}");
        owner.insert(ip, seen.into_iter().next().unwrap_or_default());
    }
    let slots: HashSet<usize> = owner.values().map(|(slot, _)| *slot).collect();
    assert!(slots.len() >= 2, "12 client addresses all went to slots {slots:?}");

    // Kill the worker with the most clients; the others' clients must not move, while it is
    // down nor after it is back.
    let (victim_slot, victim_pid) =
        *owner.values().max_by_key(|w| owner.values().filter(|o| *o == *w).count()).expect("some owner");
    kill(victim_pid, Signal::SIGKILL);
    events.wait_for("the victim exits", |e| matches!(e, ClusterEvent::Exit { pid, .. } if *pid == victim_pid)).await;
    for (ip, &(slot, pid)) in &owner {
        if slot != victim_slot {
            assert_eq!(get_from(addr, *ip).await.expect("GET"), (slot, pid), "client {ip} moved after the kill");
        }
    }
    events
        .wait_for(
            "the victim's slot is back",
            |e| matches!(e, ClusterEvent::Ready { slot, .. } if *slot == victim_slot),
        )
        .await;
    // Back: every client is on its own slot again (the victim's on the new process).
    for (ip, &(slot, pid)) in &owner {
        let (now_slot, now_pid) = get_from(addr, *ip).await.expect("GET");
        assert_eq!(now_slot, slot, "client {ip} changed slot");
        if slot != victim_slot {
            assert_eq!(now_pid, pid, "client {ip} changed worker");
        } else {
            assert_ne!(now_pid, victim_pid, "client {ip} reached the killed worker");
        }
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reaches_the_same_worker_and_a_restart_moves_no_other_slots_keys() {
    let (cluster, mut events) = spawn(config(3)).await;
    events.all_ready(3).await;
    // One key, 1,000 sends: one slot, and every message handled there.
    let slot = cluster.send_keyed("session-7", TestCmd::Ping(0)).await.expect("send");
    for n in 1..1000 {
        assert_eq!(cluster.send_keyed("session-7", TestCmd::Ping(n)).await.expect("send"), slot);
    }
    let mut pongs = 0;
    while pongs < 1000 {
        if let ClusterEvent::Message { message: TestReport::Pong { slot: handled_by, .. }, .. } = events
            .wait_for("pongs", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { .. }, .. }))
            .await
        {
            assert_eq!(handled_by, slot);
            pongs += 1;
        }
    }

    // Keys spread over every slot; a restart of one slot moves none of the others' keys.
    let owners: Vec<usize> = (0..300u64).map(|k| cluster.owner_of(&k).expect("an owner")).collect();
    assert_eq!(owners.iter().collect::<HashSet<_>>().len(), 3, "300 keys over 3 slots");
    let restarted = (slot + 1) % 3;
    cluster.send_to(restarted, TestCmd::Exit(1)).await.expect("send");
    events.wait_for("exit", |e| matches!(e, ClusterEvent::Exit { slot, .. } if *slot == restarted)).await;
    for (k, &was) in owners.iter().enumerate() {
        let now = cluster.owner_of(&(k as u64)).expect("an owner");
        if was != restarted {
            assert_eq!(now, was, "key {k} of slot {was} moved while slot {restarted} restarted");
        }
    }
    events
        .wait_for("restarted", |e| matches!(e, ClusterEvent::Ready { slot, generation: 2, .. } if *slot == restarted))
        .await;
    let after: Vec<usize> = (0..300u64).map(|k| cluster.owner_of(&k).expect("an owner")).collect();
    assert_eq!(after, owners, "after the restart every key is back with its slot");
    // And a keyed message to one of the restarted slot's keys reaches its new process.
    let key = owners.iter().position(|&o| o == restarted).expect("the restarted slot owns keys") as u64;
    assert_eq!(cluster.send_keyed(&key, TestCmd::Ping(5000)).await.expect("send"), restarted);
    let pong = events
        .wait_for("pong", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { n: 5000, .. }, .. }))
        .await;
    assert!(matches!(pong, ClusterEvent::Message { slot, .. } if slot == restarted));
    cluster.stop().await.expect("clean stop");
}

/// `n` fresh connections from `source`: the slots that answered.
async fn slots_reached(addr: SocketAddr, source: IpAddr, n: usize) -> HashSet<usize> {
    let mut slots = HashSet::new();
    for _ in 0..n {
        slots.insert(get_from(addr, source).await.expect("GET").0);
    }
    slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_re_reads_the_config_changes_the_sticky_key_for_new_connections() {
    let dir = scratch_dir("sticky-reload");
    let file = dir.join("corral.toml");
    let write = |key: &str| std::fs::write(&file, format!("sticky_key = {key:?}\n")).expect("write config");
    write("ip");
    let (cluster, mut events) = spawn(reloaded_from_file(http_config(3, Scheduling::Sticky), file.clone())).await;
    let addr = events.http_ready(3).await;
    let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // By address: every connection of the client on one slot.
    let by_ip = slots_reached(addr, client, 20).await;
    assert_eq!(by_ip.len(), 1, "one client address, one slot: {by_ip:?}");

    // By address and the whole source port: each connection is its own key, so one client's
    // connections spread (30 all on one of 3 slots: a chance of 3 in 3^30).
    write("ip+port/16");
    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    let by_port = slots_reached(addr, client, 30).await;
    assert!(by_port.len() >= 2, "the new key places each connection apart: {by_port:?}");

    // And back: the client's slot is its slot again.
    write("ip");
    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(slots_reached(addr, client, 20).await, by_ip, "back to one slot, the same");

    // A key the config refuses refuses the reload, and the key in force stays.
    write("ip+port/40");
    let report = cluster.reload().await.expect("reload");
    assert!(report.replaced.is_empty() && report.error.is_some(), "{report:?}");
    assert_eq!(slots_reached(addr, client, 20).await, by_ip, "the refused key is not in force");
    cluster.stop().await.expect("clean stop");
}
