//! The node set (`cluster` feature): three `corral run` primaries as separate processes on
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3 joined over ractor_cluster, driven as an operator does
//! with `corral status --all`, `reload --all` and `broadcast`; a cross-node rolling reload
//! under load through a small balancer in front of the three; a SIGKILLed primary reported
//! down (and back when it returns); a node with another cookie refused; a primary upgraded in
//! place (`corral upgrade`) rejoining with no other node seeing it down or a worker lost.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const IPS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// A free port on `ip` for a node server (which needs a fixed one): taken below the kernel's
/// ephemeral range, so that no `:0` bind of any test (the HTTP listeners) is handed it
/// between this check and the node server's bind.
fn free_port(ip: &str) -> u16 {
    let (low, _) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let (from, to) = (low.saturating_sub(12000).max(1024), low);
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        as usize
        ^ (std::process::id() as usize).wrapping_mul(7919);
    for _ in 0..200 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(104729));
        let port = from + (n % usize::from(to - from)) as u16;
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} in {from}..{to}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-nodes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn cookie_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("cookie");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// One primary of the set.
struct Node {
    run: CorralRun,
    control: PathBuf,
    name: String,
}

impl Node {
    /// Starts node `name` on `ip` with its node server on `port`, joining `join`.
    async fn start(dir: &Path, name: &str, ip: &str, port: u16, cookie: &Path, join: Option<SocketAddr>) -> Node {
        Self::start_from(Path::new(CORRAL), dir, name, ip, port, cookie, join).await
    }

    /// [`start`](Self::start), the primary running the `corral` at `exe`.
    async fn start_from(
        exe: &Path,
        dir: &Path,
        name: &str,
        ip: &str,
        port: u16,
        cookie: &Path,
        join: Option<SocketAddr>,
    ) -> Node {
        let control = dir.join(format!("{name}.sock"));
        let listen = format!("{ip}:0");
        let node_listen = format!("{ip}:{port}");
        let mut args = vec![
            "-w".to_string(),
            "2".into(),
            "-l".into(),
            listen,
            "--control".into(),
            control.display().to_string(),
            "--node".into(),
            name.into(),
            "--node-listen".into(),
            node_listen,
            "--cookie-file".into(),
            cookie.display().to_string(),
        ];
        if let Some(seed) = join {
            args.extend(["--join".into(), seed.to_string()]);
        }
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("run").args(&args).arg("--").args(python());
        let run = CorralRun::start_command(cmd, false, 1).await;
        Node { run, control, name: name.into() }
    }

    fn addr(&self) -> SocketAddr {
        self.run.addrs[0]
    }

    /// `corral ARGS --control <this node's socket>`: exit code, stdout, stderr.
    async fn ctl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::time::timeout(
            TIMEOUT * 6,
            tokio::process::Command::new(CORRAL).args(args).arg("--control").arg(&self.control).output(),
        )
        .await
        .expect("corral answers in time")
        .expect("run corral");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// `corral status --all --json` from this node (`Null` when it did not answer).
    async fn status_all(&self) -> Value {
        let (_, stdout, _) = self.ctl(&["status", "--all", "--json"]).await;
        serde_json::from_str(&stdout).unwrap_or(Value::Null)
    }

    /// SIGKILLs the primary, as a host dying would (its workers follow it: PDEATHSIG).
    fn kill_host(&self) {
        self.run.signal(Signal::SIGKILL);
    }
}

fn workers(status: &Value) -> Vec<Value> {
    status["workers"].as_array().cloned().unwrap_or_default()
}

/// Workers by node name.
fn by_node(status: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for w in workers(status) {
        out.entry(w["node"].as_str().unwrap_or("?").to_string()).or_default().push(w);
    }
    out
}

fn node_up(status: &Value, name: &str) -> Option<bool> {
    status["nodes"].as_array()?.iter().find(|n| n["node"] == name).and_then(|n| n["up"].as_bool())
}

