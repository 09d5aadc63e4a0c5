//! The primary's metrics endpoint, end to end: `/metrics` read by the reference Prometheus
//! text parser (Python's `prometheus_client`, installed from PyPI into a venv this test
//! makes) and checked against the cluster after a SIGKILL, a reload and load; `/status.json`
//! against the status; the page loaded in headless Chromium (screenshot and DOM); bad paths
//! and methods; slow and oversized clients.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{CorralRun, TIMEOUT, http_config, http_get, kill, spawn};
use corral::ClusterConfig;
use corral::config::Scheduling;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The venv with `prometheus-client`, made once per run of this file.
fn venv_python() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-venv");
        let python = venv.join("bin/python3");
        let ready = venv.join(".prometheus-client-installed");
        if !ready.exists() {
            let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
            assert!(matches!(made, Ok(s) if s.success()), "python3 -m venv {} failed: {made:?}", venv.display());
            let pip = std::process::Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "prometheus-client"])
                .output()
                .expect("run pip");
            assert!(
                pip.status.success(),
                "pip install prometheus-client failed: {}",
                String::from_utf8_lossy(&pip.stderr)
            );
            std::fs::write(&ready, b"").expect("mark the venv ready");
        }
        python
    })
}

/// One sample: its labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// A parsed exposition.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    families: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly these labels, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
    }

    /// The sum of `name` over every label set.
    fn sum(&self, name: &str) -> f64 {
        self.samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
    }

    fn slot(&self, name: &str, slot: usize) -> Option<f64> {
        self.get(name, &[("slot", &slot.to_string())])
    }
}

/// One row of `parse.py`: sample name, labels, value, family name, family type.
type ParsedRow = (String, HashMap<String, String>, f64, String, String);

