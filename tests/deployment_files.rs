//! The deployment files of `contrib/`, checked: the Dockerfile (`contrib/docker/`), the
//! Kubernetes manifest (`contrib/kubernetes/`) and the systemd units (`contrib/systemd/`) are
//! parsed, every `corral` command they run exists with every flag they give it (against
//! `corral SUBCOMMAND --help`), what they copy exists, their probes and grace periods match
//! what corral serves and takes; and the Dockerfile's own command runs the app it ships.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `corral SUB --help`.
fn help(sub: &str) -> String {
    let out = std::process::Command::new(CORRAL).args([sub, "--help"]).output().expect("corral --help");
    assert!(out.status.success(), "corral {sub} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks `argv` (`corral SUB ARGS…`): SUB exists and documents every flag before `--`.
fn check_corral_command(argv: &[String], what: &str) {
    assert_eq!(
        argv.first().map(String::as_str).map(|p| p.rsplit('/').next().unwrap_or(p)),
        Some("corral"),
        "{what}: {argv:?}"
    );
    let sub = argv.get(1).unwrap_or_else(|| panic!("{what}: no subcommand"));
    let text = help(sub);
    for word in argv[2..].iter().take_while(|w| *w != "--") {
        if !word.starts_with('-') {
            continue;
        }
        let flag = word.split('=').next().unwrap_or(word);
        let documented = text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']').any(|t| t == flag);
        assert!(documented, "{what}: `corral {sub}` has no {flag}");
    }
}

/// The value after `flag` in `argv`.
fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter().position(|w| w == flag).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {addr}"))
}

fn seconds(duration: &str) -> u64 {
    duration.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{duration}: whole seconds"))
}

/// The Dockerfile's instructions: (keyword, arguments), continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("contrib/docker/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(char::is_whitespace).expect("KEYWORD ARGS");
                out.push((keyword.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn json_array(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not the exec form (a JSON array): {args}: {e}"))
}

/// The Dockerfile's `corral` command (ENTRYPOINT + CMD), and where each file it copies into
/// the image comes from (image path → repository path).
fn docker_command() -> (Vec<String>, HashMap<String, String>) {
    let instructions = dockerfile();
    let get = |k: &str| instructions.iter().rev().find(|(key, _)| key == k).map(|(_, a)| a.clone());
    let mut argv = json_array(&get("ENTRYPOINT").expect("ENTRYPOINT"));
    argv.extend(json_array(&get("CMD").expect("CMD")));
    let mut copied = HashMap::new();
    let mut workdir = "/".to_string();
    for (key, args) in &instructions {
        match key.as_str() {
            "WORKDIR" => workdir = args.clone(),
            "COPY" if !args.starts_with("--from") => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let (sources, dest) = words.split_at(words.len() - 1);
                for source in sources {
                    assert!(repo(source).exists(), "COPY {source}: not in the repository");
                    let dest = if dest[0] == "." { format!("{workdir}/") } else { dest[0].to_string() };
                    let name = Path::new(source).file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    let image_path = if dest.ends_with('/') { format!("{dest}{name}") } else { dest };
                    copied.insert(image_path, source.to_string());
                }
            }
            _ => {}
        }
    }
    (argv, copied)
}

#[test]
fn the_dockerfile_builds_corral_in_one_stage_and_runs_it_as_the_init_of_another() {
    let instructions = dockerfile();
    let froms: Vec<&String> = instructions.iter().filter(|(k, _)| k == "FROM").map(|(_, a)| a).collect();
    assert!(froms.len() >= 2 && froms[0].to_ascii_lowercase().contains(" as build"), "multi-stage: {froms:?}");
    let copies_binary =
        instructions.iter().any(|(k, a)| k == "COPY" && a.starts_with("--from=build") && a.contains("release/corral"));
    assert!(copies_binary, "the binary comes from the build stage");
    assert!(instructions.iter().any(|(k, a)| k == "RUN" && a.contains("cargo build --release")));
    assert!(instructions.iter().any(|(k, a)| k == "STOPSIGNAL" && a == "SIGTERM"));
    let (argv, copied) = docker_command();
    check_corral_command(&argv, "Dockerfile ENTRYPOINT + CMD");
    let program = &argv[argv.iter().position(|w| w == "--").expect("-- PROGRAM") + 1..];
    assert!(copied.contains_key(&program[1]), "the app {} is copied into the image: {copied:?}", program[1]);
    let env_file = flag_value(&argv, "--env-file").expect("--env-file");
    assert!(copied.contains_key(env_file), "{env_file} is copied into the image");
    let health = instructions.iter().find(|(k, _)| k == "HEALTHCHECK").map(|(_, a)| a.clone()).expect("HEALTHCHECK");
    let metrics = flag_value(&argv, "--metrics").expect("--metrics");
    assert!(health.contains(&format!(":{}/readyz", port_of(metrics))), "HEALTHCHECK probes /readyz: {health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfiles_command_serves_its_app() {
    let (argv, copied) = docker_command();
    // As in the image: the copied files at their repository paths, addresses on port 0.
    let mut args: Vec<String> = argv[2..]
        .iter()
        .map(|w| match copied.get(w) {
            Some(source) => repo(source).display().to_string(),
            None if w.starts_with("0.0.0.0:") => "127.0.0.1:0".to_string(),
            None => w.clone(),
        })
        .collect();
    let at = args.iter().position(|w| w == "--").expect("--");
    args.splice(at..at, ["--no-control".to_string()]);
    if let Some(i) = args.iter().position(|w| w == "--workers") {
        args[i + 1] = "2".into();
    }
    let (flags, program) = (&args[..=at], &args[at + 2..]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let run = CorralRun::start(&flags, program, &[("CORRAL_LOG_FORMAT", "json")], 1).await;
    let (status, body) = http_get(run.addrs[0], "/").await.expect("GET /");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["greeting"], "hello from corral", "app.env reached the workers");
    let metrics = run.metrics.expect("metrics");
    assert_eq!(http_get(metrics, "/healthz").await.expect("healthz").0, 200);
    assert_eq!(http_get(metrics, "/readyz").await.expect("readyz").0, 200);
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        assert!(serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()), "CORRAL_LOG_FORMAT=json: {line}");
    }
}

