//! The node set (`cluster` feature) under real network faults: three `corral run` primaries,
//! each in a network namespace of its own (its own stack), linked through a fourth namespace
//! — all created by this test and removed by it, whatever happens. Faults are made on those
//! links only. Where the kernel has netem the links are veth pairs on a bridge: a partition
//! sets a bridge port down, delay and loss are `tc netem`. Where it has not (this VM's kernel),
//! each host's `eth0` is a TUN device of the user-space link emulator
//! (`tests/programs/link_emulator.py`), which forwards every packet between the hosts itself:
//! it cuts a host off, delays, and loses at random. Either way the nodes' TCP stacks see real
//! silence, real delay and real loss. `CORRAL_NETFAULTS_LINKS=netem|emulator` chooses.
//!
//! - One node cut off for 10 s: each side reports the other down within the heartbeat bound,
//!   nothing crashes, `status --all` on each side answers in bounded time with what it can
//!   reach and names the unreachable; after the heal all are up within 5 s, no node twice.
//!   A `reload --all` on the cut-off side is refused (not a majority).
//! - 200 ms delay and 5 % loss on every link for a minute: `status --all` still answers in
//!   bounded time, and no node flaps down/up more than once.
//!
//! Needs root and `ip`/`tc` (iproute2), and for the emulator python3 and `/dev/net/tun`.
//! Without root or iproute2 the test says so and passes vacuously; with neither netem nor
//! `/dev/net/tun`, the delay and loss part is skipped, said so.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const NAMES: [&str; 3] = ["web-0", "web-1", "web-2"];
/// The nodes' addresses, inside the test's own namespaces only (TEST-NET-1).
const IPS: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
const NODE_PORT: u16 = 4370;
/// corral's defaults: a heartbeat every 500 ms, a peer silent for 2.5 s is down.
const HEARTBEAT: Duration = Duration::from_millis(500);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(2500);
/// What a `status --all` may take, whatever the network does.
const STATUS_BOUND: Duration = Duration::from_secs(5);
/// How long every link has 200 ms of delay and 5 % loss: the minute, or
/// `CORRAL_NETFAULTS_SLOW_SECS` (longer, for a soak by hand; at most one flap a minute).
fn slow_for() -> Duration {
    let secs = std::env::var("CORRAL_NETFAULTS_SLOW_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60u64);
    Duration::from_secs(secs.max(60))
}

fn tool(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// How the hosts are linked, and so how faults are made.
enum Links {
    /// A veth pair per host on a bridge in the switch namespace: a partition sets the host's
    /// bridge port down; delay and loss are `tc netem` on every host's way out.
    Netem,
    /// A TUN device per host (its `eth0`), owned by the user-space link emulator
    /// (`tests/programs/link_emulator.py`) running in the switch namespace: it forwards each
    /// packet to the destination host's device, delays it, loses it or cuts a host off. For
    /// kernels built without netem (this VM's).
    Emulator(Box<Emulator>),
}

/// The link emulator: commands on its stdin, one answer a line on its stdout. It exits when
/// its stdin closes (this process ended, however) and is killed when dropped.
struct Emulator {
    child: Child,
    commands: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Emulator {
    /// Starts it in namespace `ns` with one device per host (`DEV=IP`), once it says `ready`.
    async fn start(ns: &str, hosts: &[(String, &str)]) -> Result<Emulator, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "python3"]).arg(test_program("link_emulator.py"));
        cmd.args(hosts.iter().map(|(dev, ip)| format!("{dev}={ip}")));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("start the link emulator: {e}"))?;
        let commands = child.stdin.take().ok_or("emulator stdin")?;
        let answers = BufReader::new(child.stdout.take().ok_or("emulator stdout")?).lines();
        let mut emulator = Emulator { child, commands, answers };
        match emulator.answer().await?.as_str() {
            "ready" => Ok(emulator),
            other => Err(format!("the link emulator said {other:?}, not ready")),
        }
    }

    async fn answer(&mut self) -> Result<String, String> {
        match tokio::time::timeout(TIMEOUT, self.answers.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(format!("the link emulator exited: {:?}", self.child.try_wait())),
            Ok(Err(e)) => Err(format!("reading the link emulator: {e}")),
            Err(_) => Err("the link emulator did not answer in time".into()),
        }
    }

    /// One command; its answer (`ok …`, `stats …`), or why not.
    async fn ask(&mut self, command: &str) -> Result<String, String> {
        self.commands.write_all(format!("{command}\n").as_bytes()).await.map_err(|e| format!("{command}: {e}"))?;
        self.commands.flush().await.map_err(|e| format!("{command}: {e}"))?;
        let answer = self.answer().await?;
        if answer.starts_with("error") { Err(format!("{command}: {answer}")) } else { Ok(answer) }
    }
}