/// Parses `text` with the reference parser.
fn parse(text: &str) -> Scrape {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/parse.py");
    let mut child = std::process::Command::new(venv_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the parser");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<ParsedRow> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let families = rows.iter().map(|r| (r.3.clone(), r.4.clone())).collect();
    let samples = rows.into_iter().map(|(name, labels, value, _, _)| Sample { name, labels, value }).collect();
    Scrape { samples, families }
}

async fn scrape(metrics: SocketAddr) -> Scrape {
    let (status, body) = http_get(metrics, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    tokio::task::spawn_blocking(move || parse(&body)).await.expect("parse")
}

/// Scrapes until `ok` holds (bounded); returns that scrape.
async fn scrape_until(metrics: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let s = scrape(metrics).await;
        if ok(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not seen within {TIMEOUT:?}; last scrape {s:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loopback0() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().expect("address"))
}

/// A testbed cluster serving HTTP, with the endpoint on and quick heartbeats (the workers'
/// counters come with them).
fn metrics_config(workers: usize) -> ClusterConfig {
    http_config(workers, Scheduling::RoundRobin).metrics(loopback0()).heartbeat_interval(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_kill_a_reload_and_load() {
    let (cluster, mut events) = spawn(metrics_config(2)).await;
    let http = events.http_ready(2).await;
    let metrics = cluster.metrics_addr().expect("metrics on");
    assert!(metrics.ip().is_loopback() && metrics.port() != 0);

    let s0 =
        scrape_until(metrics, "every slot up", |s| (0..2).all(|i| s.slot("corral_worker_up", i) == Some(1.0))).await;
    assert!(s0.families.len() >= 20, "families: {:?}", s0.families);
    assert_eq!(s0.families.get("corral_worker_restarts").map(String::as_str), Some("counter"));
    assert_eq!(s0.families.get("corral_cluster_reload_duration_seconds").map(String::as_str), Some("histogram"));
    assert_eq!(s0.get("corral_cluster_workers", &[]), Some(2.0));
    let status = cluster.status().await.expect("status");
    for w in &status {
        assert_eq!(s0.slot("corral_worker_pid", w.slot), w.pid.map(f64::from), "slot {}", w.slot);
        assert!(s0.slot("corral_worker_resident_memory_bytes", w.slot).is_some_and(|b| b > 0.0));
    }
    assert!(s0.get("process_resident_memory_bytes", &[]).is_some_and(|b| b > 0.0));

    // A SIGKILL: the slot's restarts +1, an exit by signal, the new pid and its RSS.
    let old = status[0].pid.expect("slot 0 pid");
    let restarts0 = s0.slot("corral_worker_restarts_total", 0).expect("restarts of slot 0");
    kill(old, Signal::SIGKILL);
    let s1 = scrape_until(metrics, "the replacement of slot 0", |s| {
        s.slot("corral_worker_restarts_total", 0) == Some(restarts0 + 1.0)
            && s.slot("corral_worker_pid", 0).is_some_and(|p| p != f64::from(old))
            && s.slot("corral_worker_ready", 0) == Some(1.0)
            // Counted from the exit event, as it arrives.
            && s.get("corral_worker_exits_total", &[("slot", "0"), ("reason", "signal")]) == Some(1.0)
    })
    .await;
    let new = cluster.status().await.expect("status")[0].pid.expect("new pid");
    assert_eq!(s1.slot("corral_worker_pid", 0), Some(f64::from(new)));
    assert!(s1.slot("corral_worker_resident_memory_bytes", 0).is_some_and(|b| b > 0.0));
    assert_eq!(s1.slot("corral_worker_restarts_total", 1), s0.slot("corral_worker_restarts_total", 1));

    // A reload: generation +1, one more reload observed.
    let generation = s1.get("corral_cluster_generation", &[]).expect("generation");
    let reloads = s1.get("corral_cluster_reload_duration_seconds_count", &[]).expect("reload count");
    let report = cluster.reload().await.expect("reload");
    assert!(report.error.is_none(), "{report:?}");
    let reloaded = cluster.status().await.expect("status");
    // The reload's event reaches the endpoint's recorder just after the reload's answer.
    let s2 = scrape_until(metrics, "the reload counted", |s| {
        s.get("corral_cluster_generation", &[]) == Some(generation + 1.0)
            && s.get("corral_cluster_reload_duration_seconds_count", &[]) == Some(reloads + 1.0)
            && reloaded.iter().all(|w| s.slot("corral_worker_generation", w.slot) == Some(w.generation as f64))
    })
    .await;
    assert!(s2.get("corral_cluster_reload_duration_seconds_sum", &[]).is_some_and(|d| d > 0.0));
    assert_eq!(s2.get("corral_cluster_reloads_total", &[("outcome", "ok")]), Some(1.0));
    assert_eq!(s2.get("corral_cluster_reloads_total", &[("outcome", "failed")]), Some(0.0));

    // Load: the connections handled grow with what was sent, per listener and per worker.
    let handled = s2.sum("corral_worker_connections_handled_total");
    let accepted = s2.sum("corral_listener_connections_accepted_total");
    let stop = CancellationToken::new();
    let load = tokio::spawn(common::load(http, 2, "/", stop.clone()));
    scrape_until(metrics, "load counted", |s| {
        s.sum("corral_listener_connections_accepted_total") >= accepted + 50.0
            && s.sum("corral_worker_connections_handled_total") >= handled + 50.0
    })
    .await;
    stop.cancel();
    let report = load.await.expect("load");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.ok >= 50, "{report:?}");
    // Every accepted connection was handed to a worker (none waits: both are ready).
    scrape_until(metrics, "every connection dispatched", |s| {
        s.sum("corral_listener_connections_dispatched_total") >= s.sum("corral_listener_connections_accepted_total")
    })
    .await;
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_the_status_and_bad_requests_are_refused() {
    let (cluster, mut events) = spawn(metrics_config(2)).await;
    events.http_ready(2).await;
    let metrics = cluster.metrics_addr().expect("metrics on");

    let (status, body) = http_get(metrics, "/status.json").await.expect("GET /status.json");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let rows = json["workers"].as_array().expect("workers");
    let workers = cluster.status().await.expect("status");
    assert_eq!(rows.len(), workers.len());
    for (row, w) in rows.iter().zip(&workers) {
        assert_eq!(row["slot"], w.slot);
        assert_eq!(row["pid"], serde_json::json!(w.pid));
        assert_eq!(row["state"], "ready");
        assert_eq!(row["generation"], w.generation);
        assert_eq!(row["restarts"], w.restarts);
        assert!(row["rss_bytes"].as_u64().is_some_and(|b| b > 0), "{row}");
        for key in ["uptime_ms", "cpu_percent", "in_flight", "handled", "messages_in", "messages_out", "heartbeat_ms"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }

    for path in ["/nope", "/metrics/x", "/status.json/", "/index.html"] {
        let (status, _) = http_get(metrics, path).await.expect("GET");
        assert_eq!(status, 404, "{path}");
    }
    let mut stream = tokio::net::TcpStream::connect(metrics).await.expect("connect");
    stream
        .write_all(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut answer)).await.expect("answered").expect("read");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("allow: get, head"), "{answer}");

    // OpenMetrics when asked for, Prometheus text 0.0.4 otherwise.
    let mut stream = tokio::net::TcpStream::connect(metrics).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut answer)).await.expect("answered").expect("read");
    assert!(answer.contains("application/openmetrics-text") && answer.trim_end().ends_with("# EOF"), "{answer}");
    let (_, text) = http_get(metrics, "/metrics").await.expect("GET /metrics");
    assert!(!text.contains("# EOF"));
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_clients_do_not_delay_the_endpoint() {
    let (cluster, mut events) = spawn(metrics_config(1)).await;
    events.http_ready(1).await;
    let metrics = cluster.metrics_addr().expect("metrics on");

    // Clients that connect and send nothing, and one that trickles a request byte by byte.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(metrics).await.expect("connect"));
    }
    let mut trickler = tokio::net::TcpStream::connect(metrics).await.expect("connect");
    let trickle = tokio::spawn(async move {
        for b in b"GET /metrics HTTP/1.1\r\nHost: slow" {
            if trickler.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The server closes it (it never finished its head in time).
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(TIMEOUT, trickler.read_to_end(&mut rest)).await, Ok(Ok(_)) | Ok(Err(_)))
    });
    // Meanwhile everyone else is answered, and the cluster keeps serving: each answer comes
    // while a client that connected just before it, and sent nothing, is still connected
    // (the answer did not wait for it).
    let mut byte = [0u8; 1];
    for path in ["/metrics", "/status.json", "/"] {
        let mut silent = tokio::net::TcpStream::connect(metrics).await.expect("connect");
        let (status, _) = http_get(metrics, path).await.expect("GET while slow clients wait");
        assert_eq!(status, 200, "{path}");
        match tokio::time::timeout(Duration::ZERO, silent.read(&mut byte)).await {
            Err(_) => {}
            Ok(r) => panic!("the silent client was closed before {path} was answered: {r:?}"),
        }
        idle.push(silent);
    }
    let scrape = scrape(metrics).await;
    assert_eq!(scrape.slot("corral_worker_up", 0), Some(1.0));
    cluster.status().await.expect("the cluster answers too");
    // ... and each is closed once its head is overdue.
    for client in &mut idle {
        let read = tokio::time::timeout(TIMEOUT, client.read(&mut byte)).await.expect("idle client closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(trickle.await.expect("trickler"), "the trickling client was not closed");

    // A head larger than the limit is refused, and the endpoint goes on.
    let mut big = tokio::net::TcpStream::connect(metrics).await.expect("connect");
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = big.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, big.read_to_end(&mut answer)).await.expect("oversized head answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    let (status, _) = http_get(metrics, "/metrics").await.expect("GET after the oversized head");
    assert_eq!(status, 200);
    cluster.stop().await.expect("stop");
}

/// Headless Chromium (Debian's `chromium`, which `.ci/run` installs): never skipped.
fn chromium() -> String {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    let found = std::env::var("CHROMIUM")
        .ok()
        .into_iter()
        .chain(candidates.iter().map(|c| c.to_string()))
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    found.unwrap_or_else(|| panic!("no headless Chromium ({candidates:?}): `apt-get install chromium` (.ci/run does)"))
}

/// Runs headless Chromium on `url` with `args`, bounded; returns its stdout.
async fn headless(url: &str, args: &[String], profile: &Path) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1280,480", "--virtual-time-budget=2000"])
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished in time")
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_one_row_per_worker_in_chromium() {
    let (cluster, mut events) = spawn(metrics_config(3)).await;
    events.http_ready(3).await;
    let metrics = cluster.metrics_addr().expect("metrics on");
    let url = format!("http://{metrics}/");
    let dir = tempdir("page");

    let dom = headless(&url, &["--dump-dom".into()], &dir.join("profile-dom")).await;
    let workers = cluster.status().await.expect("status");
    assert_eq!(dom.matches("<tr class=\"worker\"").count(), workers.len(), "{dom}");
    for w in &workers {
        let row = format!("<tr class=\"worker\" data-slot=\"{}\" data-state=\"ready\">", w.slot);
        assert!(dom.contains(&row), "no ready row for slot {}: {dom}", w.slot);
        assert!(dom.contains(&format!(">{}</td>", w.pid.expect("pid"))), "pid of slot {} missing", w.slot);
    }
    assert_eq!(dom.matches("<svg class=\"spark rss\"").count(), workers.len(), "one RSS sparkline per row");
    assert_eq!(dom.matches("<svg class=\"spark rps\"").count(), workers.len(), "one req/s sparkline per row");
    assert!(!dom.contains("<script"), "the page has no script");

    let shot = dir.join("status.png");
    headless(&url, &[format!("--screenshot={}", shot.display())], &dir.join("profile-shot")).await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // 1280 × 480, as asked (the IHDR chunk's width and height).
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().expect("width")), 1280);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().expect("height")), 480);
    assert!(png.len() > 5_000, "a near-empty screenshot ({} bytes)", png.len());
    cluster.stop().await.expect("stop");
}

