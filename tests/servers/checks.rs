//! The checks of one server in one scheduling mode, as `../shared/acceptance/real-programs`
//! makes them: a. both workers answer with the right peer; b. keep-alive within 1.5× of the
//! server alone; c. a SIGKILLed worker is replaced and its children are gone; d. SIGHUP under
//! light load fails nothing; e. SIGTERM exits 0 and leaves no process. Every wait is bounded;
//! what falls short is collected, and the test fails with all of it and the figures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::http::{LightLoad, keep_alive, pids, who};
use super::install::{Installed, Needs, ensure};
use super::procs::{Tracker, tree, wait_gone, with_tree, worker_of};
use super::recipe;
use super::run::{Alone, Corral, free_port, scratch};
use crate::common::kill;

/// A real server: its recipe (`docs/src/recipes/NAME.md`), what it needs installed, and how it
/// runs alone on its own socket (its own bind on a port, or `None`: the recipe's program on
/// a socket from `systemd-socket-activate`).
pub struct Server {
    pub name: &'static str,
    pub needs: Needs,
    pub alone: Option<fn(&Installed, u16) -> Vec<String>>,
    /// How many requests of step d's load a rolling reload in **shared** scheduling may lose
    /// to the server's own shutdown, as a connection reset (or closed) before any response: a
    /// server that closes connections it has accepted but not read yet when its shutdown
    /// begins (uvicorn). One per replaced worker at most; 0 for the others. In reuse-port
    /// scheduling nothing may be lost: corral steers new connections away from a worker and
    /// lets it empty its own queue before it tells it to stop. One shared socket cannot be
    /// steered.
    pub resets_per_stop: u64,
}

/// Keep-alive behind corral may be this much slower than the server alone.
const KEEP_ALIVE_RATIO: f64 = 1.5;

/// Keep-alive is timed up to this many times, the best ratio counting: on 2 cores beside other
/// tests (and builds), the median of sub-millisecond requests flips between "scheduled at once"
/// and "waited for a CPU" (seen: 1.7x for the same server 3 times in a row, 1.0x the next
/// run). A delay that corral adds to every request (Nagle: 40 ms) fails every try.
const KEEP_ALIVE_TRIES: usize = 5;

/// What a check found: the shortfalls, and the figures.
#[derive(Default)]
struct Report {
    short: Vec<String>,
    figures: Vec<String>,
}

impl Report {
    fn short(&mut self, what: impl Into<String>) {
        self.short.push(what.into());
    }

    fn figure(&mut self, what: impl Into<String>) {
        self.figures.push(what.into());
    }
}

/// Runs every check of `server` under `corral run --sched SCHED`; panics with what fell short.
pub async fn check(server: &Server, sched: &str) {
    let name = format!("{}/{sched}", server.name);
    let installed = ensure(server.needs);
    let words = recipe::command(server.name);
    let dir = scratch(&format!("{}-{sched}", server.name));
    let args = recipe::for_test(&words, sched, &dir.join("control.sock"));
    let mut report = Report::default();
    let mut corral = Corral::spawn(&args, &installed, dir);
    // From the start: workers that die early are counted too.
    let tracker = Tracker::start(corral.pid);
    // The server alone starts beside corral.
    let port = free_port();
    let program = recipe::program(&words);
    let alone = Alone::start(server.alone.map(|f| f(&installed, port)), &program, port, &installed);
    let (alone, ()) = tokio::join!(alone, corral.listening());
    let alone = alone.map_err(|e| report.short(format!("the server {e}"))).ok();
    match corral.addr {
        None => {
            let exit = corral.exited().map_or("still running".to_string(), |s| format!("exited ({s})"));
            report.short(format!("no `listening on` line within 30 s (corral {exit}); {}", corral.why()));
        }
        Some(addr) => steps(server, sched == "shared", &mut corral, addr, alone.as_ref(), &tracker, &mut report).await,
    }
    stop(&mut corral, &tracker, &mut report).await;
    drop(alone);
    let figures = report.figures.join(", ");
    eprintln!("{name}: {}| {figures}", if report.short.is_empty() { "ok " } else { "FAIL " });
    assert!(
        report.short.is_empty(),
        "{name}: {}\n- {}\nfigures: {figures}",
        words.join(" "),
        report.short.join("\n- ")
    );
}