/// Whether this kernel has the netem qdisc: tried on `lo` of namespace `ns`.
fn kernel_has_netem(ns: &str) -> bool {
    let added = sh(&["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).is_ok();
    if added {
        let _ = sh(&["tc", "-n", ns, "qdisc", "del", "dev", "lo", "root"]);
    }
    added
}

/// The namespaces of one run: a switch and three hosts, linked by a bridge (where the kernel
/// has netem) or by the link emulator. Dropped (also when the test panics): every node
/// stopped, the emulator killed, every namespace deleted.
struct Net {
    switch: String,
    hosts: Vec<String>,
    nodes: Vec<NsNode>,
    links: Links,
    dir: PathBuf,
}

impl Net {
    /// `CORRAL_NETFAULTS_LINKS=netem|emulator` chooses the links; by default netem where the
    /// kernel has it, else the emulator.
    async fn build(tag: &str) -> Result<Net, String> {
        let dir = std::env::temp_dir().join(format!("corral-netfaults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut net =
            Net { switch: format!("{tag}sw"), hosts: Vec::new(), nodes: Vec::new(), links: Links::Netem, dir };
        sh(&["ip", "netns", "add", &net.switch])?;
        let emulate = match std::env::var("CORRAL_NETFAULTS_LINKS").as_deref() {
            Ok("netem") => false,
            Ok("emulator") => true,
            Ok(other) => return Err(format!("CORRAL_NETFAULTS_LINKS={other}: netem or emulator")),
            // Without netem and without TUN the delay and loss part is skipped (said so).
            Err(_) => !kernel_has_netem(&net.switch) && Path::new("/dev/net/tun").exists(),
        };
        for i in 0..IPS.len() {
            let ns = format!("{tag}n{i}");
            sh(&["ip", "netns", "add", &ns])?;
            net.hosts.push(ns);
        }
        if emulate {
            let devs: Vec<(String, &str)> = IPS.iter().enumerate().map(|(i, ip)| (format!("{tag}t{i}"), *ip)).collect();
            net.links = Links::Emulator(Box::new(Emulator::start(&net.switch, &devs).await?));
            for (i, (dev, _)) in devs.iter().enumerate() {
                // The device stays attached to the emulator's fd in its host's namespace.
                sh(&["ip", "-n", &net.switch, "link", "set", dev, "netns", &net.hosts[i], "name", "eth0"])?;
            }
        } else {
            sh(&["ip", "-n", &net.switch, "link", "add", "br0", "type", "bridge"])?;
            sh(&["ip", "-n", &net.switch, "link", "set", "br0", "up"])?;
            for (i, ns) in net.hosts.iter().enumerate() {
                let port = format!("v{i}");
                sh(&[
                    "ip",
                    "-n",
                    &net.switch,
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                ])?;
                sh(&["ip", "-n", &net.switch, "link", "set", &port, "master", "br0"])?;
                sh(&["ip", "-n", &net.switch, "link", "set", &port, "up"])?;
            }
        }
        for (ns, ip) in net.hosts.iter().zip(IPS) {
            sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// What links the hosts, as the test's output says it.
    fn links_name(&self) -> &'static str {
        match self.links {
            Links::Netem => "veth pairs on a bridge, faults by link state and tc netem",
            Links::Emulator(_) => {
                "TUN devices on the user-space link emulator (tests/programs/link_emulator.py), which makes the faults"
            }
        }
    }

    /// Host `i` cut off from the other two (`cut`), or back.
    async fn cut(&mut self, i: usize, cut: bool) {
        match &mut self.links {
            Links::Netem => {
                let state = if cut { "down" } else { "up" };
                sh(&["ip", "-n", &self.switch, "link", "set", &format!("v{i}"), state]).expect("bridge port");
            }
            Links::Emulator(emulator) => {
                emulator.ask(&format!("{} {}", if cut { "cut" } else { "heal" }, IPS[i])).await.expect("emulator");
            }
        }
    }

    /// `delay_ms` of delay and `loss_pct` % loss on every link: each packet between two hosts
    /// is delayed once and may be lost once. `Err` when netem is wanted and the kernel has
    /// none (`sch_netem`).
    async fn impair(&mut self, delay_ms: u32, loss_pct: u32) -> Result<(), String> {
        match &mut self.links {
            Links::Netem => {
                for ns in &self.hosts {
                    let (delay, loss) = (format!("{delay_ms}ms"), format!("{loss_pct}%"));
                    sh(&[
                        "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
                        &delay, "loss", &loss,
                    ])?;
                }
                Ok(())
            }
            Links::Emulator(emulator) => emulator.ask(&format!("set delay={delay_ms} loss={loss_pct}")).await.map(drop),
        }
    }

    async fn clear_impairment(&mut self) {
        match &mut self.links {
            Links::Netem => {
                for ns in &self.hosts {
                    let _ = sh(&["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"]);
                }
            }
            Links::Emulator(emulator) => {
                let _ = emulator.ask("set delay=0 loss=0").await;
            }
        }
    }

    /// The emulator's counters (`forwarded=… lost=…`), when it makes the faults.
    async fn emulator_stats(&mut self) -> Option<String> {
        match &mut self.links {
            Links::Netem => None,
            Links::Emulator(emulator) => emulator.ask("stats").await.ok(),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        if let Links::Emulator(emulator) = &mut self.links {
            let _ = emulator.child.start_kill();
        }
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One primary in its namespace (`ip netns exec` execs corral: the pid is the primary's).
struct NsNode {
    child: Child,
    control: PathBuf,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NsNode {
    async fn start(ns: &str, i: usize, dir: &Path, cookie: &Path) -> NsNode {
        let control = dir.join(format!("n{i}.sock"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, CORRAL, "run", "-w", "2", "--listen", &format!("{}:0", IPS[i])])
            .arg("--control")
            .arg(&control)
            .args(["--node", NAMES[i], "--node-listen", &format!("{}:{NODE_PORT}", IPS[i])])
            .arg("--cookie-file")
            .arg(cookie);
        if i > 0 {
            cmd.args(["--join", &format!("{}:{NODE_PORT}", IPS[0])]);
        }
        cmd.arg("--").args(python());
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1").stdin(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ip netns exec corral run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let line = tokio::time::timeout(TIMEOUT, async {
            while let Ok(Some(line)) = out.next_line().await {
                if line.starts_with("listening on ") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(line, Ok(true), "{} did not start", NAMES[i]);
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = err.next_line().await {
                    log.lock().expect("log").push((Instant::now(), line));
                }
            }
        });
        NsNode { child, control, log }
    }

    fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.start_kill();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `corral status --all --json` from this node: how long it took, and the answer.
    async fn status_all(&self) -> (Duration, Option<Value>) {
        let started = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            Command::new(CORRAL).args(["status", "--all", "--json", "--control"]).arg(&self.control).output(),
        )
        .await;
        let took = started.elapsed();
        let value = match out {
            Ok(Ok(out)) => serde_json::from_slice(&out.stdout).ok(),
            _ => None,
        };
        (took, value)
    }

    /// Log lines since `since` that contain `what`, each with when it was read.
    fn timed_lines(&self, since: Instant, what: &str) -> Vec<(Instant, String)> {
        self.log.lock().expect("log").iter().filter(|(t, l)| *t >= since && l.contains(what)).cloned().collect()
    }
}

/// Counter `key` of the emulator's `stats key=N …` line.
fn counter(stats: &str, key: &str) -> u64 {
    stats.split_whitespace().find_map(|field| field.strip_prefix(key)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
}

/// One `status --all` during the partition: which node, when the answer came (since the cut),
/// how long it took, the answer.
type Poll = (usize, Duration, Duration, Option<Value>);

/// `{node: up}` of a `status --all` answer, and the names listed more than once.
fn view(status: &Value) -> (BTreeMap<String, bool>, Vec<String>) {
    let mut seen = BTreeMap::new();
    let mut twice = Vec::new();
    for n in status["nodes"].as_array().into_iter().flatten() {
        let name = n["node"].as_str().unwrap_or("?").to_string();
        if seen.insert(name.clone(), n["up"].as_bool().unwrap_or(false)).is_some() {
            twice.push(name);
        }
    }
    (seen, twice)
}

/// Workers by node.
fn workers_of(status: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in status["workers"].as_array().into_iter().flatten() {
        *out.entry(w["node"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    out
}

/// All three up, each once, each with its 2 workers, as `status` shows it.
fn whole(status: &Value) -> bool {
    let (up, twice) = view(status);
    twice.is_empty()
        && up.len() == 3
        && up.values().all(|u| *u)
        && workers_of(status).values().copied().collect::<Vec<_>>() == [2, 2, 2]
}

async fn all_whole(nodes: &[NsNode]) -> bool {
    for node in nodes {
        match node.status_all().await {
            (_, Some(s)) if whole(&s) => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_set_survives_a_partition_and_a_slow_lossy_network() {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() || !tool("ip") || !tool("tc") {
        eprintln!("SKIPPED: needs root and iproute2's ip and tc (euid {euid}, ip {}, tc {})", tool("ip"), tool("tc"));
        return;
    }
    let tag = format!("cnf{}", std::process::id() % 100_000);
    let mut net = match Net::build(&tag).await {
        Ok(net) => net,
        Err(e) => panic!("cannot build the test's namespaces: {e}"),
    };
    eprintln!("node set in namespaces, links: {}", net.links_name());
    let cookie = net.dir.join("cookie");
    std::fs::write(&cookie, format!("netfaults-{}\n", std::process::id())).expect("cookie");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    for i in 0..3 {
        let node = NsNode::start(&net.hosts[i], i, &net.dir, &cookie).await;
        net.nodes.push(node);
    }
    let started = Instant::now();
    while !all_whole(&net.nodes).await {
        assert!(started.elapsed() < Duration::from_secs(30), "the three nodes did not all see each other in 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let joined = started.elapsed();

    // ---- web-0 cut off from the other two for 10 s, every node's `status --all` polled.
    net.cut(0, true).await;
    let cut = Instant::now();
    let polls: Arc<Mutex<Vec<Poll>>> = Arc::default();
    let nodes = Arc::new(std::mem::take(&mut net.nodes));
    let mut pollers = Vec::new();
    for i in 0..3 {
        let (nodes, polls) = (nodes.clone(), polls.clone());
        pollers.push(tokio::spawn(async move {
            while cut.elapsed() < Duration::from_secs(10) {
                let (took, status) = nodes[i].status_all().await;
                polls.lock().expect("polls").push((i, cut.elapsed(), took, status));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }
    for p in pollers {
        p.await.expect("poller");
    }
    // A reload --all on the cut-off side (a minority) is refused, clearly, and reloads nothing.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(CORRAL).args(["reload", "--all", "--control"]).arg(&nodes[0].control).output(),
    )
    .await
    .expect("reload --all answers")
    .expect("corral reload");
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && said.contains("not a majority"), "reload --all on the minority side: {said}");
    net.cut(0, false).await;
    let healed = Instant::now();
    let polls = std::mem::take(&mut *polls.lock().expect("polls"));
    let slowest = polls.iter().map(|p| p.2).max().unwrap_or_default();
    for (i, at, took, status) in &polls {
        assert!(
            *took <= STATUS_BOUND && status.is_some(),
            "{}: status --all at {at:?} took {took:?}: {status:?}",
            NAMES[*i]
        );
    }
    // Each side reports the other down within the heartbeat bound: the timeout, a tick, and a
    // poll (250 ms apart, each up to STATUS_BOUND).
    let bound = HEARTBEAT_TIMEOUT + HEARTBEAT + Duration::from_millis(250) + STATUS_BOUND;
    let mut seen_down = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let others: Vec<&str> = if i == 0 { vec![NAMES[1], NAMES[2]] } else { vec![NAMES[0]] };
        let first = polls.iter().find(|(j, _, _, s)| {
            *j == i && s.as_ref().is_some_and(|s| others.iter().all(|o| view(s).0.get(*o) == Some(&false)))
        });
        let Some((_, at, _, status)) = first else { panic!("{name} never reported {others:?} down") };
        // `at`: when that answer came (it knew by then).
        assert!(*at <= bound, "{name} reported {others:?} down only {at:?} after the cut");
        seen_down.push(format!("{name} {:.1} s", at.as_secs_f64()));
        // What it answers then: the workers it can reach, and the unreachable named (down).
        let status = status.as_ref().expect("answer");
        let reached: Vec<String> = workers_of(status).into_keys().collect();
        assert!(
            others.iter().all(|o| !reached.iter().any(|r| r == o)),
            "{name}: workers of a cut-off node listed: {status:#}"
        );
        assert!(reached.iter().any(|r| r == name), "{name}: its own workers missing: {status:#}");
    }
    let mut nodes = Arc::try_unwrap(nodes).ok().expect("pollers are done");
    for (i, node) in nodes.iter_mut().enumerate() {
        assert!(node.alive(), "{} exited during the partition", NAMES[i]);
        // Its log says so too (the lines the flap count below reads).
        let others: Vec<&str> = if i == 0 { vec![NAMES[1], NAMES[2]] } else { vec![NAMES[0]] };
        let downs = node.timed_lines(cut, "node down");
        for other in others {
            assert!(
                downs.iter().any(|(_, l)| l.contains(&format!("node={other}"))),
                "{}: no `node down` line for {other}: {downs:#?}",
                NAMES[i]
            );
        }
    }
    let mut heal = None;
    while healed.elapsed() < Duration::from_secs(20) {
        if all_whole(&nodes).await {
            heal = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heal = heal.expect("whole again within 20 s of the heal");
    assert!(heal <= Duration::from_secs(5), "all up again only {heal:?} after the heal");

    let partition = format!(
        "joined in {joined:.1?}; web-0 cut off 10 s: down seen by {}; slowest status --all {slowest:.2?}; whole {heal:.1?} after the heal",
        seen_down.join(", ")
    );
    eprintln!("node set in namespaces, partition: {partition}");

    // ---- 200 ms delay and 5 % loss on every link for a minute.
    let counted_before = net.emulator_stats().await;
    if let Err(e) = net.impair(200, 5).await {
        // A kernel without netem, and no emulator (no /dev/net/tun, or netem asked for): the
        // partition part stands alone.
        assert!(e.contains("qdisc kind is unknown"), "200 ms delay and 5 % loss on every link: {e}");
        eprintln!(
            "delay and loss SKIPPED: this kernel has no netem qdisc, and the link emulator is not in use \
             (no /dev/net/tun, or CORRAL_NETFAULTS_LINKS=netem): {e}"
        );
        net.nodes = nodes;
        return;
    }
    let slow = Instant::now();
    let mut status_times = Vec::new();
    let mut complete = 0;
    // The longest a node had not heard from a peer, as the answers say (sampled).
    let mut silent_ms = 0;
    let slow_for = slow_for();
    while slow.elapsed() < slow_for {
        for (i, node) in nodes.iter().enumerate() {
            let (took, status) = node.status_all().await;
            assert!(
                took <= STATUS_BOUND && status.is_some(),
                "{} under delay and loss: status --all took {took:?}: {status:?}",
                NAMES[i]
            );
            complete += usize::from(status.as_ref().is_some_and(whole));
            for peer in status.as_ref().and_then(|s| s["nodes"].as_array()).into_iter().flatten() {
                silent_ms = silent_ms.max(peer["last_seen_ms"].as_u64().unwrap_or(0));
            }
            status_times.push(took);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counted_after = net.emulator_stats().await;
    net.clear_impairment().await;
    // What the emulator did in that minute: packets forwarded and lost.
    let emulated = counted_before.zip(counted_after).map(|(before, after)| {
        let count = |key: &str| counter(&after, key).saturating_sub(counter(&before, key));
        let (forwarded, lost) = (count("forwarded"), count("lost"));
        format!(
            "; emulator: {lost} of {} packets lost ({:.1} %), max queue {} packets",
            forwarded + lost,
            100.0 * lost as f64 / (forwarded + lost).max(1) as f64,
            counter(&after, "max_queue")
        )
    });
    // No node flaps down/up more than once a minute: two `node down` of one peer on one
    // node are a minute apart at least. The figure says how many there were.
    let mut flaps = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let downs = node.timed_lines(slow, "node down");
        for name in NAMES {
            let at: Vec<Instant> =
                downs.iter().filter(|(_, l)| l.contains(&format!("node={name}"))).map(|(t, _)| *t).collect();
            for pair in at.windows(2) {
                let apart = pair[1] - pair[0];
                assert!(
                    apart >= Duration::from_secs(60),
                    "{} saw {name} go down twice {apart:.1?} apart under delay and loss: {downs:#?}",
                    NAMES[i]
                );
            }
            if !at.is_empty() {
                flaps.push(format!("{} saw {name} down {} time(s)", NAMES[i], at.len()));
            }
        }
    }
    status_times.sort();
    let median = status_times.get(status_times.len() / 2).copied().unwrap_or_default();
    let max = status_times.last().copied().unwrap_or_default();
    for (i, node) in nodes.iter_mut().enumerate() {
        assert!(node.alive(), "{} exited under delay and loss", NAMES[i]);
    }
    eprintln!(
        "node set in namespaces, 200 ms + 5 % loss for {slow_for:?}: status --all median {median:.2?}, max {max:.2?} \
         ({} asks, {complete} complete: 3 nodes up, 6 workers), longest silence seen {silent_ms} ms, flaps: {}{}",
        status_times.len(),
        if flaps.is_empty() { "none".to_string() } else { flaps.join(", ") },
        emulated.unwrap_or_default(),
    );
    net.nodes = nodes;
}