/// A fresh directory under the target's temporary directory.
fn tempdir(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("metrics-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a temporary directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_run_serves_metrics_while_a_worker_restarts() {
    let run = CorralRun::start(
        &["--workers", "2", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--no-control"],
        &common::python(),
        &[],
        1,
    )
    .await;
    let metrics = run.metrics.expect("metrics line");
    assert!(metrics.ip().is_loopback());
    let s0 =
        scrape_until(metrics, "both slots ready", |s| (0..2).all(|i| s.slot("corral_worker_ready", i) == Some(1.0)))
            .await;
    let pid = s0.slot("corral_worker_pid", 1).expect("pid of slot 1") as u32;
    let restarts = s0.slot("corral_worker_restarts_total", 1).expect("restarts of slot 1");
    kill(pid, Signal::SIGKILL);
    // Every scrape during the restart is answered by the primary.
    scrape_until(metrics, "slot 1 replaced", |s| {
        s.slot("corral_worker_restarts_total", 1) == Some(restarts + 1.0)
            && s.slot("corral_worker_pid", 1).is_some_and(|p| p != f64::from(pid))
            && s.slot("corral_worker_resident_memory_bytes", 1).is_some()
    })
    .await;
    let (status, body) = http_get(metrics, "/status.json").await.expect("status.json");
    assert_eq!(status, 200);
    assert!(body.contains("\"pid\""));
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_fails_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = corral::Cluster::<common::TestCmd, common::TestReport>::spawn(common::config(1).metrics(Some(addr)))
        .await
        .expect_err("the port is taken");
    assert!(matches!(err, corral::ClusterError::Metrics { addr: a, .. } if a == addr), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