/// Steps a–d on a started corral.
async fn steps(
    server: &Server,
    shared: bool,
    corral: &mut Corral,
    addr: SocketAddr,
    alone: Option<&Alone>,
    tracker: &Tracker,
    report: &mut Report,
) {
    let Some(workers) = both_answer(corral, addr, shared, tracker, report).await else { return };
    keep_alive_side_by_side(addr, alone, tracker, report).await;
    let Some(replaced) = sigkill(corral, addr, &workers, tracker, report).await else { return };
    let allowed_per_stop = if shared { server.resets_per_stop } else { 0 };
    sighup(allowed_per_stop, corral, addr, replaced, tracker, report).await;
}

/// a. Within 100 requests on new connections (4 at a time), both workers (corral's children)
/// answer `/who`, with peer 127.0.0.1 and the client's own port. Returns the workers and the
/// pids that answered.
///
/// On one shared socket the kernel wakes every worker waiting in accept, and one of them may
/// take a lone client's connections, even 4 at once, again and again (seen: 100 of 100 on a
/// loaded machine, the other worker serving all along): there, up to 300 more connections
/// may bring the second worker, and the figures say how many it took.
async fn both_answer(
    corral: &mut Corral,
    addr: SocketAddr,
    shared: bool,
    tracker: &Tracker,
    report: &mut Report,
) -> Option<(Vec<u32>, BTreeSet<u32>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while who(addr, Duration::from_secs(2)).await.is_err() {
        if corral.exited().is_some() || Instant::now() >= deadline {
            report.short(format!("nothing answered /who within 20 s of `listening on`; {}", corral.why()));
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sample = Sample::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample.total() < 100 && Instant::now() < deadline {
        sample.burst(addr).await;
    }
    let workers_of = |sample: &Sample| -> BTreeSet<u32> {
        sample.answers.iter().filter_map(|&p| worker_of(p, corral.pid)).collect()
    };
    let first = sample.total();
    if shared && workers_of(&sample).len() < 2 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while sample.total() < first + 300 && workers_of(&sample).len() < 2 && Instant::now() < deadline {
            sample.burst(addr).await;
        }
        report.figure(format!("shared: {} connections before a second worker answered", sample.total()));
    }
    let Sample { answers, errors, bad_peer } = sample;
    let pids: BTreeSet<u32> = answers.iter().copied().collect();
    tracker.add_pids(pids.iter().copied());
    tracker.sample();
    let worker: HashMap<u32, Option<u32>> = pids.iter().map(|&p| (p, worker_of(p, corral.pid))).collect();
    let workers: Vec<u32> = worker.values().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let split: Vec<String> =
        workers.iter().map(|w| answers.iter().filter(|&p| worker[p] == Some(*w)).count().to_string()).collect();
    let total = answers.len() + errors.values().sum::<u32>() as usize;
    report.figure(format!("{} workers answered ({} of {total})", workers.len(), split.join("/")));
    if workers.len() != 2 {
        report.short(format!("{} worker(s) answered {total} requests, want 2 (pids {pids:?})", workers.len()));
    }
    let outside: Vec<&u32> = worker.iter().filter(|(_, w)| w.is_none()).map(|(p, _)| p).collect();
    if !outside.is_empty() {
        report.short(format!("pids outside corral's tree answered: {outside:?}"));
    }
    if !errors.is_empty() {
        report.short(format!("{} of {total} requests failed: {errors:?}; {}", total - answers.len(), corral.why()));
    }
    match bad_peer.first() {
        Some(first) => report.short(format!("{} answers report a wrong peer, e.g. {first}", bad_peer.len())),
        None if !answers.is_empty() => report.figure("peer 127.0.0.1 and the client's port"),
        None => {}
    }
    (!workers.is_empty()).then_some((workers, pids))
}

/// Step a's requests: the pids that answered, the failures, the wrong peers.
#[derive(Default)]
struct Sample {
    answers: Vec<u32>,
    errors: BTreeMap<String, u32>,
    bad_peer: Vec<String>,
}

impl Sample {
    fn total(&self) -> usize {
        self.answers.len() + self.errors.values().sum::<u32>() as usize
    }

    /// 4 `GET /who` at once, each on a new connection: arriving together, they wake more than
    /// one worker.
    async fn burst(&mut self, addr: SocketAddr) {
        let limit = Duration::from_secs(5);
        let burst = tokio::join!(who(addr, limit), who(addr, limit), who(addr, limit), who(addr, limit));
        for answer in [burst.0, burst.1, burst.2, burst.3] {
            match answer {
                Ok(w) => {
                    if !w.peer_is_right() {
                        self.bad_peer.push(format!("{:?}:{:?} (client port {})", w.peer, w.peer_port, w.local_port));
                    }
                    self.answers.push(w.pid);
                }
                Err(e) => *self.errors.entry(e.to_string()).or_default() += 1,
            }
        }
    }
}

/// b. Keep-alive: the median of 30 requests on one persistent connection behind corral is
/// within 1.5× of the same server alone, the requests alternating between the two; best of up
/// to [`KEEP_ALIVE_TRIES`] tries (the machine may be busy with other work).
async fn keep_alive_side_by_side(addr: SocketAddr, alone: Option<&Alone>, tracker: &Tracker, report: &mut Report) {
    let Some(alone) = alone else { return };
    tracker.pause(true);
    let mut best: Option<(f64, f64, f64, usize)> = None;
    let mut tries = 0;
    for _ in 0..KEEP_ALIVE_TRIES {
        tries += 1;
        match keep_alive(&[addr, alone.addr], 30, 5).await {
            Ok((medians, closed)) => {
                let ratio = medians[0] / medians[1];
                if best.is_none_or(|b| ratio < b.0) {
                    best = Some((ratio, medians[0], medians[1], closed[0]));
                }
                if ratio <= KEEP_ALIVE_RATIO {
                    break;
                }
            }
            Err(e) => {
                report.short(format!("keep-alive requests failed: {e}"));
                break;
            }
        }
    }
    tracker.pause(false);
    let Some((ratio, behind, alone_ms, closed)) = best else { return };
    let closes = if closed > 0 { "; the server closes every connection" } else { "" };
    report.figure(format!(
        "keep-alive {behind:.2} ms vs {alone_ms:.2} alone on {} ({ratio:.2}x{closes}; {tries} tr{})",
        alone.how,
        if tries == 1 { "y" } else { "ies" }
    ));
    if ratio > KEEP_ALIVE_RATIO {
        report.short(format!(
            "keep-alive median {behind:.2} ms behind corral vs {alone_ms:.2} ms alone on {} ({ratio:.1}x, more \
             than {KEEP_ALIVE_RATIO}x; best of {tries})",
            alone.how
        ));
    }
}

/// c. A SIGKILLed worker is replaced (a new pid answers) within 10 s, and its children are
/// gone within 3 s. Returns when the replacement answered.
async fn sigkill(
    corral: &mut Corral,
    addr: SocketAddr,
    (workers, answered): &(Vec<u32>, BTreeSet<u32>),
    tracker: &Tracker,
    report: &mut Report,
) -> Option<Instant> {
    let victim = workers[0];
    let children = tree(victim);
    tracker.add(with_tree(victim));
    kill(victim, Signal::SIGKILL);
    let killed = Instant::now();
    let orphans = tokio::spawn(async move { wait_gone(&children, Duration::from_secs(3)).await });
    let mut replaced = None;
    while replaced.is_none() && killed.elapsed() < Duration::from_secs(10) {
        match who(addr, Duration::from_secs(2)).await {
            Ok(w) if !answered.contains(&w.pid) => {
                tracker.add_pids([w.pid]);
                replaced = Some(Instant::now());
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let left = orphans.await.expect("orphans task");
    match replaced {
        Some(at) => report.figure(format!("SIGKILL: a new pid answered in {} ms", (at - killed).as_millis())),
        None => {
            report.short(format!("no new pid answered within 10 s of SIGKILLing worker {victim}; {}", corral.why()))
        }
    }
    if left.is_empty() {
        report.figure("the killed worker's children gone");
    } else {
        report.short(format!("the SIGKILLed worker's children still alive 3 s later: {left:?}"));
    }
    replaced
}

/// The corral workers that `n` requests find answering now (at least 2), with the pids.
async fn two_workers(corral: &Corral, addr: SocketAddr, tracker: &Tracker) -> Option<(Vec<u32>, Vec<u32>)> {
    let answering = pids(addr, 20, Duration::from_secs(5)).await;
    tracker.add_pids(answering.iter().copied());
    let workers: BTreeSet<u32> = answering.iter().filter_map(|&p| worker_of(p, corral.pid)).collect();
    (workers.len() >= 2).then(|| (workers.into_iter().collect(), answering))
}

/// d. SIGHUP (a rolling reload) under light load (a request every ~20 ms, a new connection
/// each, for at least 4 s) fails no request, and the old pids are gone within 15 s.
async fn sighup(
    resets_per_stop: u64,
    corral: &mut Corral,
    addr: SocketAddr,
    replaced: Instant,
    tracker: &Tracker,
    report: &mut Report,
) {
    // corral refuses a rolling reload while a slot's worker is not ready yet: the replacement
    // first becomes ready (`corral status` exits 0 once every slot is).
    if !corral.all_ready(Duration::from_secs(20)).await {
        report.short(format!(
            "`corral status` did not show every slot ready within 20 s of the SIGKILL; {}",
            corral.why()
        ));
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        found = two_workers(corral, addr, tracker).await;
    }
    let Some((workers, before)) = found else {
        report.short(format!("2 workers did not answer again within 15 s of the SIGKILL; {}", corral.why()));
        return;
    };
    let old: HashMap<u32, u64> = workers.iter().flat_map(|&w| with_tree(w)).collect();
    tracker.add(old.clone());
    let load = LightLoad::start(addr);
    let started = Instant::now();
    while load.ok() < 20 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(corral.pid, Signal::SIGHUP);
    let hup = Instant::now();
    let left = wait_gone(&old, Duration::from_secs(15)).await;
    let gone_in = hup.elapsed();
    let after = pids(addr, 20, Duration::from_secs(5)).await;
    tracker.add_pids(after.iter().copied());
    // The load runs at least 4 s, and a while past the reload.
    tokio::time::sleep_until((started + Duration::from_secs(4)).max(Instant::now() + Duration::from_millis(500))).await;
    let (ok, failed) = load.finish().await;
    let lost: u64 = failed.values().sum();
    let resets: u64 = failed.iter().filter(|(e, _)| is_reset(e)).map(|(_, n)| n).sum();
    let allowed = resets_per_stop * workers.len() as u64;
    if lost > resets || resets > allowed {
        report.short(format!("SIGHUP under light load: {lost} of {} requests failed {failed:?}", ok + lost));
    } else if lost > 0 {
        report.figure(format!(
            "{lost} request(s) reset by the server's own shutdown (at most {resets_per_stop} per stop allowed)"
        ));
    }
    if !left.is_empty() {
        report
            .short(format!("old pids still alive 15 s after SIGHUP: {left:?} (replaced {:?} ago)", replaced.elapsed()));
    } else if after.is_empty() || after.iter().any(|p| before.contains(p)) {
        report.short(format!("after SIGHUP /who is answered by {after:?} (old: {before:?})"));
    }
    if left.is_empty() && lost <= allowed {
        report.figure(format!(
            "SIGHUP: {lost} of {} failed, old pids gone in {:.1} s",
            ok + lost,
            gone_in.as_secs_f64()
        ));
    }
}

/// Whether a request failed as a server that closes an accepted connection unread does:
/// reset, or closed before any response.
fn is_reset(error: &str) -> bool {
    error.contains("Connection reset by peer") || error.contains("closed before the response")
}

/// e. SIGTERM: corral exits 0 within 30 s, and no process of the tree (every pid seen) is
/// left 3 s later.
async fn stop(corral: &mut Corral, tracker: &Tracker, report: &mut Report) {
    tracker.sample();
    if let Some(status) = corral.exited() {
        if corral.addr.is_some() {
            report.short(format!("corral exited ({status}) before SIGTERM; {}", corral.why()));
        }
    } else {
        kill(corral.pid, Signal::SIGTERM);
        let asked = Instant::now();
        match corral.wait(Duration::from_secs(30)).await {
            None => report.short(format!("corral still running 30 s after SIGTERM; {}", corral.why())),
            Some(s) if s.code() == Some(0) => {
                report.figure(format!("SIGTERM: exit 0 in {:.1} s", asked.elapsed().as_secs_f64()))
            }
            Some(s) => report.short(format!("{s} after SIGTERM (want exit 0); {}", corral.why())),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !tracker.left().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = tracker.left();
    if left.is_empty() {
        report.figure(format!("none of {} pids left", tracker.count()));
    } else {
        report.short(format!("processes left 3 s after corral stopped: {left:?} (of {} seen)", tracker.count()));
    }
}
