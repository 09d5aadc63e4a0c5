//! How real servers end on corral's stop signal, each counted as a clean stop during a drain
//! (a rolling reload) and a stop: uvicorn and puma stop gracefully, then re-raise SIGTERM
//! and die "killed by SIGTERM"; waitress and Node without a handler die at once; others exit
//! 0. None of these is a crash (no restart, no failure, `corral run` exits 0). The same
//! signal from someone else while the worker serves *is* a crash, and the slot restarts.

mod common;

use common::*;
use nix::sys::signal::Signal;

/// A Python fd-3 server answering `0 PID`; on SIGTERM it does what `style` says.
fn worker(style: &str) -> Vec<String> {
    let on_term = match style {
        // Graceful, then the default action: dies by the signal (uvicorn, puma).
        "reraise" => {
            "def term(*_):\n    s.close()\n    signal.signal(signal.SIGTERM, signal.SIG_DFL)\n    os.kill(os.getpid(), signal.SIGTERM)\nsignal.signal(signal.SIGTERM, term)\n"
        }
        // No handler: the default action at once (waitress, Node without a handler).
        "default" => "",
        // Graceful, exit 0 (gunicorn, Express with a handler).
        "exit0" => "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n",
        _ => unreachable!("a style of this test"),
    };
    let program = format!(
        "import os, signal, socket, sys\ns = socket.socket(fileno=3)\n{on_term}while True:\n    c, _ = s.accept()\n    c.recv(65536)\n    body = '0 %d' % os.getpid()\n    c.sendall(('HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s' % (len(body), body)).encode())\n    c.close()\n"
    );
    vec!["python3".into(), "-c".into(), program]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_by_corrals_own_stop_signal_is_clean_in_a_drain_and_a_stop() {
    for style in ["reraise", "default", "exit0"] {
        let run =
            CorralRun::start(&["-w", "2", "-l", "127.0.0.1:0", "--ready", "delay:100"], &worker(style), &[], 1).await;
        let addr = run.addrs[0];
        let before = until_pids(addr, "two workers answer", |p| p.len() == 2).await;
        // A rolling reload drains each worker with SIGTERM.
        run.signal(Signal::SIGHUP);
        let after = until_pids(addr, "both replaced", |p| p.len() == 2 && p.is_disjoint(&before)).await;
        let gone = wait_gone(&before.iter().copied().collect::<Vec<_>>(), TIMEOUT).await;
        assert!(gone.is_empty(), "{style}: drained workers still alive: {gone:?}");
        run.signal(Signal::SIGTERM);
        let (code, stderr) = run.exit().await;
        assert_eq!(code, Some(0), "{style}: {stderr}");
        for crash in ["restarting worker", "replacement failed", "gave up"] {
            assert!(!stderr.contains(crash), "{style}: a clean stop counted as a crash ({crash}): {stderr}");
        }
        assert!(wait_gone(&after.iter().copied().collect::<Vec<_>>(), TIMEOUT).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_signal_from_someone_else_is_a_crash_and_restarts_the_slot() {
    let run =
        CorralRun::start(&["-w", "2", "-l", "127.0.0.1:0", "--ready", "delay:100"], &worker("reraise"), &[], 1).await;
    let addr = run.addrs[0];
    let before = until_pids(addr, "two workers answer", |p| p.len() == 2).await;
    let victim = *before.iter().min().expect("a pid");
    kill(victim, Signal::SIGTERM);
    until_pids(addr, "the slot restarted", |p| p.len() == 2 && !p.contains(&victim)).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("restarting worker"), "an outside SIGTERM is a crash: {stderr}");
}