#[test]
fn the_kubernetes_deployment_probes_corral_and_gives_it_time_to_drain() {
    let text = read("contrib/kubernetes/corral.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let pod = &docs[0]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let words = |v: &Value| -> Vec<String> {
        v.as_array().expect("a list").iter().map(|w| w.as_str().expect("a string").to_string()).collect()
    };
    let mut argv = words(&container["command"]);
    argv.extend(words(&container["args"]));
    check_corral_command(&argv, "the Deployment's container");
    let metrics_port = port_of(flag_value(&argv, "--metrics").expect("--metrics"));
    let ports: HashMap<&str, u64> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].as_str().expect("name"), p["containerPort"].as_u64().expect("port")))
        .collect();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = get["port"].as_u64().or_else(|| get["port"].as_str().and_then(|n| ports.get(n).copied()));
        assert_eq!(port, Some(u64::from(metrics_port)), "{probe} on the --metrics port");
    }
    let pre_stop = words(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[0], "sleep");
    let kill_timeout = seconds(flag_value(&argv, "--kill-timeout").expect("--kill-timeout"));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    let pre_stop_secs: u64 = pre_stop[1].parse().expect("seconds");
    assert!(
        grace > pre_stop_secs + 2 * kill_timeout,
        "grace {grace} s: preStop + kill_timeout for workers and orphans"
    );
    assert_eq!(docs[1]["spec"]["selector"], docs[0]["spec"]["selector"]["matchLabels"]);
}

#[test]
fn the_systemd_unit_runs_corral_commands_that_exist() {
    let unit = read("contrib/systemd/corral@.service");
    let mut keys: HashMap<String, String> = HashMap::new();
    for line in unit.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('[')) {
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        keys.insert(key.to_string(), value.to_string());
    }
    assert_eq!(keys["Type"], "notify");
    assert_eq!(keys["KillMode"], "mixed");
    for key in ["ExecStart", "ExecReload"] {
        let argv: Vec<String> = keys[key].split_whitespace().map(String::from).collect();
        check_corral_command(&argv, key);
    }
    let stop = humantime_secs(&keys["TimeoutStopSec"]);
    assert!(stop > Duration::from_secs(5), "TimeoutStopSec over the default kill_timeout");
    let socket = read("contrib/systemd/corral@.socket");
    assert!(socket.contains("[Socket]"), "corral@.socket is a socket unit");
}

fn humantime_secs(text: &str) -> Duration {
    Duration::from_secs(text.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{text}: seconds")))
}