/// Polls `node`'s `status --all` until `pred` holds (bounded); returns that status.
async fn until(node: &Node, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = node.status_all().await;
        if pred(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: status --all from {} is {status:#}", node.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every node of `names` up, and 2 ready workers on each.
fn full_view(status: &Value, names: &[&str]) -> bool {
    every_worker_ready(status, names.len(), 2) && names.iter().all(|n| node_up(status, n) == Some(true))
}

const ALL: [&str; 3] = ["web-0", "web-1", "web-2"];

/// Waits until every node sees every node up with its workers ready.
async fn until_full(nodes: &[Node], names: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    for node in nodes {
        out.push(until(node, "every node up with its workers ready", TIMEOUT, |s| full_view(s, names)).await);
    }
    out
}

fn every_worker_ready(status: &Value, nodes: usize, per_node: usize) -> bool {
    let by = by_node(status);
    by.len() == nodes && by.values().all(|ws| ws.len() == per_node && ws.iter().all(|w| w["state"] == "ready"))
}

/// Three nodes: web-0 on 127.0.0.1, web-1 and web-2 joining it.
async fn three(dir: &Path) -> (Vec<Node>, PathBuf) {
    let cookie = cookie_file(dir, "cookie", "s3cret-cookie");
    let ports: Vec<u16> = IPS.iter().map(|ip| free_port(ip)).collect();
    let seed: SocketAddr = format!("{}:{}", IPS[0], ports[0]).parse().expect("seed");
    let mut nodes = vec![Node::start(dir, "web-0", IPS[0], ports[0], &cookie, None).await];
    for i in 1..3 {
        nodes.push(Node::start(dir, &format!("web-{i}"), IPS[i], ports[i], &cookie, Some(seed)).await);
    }
    (nodes, cookie)
}

/// A test-side TCP balancer in front of `backends`: round robin, and the next backend when
/// one refuses the connection (as HAProxy's `redispatch`).
async fn balancer(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the balancer");
    let addr = listener.local_addr().expect("addr");
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let backends = backends.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let first = next.fetch_add(1, Ordering::Relaxed);
                for i in 0..backends.len() {
                    if let Ok(mut server) = TcpStream::connect(backends[(first + i) % backends.len()]).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_all_lists_every_worker_of_every_node_from_any_node_and_broadcast_reaches_each_node() {
    let dir = temp_dir("status");
    let (nodes, _) = three(&dir).await;
    let mut pids = HashSet::new();
    for status in until_full(&nodes, &ALL).await {
        for w in workers(&status) {
            assert!(w["slot"].is_u64() && w["pid"].is_u64() && w["state"].is_string(), "{w}");
            pids.insert((w["node"].as_str().map(String::from), w["pid"].as_u64()));
        }
    }
    assert_eq!(pids.len(), 6, "the same 6 workers seen from every node: {pids:?}");
    // The table names each worker's node.
    let (code, table, _) = nodes[1].ctl(&["status", "--all"]).await;
    assert_eq!(code, Some(0), "{table}");
    for name in ["web-0", "web-1", "web-2"] {
        assert_eq!(table.matches(name).count(), 3, "two rows and the nodes line for {name}:\n{table}");
    }
    // Every node answers the broadcast (`corral run`'s message type is `()`, JSON null; its
    // socket-activated workers take no messages, so none is reached).
    let (code, out, err) = nodes[2].ctl(&["broadcast", "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let answers: Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> =
        answers["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"], "{answers:#}");
    assert!(answers["nodes"].as_array().expect("nodes").iter().all(|n| n["workers"] == 2), "{answers:#}");
    // A message that is not the cluster's type is refused by each node, which keeps running.
    let (code, out, _) = nodes[0].ctl(&["broadcast", "--json", r#"{"not":"unit"}"#]).await;
    assert_eq!(code, Some(0));
    assert!(out.matches("not one of this cluster's").count() == 3, "{out}");
    // A node that is alone says so for plain `status`, and `--all` needs a node set.
    let (code, _, err) = nodes[0].ctl(&["status", "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    for node in nodes {
        node.run.signal(Signal::SIGTERM);
        let (code, stderr) = node.run.exit().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_cookie_is_refused_and_logged() {
    let dir = temp_dir("cookie");
    let cookie = cookie_file(&dir, "cookie", "s3cret-cookie");
    let bad = cookie_file(&dir, "bad", "wrong");
    let port = free_port(IPS[0]);
    let seed: SocketAddr = format!("{}:{port}", IPS[0]).parse().expect("seed");
    let host = Node::start(&dir, "web-0", IPS[0], port, &cookie, None).await;
    let intruder = Node::start(&dir, "intruder", "127.0.0.4", free_port("127.0.0.4"), &bad, Some(seed)).await;
    // Over a few seconds (several dials of the intruder), it never joins either side's view.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let seen = host.status_all().await;
        assert!(by_node(&seen).keys().all(|n| n == "web-0"), "{seen:#}");
        assert_eq!(node_up(&seen, "intruder"), None, "{seen:#}");
        let theirs = intruder.status_all().await;
        assert!(by_node(&theirs).keys().all(|n| n == "intruder"), "{theirs:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    intruder.run.signal(Signal::SIGTERM);
    let (_, intruder_log) = intruder.run.exit().await;
    host.run.signal(Signal::SIGTERM);
    let (code, host_log) = host.run.exit().await;
    assert_eq!(code, Some(0), "{host_log}");
    for log in [&host_log, &intruder_log] {
        assert!(log.contains("node connection refused: it did not authenticate"), "{log}");
    }
    assert!(host_log.contains("intruder@127.0.0.4"), "the host names who was refused:\n{host_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_reported_down_within_a_few_heartbeats_and_back_when_it_returns() {
    let dir = temp_dir("down");
    let (mut nodes, cookie) = three(&dir).await;
    until_full(&nodes, &ALL).await;
    let dead = nodes.pop().expect("web-2");
    dead.kill_host();
    let killed = tokio::time::Instant::now();
    // Its workers leave every status at once (its sessions close); it is reported down within
    // the heartbeat timeout (2.5 s) and a margin for a busy machine.
    for node in &nodes {
        let status = until(node, "web-2 down", Duration::from_secs(10), |s| {
            node_up(s, "web-2") == Some(false) && !by_node(s).contains_key("web-2")
        })
        .await;
        assert!(every_worker_ready(&status, 2, 2), "{status:#}");
    }
    let noticed = killed.elapsed();
    assert!(noticed < Duration::from_secs(10), "web-2 reported down after {noticed:?}");
    // The host comes back (same node name and address): up again, its workers listed.
    let node_listen = nodes[0]
        .status_all()
        .await
        .get("nodes")
        .and_then(|n| n.as_array().cloned())
        .and_then(|n| n.into_iter().find(|n| n["node"] == "web-2"))
        .and_then(|n| n["listen"].as_str().map(String::from))
        .expect("web-2's address is remembered");
    let back_port: u16 = node_listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let seed: SocketAddr = nodes[0].status_all().await["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == "web-0").and_then(|n| n["listen"].as_str()?.parse().ok()))
        .expect("web-0's address");
    let back = Node::start(&dir, "web-2", IPS[2], back_port, &cookie, Some(seed)).await;
    for node in &nodes {
        until(node, "web-2 back", TIMEOUT, |s| full_view(s, &ALL)).await;
    }
    for node in nodes.into_iter().chain([back]) {
        node.run.signal(Signal::SIGTERM);
        let (code, stderr) = node.run.exit().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let _ = dead.run.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_all_under_load_through_a_balancer_loses_nothing_and_reloads_one_node_at_a_time() {
    let dir = temp_dir("reload");
    let (nodes, _) = three(&dir).await;
    let first = until_full(&nodes, &ALL).await.remove(0);
    let old: HashSet<u64> = workers(&first).iter().filter_map(|w| w["pid"].as_u64()).collect();
    let front = balancer(nodes.iter().map(Node::addr).collect()).await;
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(front, 2, "/slow", stop.clone()));
    // Watch the set while it reloads: a node is mid-reload while its workers' generations
    // differ, or one of them is not ready, or it has not exactly two.
    let watching = CancellationToken::new();
    let watcher = {
        let watching = watching.clone();
        let control = nodes[1].control.clone();
        tokio::spawn(async move {
            let mut snapshots = 0;
            let mut overlaps = Vec::new();
            let mut reloading_seen = HashSet::new();
            while !watching.is_cancelled() {
                let out = tokio::process::Command::new(CORRAL)
                    .args(["status", "--all", "--json", "--control"])
                    .arg(&control)
                    .output()
                    .await
                    .expect("status");
                let Ok(status) = serde_json::from_slice::<Value>(&out.stdout) else { continue };
                snapshots += 1;
                let mid: Vec<String> = by_node(&status)
                    .into_iter()
                    .filter(|(_, ws)| {
                        let gens: HashSet<u64> = ws.iter().filter_map(|w| w["generation"].as_u64()).collect();
                        ws.len() != 2 || gens.len() > 1 || ws.iter().any(|w| w["state"] != "ready")
                    })
                    .map(|(n, _)| n)
                    .collect();
                reloading_seen.extend(mid.iter().cloned());
                if mid.len() > 1 {
                    overlaps.push(mid);
                }
            }
            (snapshots, overlaps, reloading_seen)
        })
    };
    let (code, out, err) = nodes[0].ctl(&["reload", "--all"]).await;
    watching.cancel();
    let (snapshots, overlaps, reloading_seen) = watcher.await.expect("watcher");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let report = load.await.expect("load");
    assert_eq!(code, Some(0), "reload --all: {out}{err}");
    for name in ["web-0", "web-1", "web-2"] {
        assert!(out.contains(&format!("node {name}: reloaded 2 workers, healthy")), "{out}");
    }
    assert!(out.contains("reloaded 3 nodes"), "{out}");
    assert!(
        overlaps.is_empty(),
        "two nodes reloading at once in {} of {snapshots} snapshots: {overlaps:?}",
        overlaps.len()
    );
    assert!(!reloading_seen.is_empty(), "no snapshot caught a node mid-reload ({snapshots} snapshots)");
    assert!(report.ok > 0);
    assert!(report.failed.is_empty(), "{} of {} requests failed: {:?}", report.failed.len(), report.ok, report.failed);
    let after = until(&nodes[2], "6 new ready workers", TIMEOUT, |s| every_worker_ready(s, 3, 2)).await;
    let new: HashSet<u64> = workers(&after).iter().filter_map(|w| w["pid"].as_u64()).collect();
    assert!(new.is_disjoint(&old), "every worker on every node replaced: old {old:?}, now {new:?}");
    for node in nodes {
        node.run.signal(Signal::SIGTERM);
        let (code, stderr) = node.run.exit().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_all_stops_at_the_first_node_that_fails_and_says_where() {
    let dir = temp_dir("reload-fail");
    let cookie = cookie_file(&dir, "cookie", "s3cret-cookie");
    let ports: Vec<u16> = IPS.iter().map(|ip| free_port(ip)).collect();
    let seed: SocketAddr = format!("{}:{}", IPS[0], ports[0]).parse().expect("seed");
    let good = Node::start(&dir, "a-good", IPS[0], ports[0], &cookie, None).await;
    // b-broken's program is a file its reload re-reads; its next workers never say ready.
    let config = dir.join("broken.toml");
    std::fs::write(&config, "listen_timeout = \"2s\"\n").expect("config");
    let control = dir.join("b-broken.sock");
    let args = [
        "-w",
        "2",
        "-l",
        &format!("{}:0", IPS[1]),
        "-c",
        &config.display().to_string(),
        "--control",
        &control.display().to_string(),
        "--node",
        "b-broken",
        "--node-listen",
        &format!("{}:{}", IPS[1], ports[1]),
        "--cookie-file",
        &cookie.display().to_string(),
        "--join",
        &seed.to_string(),
    ];
    let broken = Node { run: CorralRun::start(&args, &python(), &[], 1).await, control, name: "b-broken".into() };
    let last = Node::start(&dir, "c-last", IPS[2], ports[2], &cookie, Some(seed)).await;
    let names = ["a-good", "b-broken", "c-last"];
    let set = [good, broken, last];
    let before = until_full(&set, &names).await.remove(0);
    std::fs::write(&config, "listen_timeout = \"2s\"\n[env]\nNEVER_READY = \"1\"\n").expect("config");
    let (code, out, err) = set[2].ctl(&["reload", "--all"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("stopped at node b-broken") && err.contains("reloaded before it: a-good"), "{err}");
    // c-last was never touched; b-broken keeps its old workers serving.
    let after = until(&set[0], "every node serving", TIMEOUT, |s| every_worker_ready(s, 3, 2)).await;
    let pids = |s: &Value, node: &str| -> HashSet<u64> {
        by_node(s).get(node).into_iter().flatten().filter_map(|w| w["pid"].as_u64()).collect()
    };
    assert!(pids(&after, "a-good").is_disjoint(&pids(&before, "a-good")), "a-good was reloaded");
    assert_eq!(pids(&after, "c-last"), pids(&before, "c-last"), "c-last was not touched");
    for node in set {
        node.run.signal(Signal::SIGTERM);
        let _ = node.run.exit().await;
    }
}

/// As a deploy does: copy beside, then rename over (`cp` writes it, so that no fork of this
/// test process holds it open for writing when it is executed).
fn deploy(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    let status = std::process::Command::new("cp").arg(src).arg(&tmp).status().expect("run cp");
    assert!(status.success(), "cp {} {}", src.display(), tmp.display());
    std::fs::rename(&tmp, dst).expect("rename");
}

/// A directory removed when dropped.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `node`'s part of a `status --all` answer is whole: listed up, and each of its two
/// slots with a ready worker.
fn node_whole(status: &Value, node: &str) -> bool {
    let ready: HashSet<u64> = by_node(status)
        .get(node)
        .into_iter()
        .flatten()
        .filter(|w| w["state"] == "ready")
        .filter_map(|w| w["slot"].as_u64())
        .collect();
    node_up(status, node) == Some(true) && ready == HashSet::from([0, 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_upgraded_in_place_rejoins_and_no_other_node_sees_a_worker_lost() {
    // The heartbeat bound: a peer silent this long is reported down (corral's default).
    const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(2500);
    let dir = temp_dir("upgrade");
    // The copy of corral is large: removed whatever happens (after the nodes, dropped first).
    let _removed = RemovedOnDrop(dir.clone());
    let cookie = cookie_file(&dir, "cookie", "s3cret-cookie");
    let ports: Vec<u16> = IPS.iter().map(|ip| free_port(ip)).collect();
    let seed: SocketAddr = format!("{}:{}", IPS[0], ports[0]).parse().expect("seed");
    // web-1 runs from a copy of corral, which the "deploy" replaces.
    let exe = dir.join("corral");
    deploy(Path::new(CORRAL), &exe);
    let nodes = Arc::new(vec![
        Node::start(&dir, "web-0", IPS[0], ports[0], &cookie, None).await,
        Node::start_from(&exe, &dir, "web-1", IPS[1], ports[1], &cookie, Some(seed)).await,
        Node::start(&dir, "web-2", IPS[2], ports[2], &cookie, Some(seed)).await,
    ]);
    let before = until_full(&nodes, &ALL).await.remove(0);
    let pid = nodes[1].run.pid();
    let pids = |s: &Value, node: &str| -> HashSet<u64> {
        by_node(s).get(node).into_iter().flatten().filter_map(|w| w["pid"].as_u64()).collect()
    };

    // web-0 and web-2 ask `status --all` over and over while web-1 upgrades.
    let start = tokio::time::Instant::now();
    let stop = CancellationToken::new();
    let watchers: Vec<_> = [0, 2]
        .into_iter()
        .map(|i| {
            let (nodes, stop) = (nodes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.is_cancelled() {
                    let status = nodes[i].status_all().await;
                    seen.push((start.elapsed(), status));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect();
    deploy(Path::new(CORRAL), &exe);
    let (code, out, err) = nodes[1].ctl(&["upgrade", "--timeout", "30s"]).await;
    assert_eq!(code, Some(0), "corral upgrade: {out}{err}");
    let upgraded = start.elapsed();
    // Whole again on every node, web-1's workers a generation on.
    for i in 0..3 {
        until(&nodes[i], "web-1 upgraded and whole", TIMEOUT, |s| {
            full_view(s, &ALL) && !pids(s, "web-1").is_empty() && pids(s, "web-1").is_disjoint(&pids(&before, "web-1"))
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut gaps = Vec::new();
    let mut unreachable = std::collections::BTreeSet::new();
    for (watcher, seen) in [0, 2].into_iter().zip(watchers) {
        let seen = seen.await.expect("watcher");
        let name = ALL[watcher];
        // web-1 never reported down, and never a worker of web-0 or web-2 missing; while
        // web-1's workers are out of the answer (between the exec and the rejoin), the
        // answer says so: web-1 is named unreachable, never left out silently.
        for (at, status) in &seen {
            assert!(status.is_object(), "{name}: no status --all answer at {at:?}");
            assert_ne!(node_up(status, "web-1"), Some(false), "{name} saw web-1 down at {at:?}: {status:#}");
            for other in ["web-0", "web-2"] {
                assert!(node_whole(status, other), "{name}: {other} not whole at {at:?}: {status:#}");
            }
            if !node_whole(status, "web-1") {
                let said = status["unreachable"].as_array().into_iter().flatten().filter_map(Value::as_str);
                let said: Vec<&str> = said.filter(|u| u.starts_with("node web-1:")).collect();
                assert!(!said.is_empty(), "{name}: web-1's workers left out silently at {at:?}: {status:#}");
                unreachable.insert(said[0].to_string());
            }
        }
        // The longest stretch in which web-1 was not whole (its workers out of the answer):
        // from the last whole answer before it to the first whole one after.
        let mut gap = Duration::ZERO;
        let mut last_whole = Duration::ZERO;
        let mut missing = false;
        for (at, status) in &seen {
            if node_whole(status, "web-1") {
                if missing {
                    gap = gap.max(*at - last_whole);
                    missing = false;
                }
                last_whole = *at;
            } else {
                missing = true;
            }
        }
        assert!(!missing, "{name}: web-1 not whole at the end");
        assert!(gap <= HEARTBEAT_TIMEOUT, "{name}: web-1's workers were out of status --all for {gap:?}");
        gaps.push(format!("{name} {gap:.2?}"));
    }
    let after = nodes[0].status_all().await;
    assert_eq!(nodes[1].run.pid(), pid, "the same pid");
    for node in ["web-0", "web-2"] {
        assert_eq!(pids(&after, node), pids(&before, node), "{node}'s workers untouched");
    }
    // web-0 and web-2 stopped before web-1 (which they must not see go down); then no log
    // says web-1 went down.
    let mut nodes = Arc::try_unwrap(nodes).ok().expect("watchers are done");
    nodes.swap(1, 2);
    for node in nodes {
        node.run.signal(Signal::SIGTERM);
        let name = node.name.clone();
        let (code, stderr) = node.run.exit().await;
        assert_eq!(code, Some(0), "{name}: {stderr}");
        let downs: Vec<&str> = stderr.lines().filter(|l| l.contains("node down") && l.contains("node=web-1")).collect();
        assert!(downs.is_empty(), "{name} saw web-1 down: {downs:#?}");
    }
    eprintln!(
        "web-1 upgraded in place in {upgraded:.2?}; its workers out of status --all at most: {}; said meanwhile: {unreachable:?}",
        gaps.join(", ")
    );
}

/// A library cluster of the `node_set` example, its stdout collected.
struct Example {
    child: tokio::process::Child,
    out: Arc<std::sync::Mutex<Vec<String>>>,
    control: PathBuf,
}

impl Example {
    fn start(dir: &Path, name: &str, listen: SocketAddr, cookie: &Path, extra: &[String]) -> Example {
        use tokio::io::AsyncBufReadExt;
        let control = dir.join(format!("{name}.sock"));
        let mut child = tokio::process::Command::new(example("node_set"))
            .args(["--node", name, "--node-listen", &listen.to_string(), "--cookie-file"])
            .arg(cookie)
            .arg("--control")
            .arg(&control)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the node_set example");
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = out.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
            }
        });
        Example { child, out, control }
    }

    fn count(&self, needle: &str) -> usize {
        self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().filter(|l| l.contains(needle)).count()
    }
}

/// Waits (bounded) until each example printed `needle` `n` times.
async fn until_printed(examples: &[Example], needle: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while examples.iter().any(|e| e.count(needle) < n) {
        let seen: Vec<Vec<String>> =
            examples.iter().map(|e| e.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()).collect();
        assert!(tokio::time::Instant::now() < deadline, "{n}× {needle:?} on each node; printed: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_broadcast_reaches_every_worker_on_every_node_of_library_clusters() {
    let dir = temp_dir("broadcast");
    let cookie = cookie_file(&dir, "cookie", "s3cret-cookie");
    let addrs: Vec<SocketAddr> =
        IPS.iter().map(|ip| format!("{ip}:{}", free_port(ip)).parse().expect("addr")).collect();
    let seed = vec!["--join".to_string(), addrs[0].to_string()];
    let mut examples = vec![
        Example::start(&dir, "lib-0", addrs[0], &cookie, &[]),
        Example::start(&dir, "lib-1", addrs[1], &cookie, &seed),
    ];
    // The last one broadcasts `Cmd::Announce("hello")` (typed, through `NodeSet::broadcast`)
    // once all three nodes are up.
    let announce = ["--announce".to_string(), "hello".into(), "--expect".into(), "3".into()];
    examples.push(Example::start(&dir, "lib-2", addrs[2], &cookie, &[seed, announce.to_vec()].concat()));
    until_printed(&examples, "got: hello", 2).await;
    // lib-2 prints each node's answer once they are all in.
    until_printed(&examples[2..], "broadcast: node", 3).await;
    // And from the command line, as JSON of the cluster's `Cmd`.
    let out = tokio::process::Command::new(CORRAL)
        .args(["broadcast", r#"{"Announce":"from the cli"}"#, "--control"])
        .arg(&examples[0].control)
        .output()
        .await
        .expect("corral broadcast");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    for name in ["lib-0", "lib-1", "lib-2"] {
        assert!(printed.contains(&format!("node {name}: reached 2 of 2 workers")), "{printed}");
    }
    until_printed(&examples, "got: from the cli", 2).await;
    // Node events: each saw the other two come up (a node hears a peer at that peer's next
    // heartbeat, which may come after the broadcasts on a loaded machine); one killed is
    // reported down.
    for (i, name) in ["lib-0", "lib-1", "lib-2"].into_iter().enumerate() {
        for (_, e) in examples.iter().enumerate().filter(|(j, _)| *j != i) {
            until_printed(std::slice::from_ref(e), &format!("node up: {name} ("), 1).await;
        }
    }
    examples[2].child.start_kill().expect("kill lib-2");
    until_printed(&examples[..2], "node down: lib-2", 1).await;
    for e in &mut examples {
        e.child.start_kill().expect("kill");
        let _ = tokio::time::timeout(TIMEOUT, e.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_configuration_errors_exit_2_and_say_what_is_wrong() {
    let dir = temp_dir("config");
    let run = |args: Vec<String>, env: Option<(&'static str, &'static str)>| async move {
        let mut cmd = tokio::process::Command::new(CORRAL);
        cmd.arg("run").args(args).env_remove("CORRAL_COOKIE");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(TIMEOUT, cmd.output()).await.expect("in time").expect("corral run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--no-control", "-l", "127.0.0.1:0", "--node", "n1", "--node-listen"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["--".to_string(), "true".into()]);
        v
    };
    let (code, err) = run(base(&["127.0.0.1:4370"]), None).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no cookie") && err.contains("CORRAL_COOKIE"), "{err}");
    let (code, err) = run(base(&["127.0.0.1:0"]), Some(("CORRAL_COOKIE", "c"))).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("node.listen") && err.contains("fixed port"), "{err}");
    let (code, err) = run(base(&["nowhere"]), Some(("CORRAL_COOKIE", "c"))).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"nowhere\" is not an IP:PORT"), "{err}");
    let exposed = dir.join("exposed");
    std::fs::write(&exposed, "c\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, err) = run(base(&["127.0.0.1:4370", "--cookie-file", &exposed.display().to_string()]), None).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("readable by group or others"), "{err}");
    // In a file: the key and its line.
    let file = dir.join("corral.toml");
    std::fs::write(
        &file,
        "program = \"true\"\nlisten = [\"127.0.0.1:0\"]\n\n[node]\nname = \"n 1\"\nlisten = \"127.0.0.1:4370\"\n",
    )
    .expect("write");
    let (code, err) =
        run(vec!["--no-control".into(), "-c".into(), file.display().to_string()], Some(("CORRAL_COOKIE", "c"))).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("node.name"), "{err}");
    // The node server's address in use: the start fails, naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, err) = run(base(&[&addr]), Some(("CORRAL_COOKIE", "c"))).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&addr) && err.contains("node"), "{err}");
}
