#!/usr/bin/env python3
"""Soak: `corral run` under load for a long while, with everything an operator throws at it mixed
in, and the primary sampled every so often. Fails when the primary grows.

Under closed-loop HTTP load (a fresh connection per request), at random moments:
  - SIGKILLs of random workers (in bursts, some while a replacement is still starting),
  - rolling reloads (SIGHUP and `corral reload`),
  - scale changes (`corral scale +1 / -1`, between --workers and --workers + 2),
  - in-place upgrades of the primary (`corral upgrade`: same pid, new image),
  - control-socket traffic (`corral status --json`, `corral config`) all along.
Every --sample-every, the actions and the load pause, the cluster settles (every worker back and
serving, transients gone, bounded), and the primary's fds (by kind), threads and RSS are sampled;
growth is judged on the trend: the least of each figure over the last third of the samples
against the least over the first third. Exit 1 when that grew past the bounds (fds +2, threads
+0, RSS +--rss-slack-mib), a zombie was left, the primary died, or the cluster stopped serving.

Build first: cargo build --release --bins. From the project root:
  python3 benches/soak.py --duration 1h
  python3 benches/soak.py --duration 2m --sample-every 30s --bin target/debug/corral   # as CI does"""
import argparse, json, os, random, re, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from storm import Clients, Primary, grown, live_workers, settle, settled, zombies, unix_peers  # noqa: E402

ROOT = os.getcwd()
WORKER = os.path.join(ROOT, "tests", "programs", "activated_worker.py")
SOAK_TOML = ('max_restarts = 100000000\nperiod = "1s"\nmin_uptime = "1ms"\nkill_timeout = "3s"\n'
             '[backoff]\nbase = "5ms"\nmax = "50ms"\n')


def duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 2m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


