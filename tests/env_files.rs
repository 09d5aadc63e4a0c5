//! `corral run --env-file` and `env_files` in `corral.toml`: what the workers see (later files,
//! then `[env]` / `-e`, win), a reload that re-reads them, and the refusals (exit 2 at the
//! start, a refused reload), which name the file and the line and never a value.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use nix::sys::signal::Signal;
use tokio::process::Command;

async fn env_of(addr: std::net::SocketAddr, name: &str) -> String {
    let (status, body) = http_get(addr, &format!("/env/{name}")).await.expect("GET /env");
    assert_eq!(status, 200);
    body
}

/// `corral ARGS` to its end: exit code, stdout and stderr.
async fn corral(args: &[&str]) -> (Option<i32>, String, String) {
    let out =
        tokio::time::timeout(TIMEOUT, Command::new(CORRAL).args(args).stdin(Stdio::null()).kill_on_drop(true).output())
            .await
            .expect("in time")
            .expect("corral runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_files_then_dash_e_win_and_the_first_files_values_stay() {
    let dir = scratch_dir("env-precedence");
    let (a, b) = (dir.join("a.env"), dir.join("b.env"));
    std::fs::write(&a, "# base\nX=1\nY=a\nexport W='from a'\nQUOTED=\"two\nlines\"\n").expect("a");
    std::fs::write(&b, "X=2\n").expect("b");
    let args =
        ["-w", "1", "-l", "127.0.0.1:0", "--no-control", "--env-file", path(&a), "--env-file", path(&b), "-e", "Y=b"];
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    let addr = run.addrs[0];
    assert_eq!(env_of(addr, "X").await, "2", "B over A");
    assert_eq!(env_of(addr, "Y").await, "b", "-e over the files");
    assert_eq!(env_of(addr, "W").await, "from a", "A's own kept");
    assert_eq!(env_of(addr, "QUOTED").await, "two\nlines");
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("from a"), "values are never logged:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_env_files_and_a_bad_one_refuses_it() {
    let dir = scratch_dir("env-reload");
    let (env, toml, sock) = (dir.join("app.env"), dir.join("corral.toml"), dir.join("control.sock"));
    std::fs::write(&env, "X=1\nZ=from-file\n").expect("env");
    let file = format!(
        "program = \"python3\"\nargs = [{:?}]\nworkers = 1\nlisten = [\"127.0.0.1:0\"]\nenv_files = [{:?}]\n[env]\nZ = \"from-toml\"\n",
        test_program("activated_worker.py"),
        path(&env)
    );
    std::fs::write(&toml, file).expect("toml");
    let run = CorralRun::start(&["-c", path(&toml), "--control", path(&sock)], &[], &[], 1).await;
    let addr = run.addrs[0];
    assert_eq!((env_of(addr, "X").await, env_of(addr, "Z").await), ("1".into(), "from-toml".into()));

    std::fs::write(&env, "X=3\n").expect("env");
    let (code, out, err) = corral(&["reload", "--control", path(&sock)]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(env_of(addr, "X").await, "3", "the new workers read the file again");

    std::fs::write(&env, "X=4\nthis is not dotenv\n").expect("env");
    let (code, out, err) = corral(&["reload", "--control", path(&sock)]).await;
    assert_eq!(code, Some(1), "a malformed env file refuses the reload: {out}{err}");
    let said = format!("{out}{err}");
    assert!(said.contains(&format!("{}:2", path(&env))), "names the file and the line: {said}");
    assert_eq!(env_of(addr, "X").await, "3", "the old workers serve on");

    std::fs::remove_file(&env).expect("rm");
    let (code, out, err) = corral(&["reload", "--control", path(&sock)]).await;
    assert_eq!(code, Some(1), "a missing env file refuses the reload: {out}{err}");
    assert!(format!("{out}{err}").contains(path(&env)), "{out}{err}");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.exit().await.0, Some(0));
}

#[tokio::test]
async fn a_malformed_or_missing_env_file_refuses_the_start_with_exit_2() {
    let dir = scratch_dir("env-refused");
    let (bad, absent) = (dir.join("bad.env"), dir.join("absent.env"));
    std::fs::write(&bad, "OK=1\n=secret-value\n").expect("bad");
    let program = test_program("activated_worker.py");
    for (file, want) in [(&bad, format!("{}:2", path(&bad))), (&absent, path(&absent).to_string())] {
        let (code, out, err) =
            corral(&["run", "-l", "127.0.0.1:0", "--no-control", "--env-file", path(file), "--", "python3", &program])
                .await;
        assert_eq!(code, Some(2), "{out}{err}");
        assert!(err.contains(&want), "names {want}: {err}");
        assert!(!out.contains("listening on"), "nothing started: {out}");
        assert!(!err.contains("secret-value"), "the line's text is never shown: {err}");
    }
    // The same from the file, and in JSON: one JSON object.
    let toml = dir.join("corral.toml");
    std::fs::write(&toml, format!("env_files = [{:?}]\n[log]\nformat = \"json\"\n", path(&bad))).expect("toml");
    let (code, _, err) =
        corral(&["run", "-c", path(&toml), "-l", "127.0.0.1:0", "--no-control", "--", "python3", &program]).await;
    assert_eq!(code, Some(2), "{err}");
    let line: serde_json::Value = serde_json::from_str(err.trim()).expect("one JSON object");
    assert_eq!(line["level"], "error");
    assert!(line["message"].as_str().is_some_and(|m| m.contains(&format!("{}:2", path(&bad)))), "{line}");
}