class Soak:
    def __init__(self, a, d):
        self.a, self.d, self.rng = a, d, random.Random(a.seed or None)
        self.sock = os.path.join(d, "c.sock")
        self.counts = {"kills": 0, "reloads": 0, "reloads_failed": 0, "scales": 0, "upgrades": 0,
                       "upgrades_failed": 0, "control": 0, "control_failed": 0}
        self.workers = a.workers
        self.hold = threading.Lock()   # held by a sample: no action meanwhile
        self.stop = threading.Event()
        self.errors = []

    def ctl(self, *args, timeout=60):
        r = subprocess.run([self.a.bin, *args, "--control", self.sock], capture_output=True, text=True,
                           timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def all_ready(self, limit_s):
        end = time.time() + limit_s
        while time.time() < end:
            try:
                code, out, _ = self.ctl("status", "--json", timeout=10)
                data = json.loads(out)
                rows = data.get("workers", []) if isinstance(data, dict) else data
                if rows and all(str(r.get("state", "")).lower() == "ready" for r in rows):
                    return True
            except (subprocess.TimeoutExpired, ValueError):
                pass
            time.sleep(0.1)
        return False

    def slots(self):
        """How many slots the cluster has (`corral status --json`), None when it does not say."""
        try:
            code, out, _ = self.ctl("status", "--json", timeout=10)
            data = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            return None
        rows = data.get("workers", []) if isinstance(data, dict) else data
        return len(rows) if code == 0 else None

    def scale_to(self, n, limit_s):
        """`corral scale n` until the cluster has n slots (bounded); returns the slots it has."""
        end, have = time.time() + limit_s, self.slots()
        while have != n and time.time() < end:
            try:
                self.ctl("scale", str(n), timeout=60)
            except subprocess.TimeoutExpired:
                pass
            have = self.slots()
            if have != n:
                time.sleep(0.5)
        return have if have is not None else self.workers

    def control_traffic(self):
        while not self.stop.is_set():
            with self.hold:
                try:
                    code, out, _ = self.ctl("status", "--json", timeout=10)
                    ok = code == 0 and isinstance(json.loads(out), (dict, list))
                except (subprocess.TimeoutExpired, ValueError):
                    ok = False
                self.counts["control"] += 1
                self.counts["control_failed"] += not ok
            self.stop.wait(self.rng.uniform(0.2, 0.6))

    def actions(self, pid):
        """The mixed actions, each at its own random pace."""
        next_reload = time.time() + self.rng.uniform(10, 30)
        next_scale = time.time() + self.rng.uniform(10, 25)
        next_upgrade = time.time() + self.rng.uniform(60, 150)
        while not self.stop.is_set():
            with self.hold:
                now = time.time()
                if now >= next_upgrade:
                    # An upgrade is refused while a slot is not ready: the kills paused, wait.
                    self.all_ready(30)
                    try:
                        code, out, err = self.ctl("upgrade", "--timeout", "60s", timeout=90)
                        out += err
                    except subprocess.TimeoutExpired:
                        code, out = None, "no answer in 90 s"
                    self.counts["upgrades"] += 1
                    if code != 0:
                        self.counts["upgrades_failed"] += 1
                        print(f"  upgrade: exit {code}: {out.strip()[-200:]}", flush=True)
                    next_upgrade = now + self.rng.uniform(60, 150)
                elif now >= next_reload:
                    if self.rng.random() < 0.5:
                        os.kill(pid, signal.SIGHUP)
                        ok = True
                    else:
                        try:
                            ok = self.ctl("reload", timeout=120)[0] == 0
                        except subprocess.TimeoutExpired:
                            ok = False
                    self.counts["reloads"] += 1
                    self.counts["reloads_failed"] += not ok
                    next_reload = now + self.rng.uniform(10, 30)
                elif now >= next_scale:
                    up = self.workers < self.a.workers + 2 and (self.workers == self.a.workers or self.rng.random() < 0.5)
                    try:
                        code, _, _ = self.ctl("scale", "+1" if up else "-1", timeout=60)
                    except subprocess.TimeoutExpired:
                        code = None
                    if code == 0:
                        self.counts["scales"] += 1
                    # The cluster's count, whatever the answer was (a timeout may have been applied).
                    self.workers = self.slots() or self.workers
                    next_scale = now + self.rng.uniform(10, 25)
                else:
                    # A burst of kills, 5-25 ms apart.
                    for _ in range(self.rng.randint(1, 6)):
                        ws = live_workers(pid)
                        if ws:
                            try:
                                os.kill(self.rng.choice(ws), signal.SIGKILL)
                                self.counts["kills"] += 1
                            except ProcessLookupError:
                                pass
                        time.sleep(self.rng.uniform(0.005, 0.025))
            self.stop.wait(self.rng.uniform(0.1, 1.5))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=duration, default=duration("1h"))
    ap.add_argument("--sample-every", type=duration, default=duration("60s"))
    ap.add_argument("--warmup", type=duration, default=duration("60s"), help="before the baseline")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--sched", choices=("reuseport", "shared", "sticky"), default="reuseport")
    ap.add_argument("--rss-slack-mib", type=float, default=1.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "corral"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    # A SIGTERM stops the run as Ctrl-C does: the primary started here is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.bin = os.path.abspath(a.bin)
    d = tempfile.mkdtemp(prefix="corral-soak-")
    os.chmod(d, 0o700)
    cfg = os.path.join(d, "corral.toml")
    with open(cfg, "w") as f:
        f.write(SOAK_TOML)
    soak, prim, clients, threads = Soak(a, d), None, None, []
    t0, samples, bad = time.time(), [], []
    try:
        prim = Primary([a.bin, "run", "--config", cfg, "-w", str(a.workers), "--sched", a.sched,
                        "--listen", "127.0.0.1:0", "--control", soak.sock, "--", "python3", WORKER])
        pid, addr = prim.p.pid, prim.addr
        clients = Clients(addr, a.clients, limit_s=a.duration + a.warmup + 600)
        threads = [threading.Thread(target=soak.actions, args=(pid,), daemon=True),
                   threading.Thread(target=soak.control_traffic, daemon=True)]
        for t in threads:
            t.start()
        base, end = None, t0 + a.warmup + a.duration
        next_sample = t0 + a.warmup
        while True:
            soak.stop.wait(max(0.0, min(next_sample, end) - time.time()))
            if prim.p.poll() is not None:
                bad.append(f"the primary exited ({prim.p.returncode}): " + " | ".join(prim.lines[-5:]))
                break
            last = time.time() >= end
            with soak.hold:
                clients.pause()
                # Sampled at the same size every time: back to --workers, the drained ones gone.
                # What the cluster has, not what this script counted: a `scale` that timed out
                # here may still have been applied there.
                soak.workers = soak.scale_to(a.workers, limit_s=60)
                back, why = back_and_serving(pid, addr, soak.workers, limit_s=60)
                gone = time.time() + 30
                while len(live_workers(pid)) != soak.workers and time.time() < gone:
                    time.sleep(0.1)
                bounds = {"rss_kib": a.rss_slack_mib * 1024}
                if base:
                    now = settle(pid, base, limit_s=25, **bounds)
                else:
                    # The baseline: the least of every figure over a quiet while.
                    now, quiet = settled(pid), time.time() + 20
                    while time.time() < quiet:
                        s = settled(pid)
                        now = {"fds": min(now["fds"], s["fds"]), "kinds": s["kinds"] if s["fds"] < now["fds"] else now["kinds"],
                               "threads": min(now["threads"], s["threads"]), "rss": min(now["rss"], s["rss"])}
                z = zombies(pid)
                if z:
                    time.sleep(0.5)
                    z = [p for p in zombies(pid) if p in z]
                ok_after = sum(1 for _ in range(20) if _served(addr))
                clients.resume()
            t = time.time() - t0
            row = dict(now, t=round(t), workers=soak.workers, zombies=len(z), **soak.counts,
                       served=clients.ok, failed=clients.failed)
            samples.append(row)
            if base is None:
                base = now
            growth = []  # judged at the end, on the trend (see below)
            print(f"[{t / 60:6.1f} min] fds {now['fds']} ({now['kinds']}) threads {now['threads']} "
                  f"RSS {now['rss'] / 1024:.1f} MiB, workers {soak.workers}, zombies {len(z)}, {soak.counts}, "
                  f"served {clients.ok}/failed {clients.failed}" + (f"  GREW: {growth}" if growth else ""), flush=True)
            if growth:
                bad.append(f"at {t / 60:.1f} min: " + ", ".join(growth))
                for l in unix_peers(pid)[:5]:
                    print("  peerless: " + " ".join(l), flush=True)
            if z:
                bad.append(f"at {t / 60:.1f} min: zombies {z[:5]}")
            if not back or ok_after < 20:
                bad.append(f"at {t / 60:.1f} min: not serving (back {back}: {why}; {ok_after}/20)")
            if last:
                break
            next_sample = time.time() + a.sample_every
    finally:
        soak.stop.set()
        for t in threads:
            t.join(120)
        if clients:
            clients.close()
        if prim:
            prim.close()
        shutil.rmtree(d, ignore_errors=True)
    # Growth is a trend, not a noisy sample (an upgrade's new image, the allocator): the least
    # of each figure over the last third of the samples against the least over the first third.
    k = max(1, len(samples) // 3)
    low = lambda rows: {"fds": min(r["fds"] for r in rows), "threads": min(r["threads"] for r in rows),
                        "rss": min(r["rss"] for r in rows)}
    first, last = (low(samples[:k]), low(samples[-k:])) if samples else ({}, {})
    if samples:
        growth = grown(first, last, rss_kib=a.rss_slack_mib * 1024)
        if growth:
            bad.append("grew from the first third of the samples to the last: " + ", ".join(growth))
    final = samples[-1] if samples else {}
    if samples:
        print(f"soak {a.duration / 60:.0f} min (+{a.warmup:.0f} s warm-up), corral run --sched {a.sched} "
              f"-w {a.workers}, {a.clients} clients: {final['kills']} kills, {final['reloads']} reloads "
              f"({final['reloads_failed']} failed), {final['scales']} scale changes, {final['upgrades']} upgrades "
              f"({final['upgrades_failed']} failed), {final['control']} control requests ({final['control_failed']} failed), "
              f"{final['served']} served / {final['failed']} failed; primary (least of the first / last {k} samples) "
              f"fds {first['fds']} -> {last['fds']} (max {max(s['fds'] for s in samples)}), threads {first['threads']} -> "
              f"{last['threads']}, RSS {first['rss'] / 1024:.1f} -> {last['rss'] / 1024:.1f} MiB "
              f"(max {max(s['rss'] for s in samples) / 1024:.1f}), zombies {max(s['zombies'] for s in samples)}, "
              f"{len(samples)} samples")
    if bad:
        print("FAILED: " + "; ".join(bad[:10]))
        sys.exit(1)
    print("ok")


def back_and_serving(pid, addr, n, limit_s):
    """(True, "") once n workers are live and n requests in a row were answered 200; else
    (False, what was last seen) after limit_s."""
    from storm import get
    end, why = time.time() + limit_s, ""
    while time.time() < end:
        live = live_workers(pid)
        if len(live) < n:
            why = f"{len(live)} live workers of {n}"
        else:
            codes = []
            for _ in range(n):
                try:
                    codes.append(get(addr, 3))
                except Exception as e:  # any failure of one request is a miss, never a crash
                    codes.append(type(e).__name__)
            if all(c == 200 for c in codes):
                return True, ""
            why = f"{len(live)} live workers, answers {codes}"
        time.sleep(0.05)
    return False, why


def _served(addr):
    from storm import get
    try:
        return get(addr, 3) == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
