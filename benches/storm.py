#!/usr/bin/env python3
"""A kill storm under load, and what it leaves in the primary.

Starts a cluster, loads it with closed-loop clients (a fresh connection per request), SIGKILLs
random live workers 5-25 ms apart (most land while a replacement is still starting), waits for
every worker to be back, and compares the primary's fds (by kind), threads and RSS with a
baseline taken after a warm-up storm. Exit 1 when anything grew past the bounds (fds +2, RSS
+1 MiB, threads +0), a zombie child is left, or the cluster does not serve afterwards.

Targets:
  --target example  the library example 05_production_patterns, with --sched rr|lc|shared|
                    reuseport|sticky (restart limits lifted in its corral.toml)
  --target run      `corral run --sched rr|reuseport` with tests/programs/activated_worker.py

Build first: cargo build --release --bins --examples. Run from the project root:
  python3 benches/storm.py --target example --sched rr --kills 10000
  python3 benches/storm.py --target run --sched reuseport --kills 10000

`--pids-of PID` skips starting anything and storms the running primary PID (its address with
--addr HOST:PORT)."""
import argparse, collections, http.client, os, random, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.getcwd()
RELEASE = os.path.join(ROOT, "target", "release")
WORKER = os.path.join(ROOT, "tests", "programs", "activated_worker.py")
STORM_TOML = ('workers = {workers}\nsched = "{sched}"\nmax_restarts = 100000000\nperiod = "1s"\n'
              'min_uptime = "1ms"\n[backoff]\nbase = "1ms"\nmax = "5ms"\n')
SCHED = {"rr": "round robin", "lc": "least connections", "shared": "shared", "reuseport": "reuse-port",
         "sticky": "sticky"}


# ---------------------------------------------------------------- the primary, seen from /proc

def snapshot(pid):
    """fds by kind, threads, RSS (KiB) of pid."""
    kinds = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kinds[next((k for k in ("socket", "pipe", "anon_inode") if link.startswith(k + ":")), "other")] += 1
    with open(f"/proc/{pid}/status") as f:
        st = f.read()
    return {"fds": sum(kinds.values()), "kinds": dict(kinds),
            "threads": int(re.search(r"^Threads:\s+(\d+)", st, re.M).group(1)),
            "rss": int(re.search(r"^VmRSS:\s+(\d+)", st, re.M).group(1))}


def settled(pid, n=6, gap=0.15):
    """The least of a few samples: transients (a connection being passed) only ever add."""
    s = []
    for _ in range(n):
        s.append(snapshot(pid))
        time.sleep(gap)
    low = min(s, key=lambda x: x["fds"])
    return {"fds": low["fds"], "kinds": low["kinds"], "threads": min(x["threads"] for x in s),
            "rss": min(x["rss"] for x in s)}


def grown(base, now, fds=2, rss_kib=1024, threads=0):
    out = []
    if now["fds"] > base["fds"] + fds:
        out.append(f"fds {base['fds']} -> {now['fds']}")
    if now["rss"] > base["rss"] + rss_kib:
        out.append(f"RSS {base['rss']} -> {now['rss']} KiB")
    if now["threads"] > base["threads"] + threads:
        out.append(f"threads {base['threads']} -> {now['threads']}")
    return out


def settle(pid, base, limit_s=15, **bounds):
    """Waits (bounded) for transients to go (tokio's idle blocking threads retire after 10 s)."""
    end, now = time.time() + limit_s, settled(pid)
    while grown(base, now, **bounds) and time.time() < end:
        now = settled(pid)
    return now


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        v = s[s.rindex(")") + 2:].split()
        return v[0], int(v[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid):
    """(child pid, state) of every child of pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st and st[1] == pid:
                out.append((int(d), st[0]))
    return out


def live_workers(pid):
    return [k for k, st in children(pid) if st not in "ZX"]


def zombies(pid):
    return sorted(k for k, st in children(pid) if st == "Z")


def unix_peers(pid):
    """The primary's Unix sockets whose peer is gone (`ss -xp`: peer inode 0 or not open anywhere)."""
    try:
        out = subprocess.run(["ss", "-xpan"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    mine = [l.split() for l in out.splitlines() if f"pid={pid}," in l and l.split()[:2] in (["u_seq", "ESTAB"], ["u_str", "ESTAB"])]
    return [f[:2] + f[4:8] for f in mine if f[6:8] == ["*", "0"]]


# ---------------------------------------------------------------- load

def get(addr, timeout=2):
    c = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class Clients:
    """n closed-loop client threads; pausable; bounded in time."""

    def __init__(self, addr, n, limit_s):
        self.addr, self.go, self.stop = addr, threading.Event(), threading.Event()
        self.lock, self.ok, self.failed, self.busy = threading.Lock(), 0, 0, 0
        self.end = time.time() + limit_s
        self.go.set()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop.is_set() and time.time() < self.end:
            if not self.go.is_set():
                self.go.wait(0.05)
                continue
            with self.lock:
                self.busy += 1
            try:
                good = get(self.addr) == 200
            except Exception:
                good = False
            with self.lock:
                self.busy -= 1
                self.ok += good
                self.failed += not good

    def pause(self):
        self.go.clear()
        end = time.time() + 5
        while self.busy and time.time() < end:
            time.sleep(0.02)

    def resume(self):
        self.go.set()

    def close(self):
        self.stop.set()
        self.go.set()
        for t in self.threads:
            t.join(5)


def storm(primary, n, limit_s, rng, alive=lambda: True):
    """n SIGKILLs of random live workers of primary, 5-25 ms apart; returns how many were sent."""
    done, end = 0, time.time() + limit_s
    while done < n and time.time() < end and alive():
        ws = live_workers(primary)
        if ws:
            try:
                os.kill(rng.choice(ws), signal.SIGKILL)
                done += 1
            except ProcessLookupError:
                pass
        time.sleep(rng.uniform(0.005, 0.025))
    return done


def all_back(primary, addr, n, limit_s=30):
    end = time.time() + limit_s
    while time.time() < end:
        if len(live_workers(primary)) >= n:
            try:
                if all(get(addr) == 200 for _ in range(n)):
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- starting a cluster

class Primary:
    """A primary started in a session of its own, its output read in the background."""

    def __init__(self, argv, timeout=30):
        self.lines, self.addr, self.ready = [], None, threading.Event()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True, env=dict(os.environ, NO_COLOR="1", RUST_LOG="warn"))
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(timeout):
            self.close()
            sys.exit("no `listening on` line: " + " | ".join(self.lines[-5:]))

    def _read(self):
        pat = re.compile(r"listening on (?:[a-z]+://)?([\d.]+):(\d+)")
        for line in self.p.stdout:
            if len(self.lines) < 10000:
                self.lines.append(line.rstrip())
            m = pat.search(line)
            if m and not self.ready.is_set():
                self.addr = (m.group(1), int(m.group(2)))
                self.ready.set()
        self.ready.set()

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args, d):
    cfg = os.path.join(d, "corral.toml")
    with open(cfg, "w") as f:
        f.write(STORM_TOML.format(workers=args.workers, sched=args.sched))
    if args.target == "example":
        argv = [args.bin or os.path.join(RELEASE, "examples", "05_production_patterns"), "--config", cfg,
                "--listen", f"127.0.0.1:{free_port()}", "--status-every", "0s"]
    else:
        argv = [args.bin or os.path.join(RELEASE, "corral"), "run", "--config", cfg, "-w", str(args.workers), "--sched", args.sched,
                "--listen", "127.0.0.1:0", "--control", os.path.join(d, "c.sock"), "--", "python3", WORKER]
    return Primary(argv)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("example", "run"), default="example")
    ap.add_argument("--sched", choices=sorted(SCHED), default="rr")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200, help="kills before the baseline")
    ap.add_argument("--kills", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bin", help="the example (or corral) binary to run instead of target/release's")
    a = ap.parse_args()
    # A SIGTERM stops the run as Ctrl-C does: the primary started here is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(a.seed or None)
    d = tempfile.mkdtemp(prefix="corral-storm-")
    prim, clients, t0 = None, None, time.time()
    try:
        prim = start(a, d)
        pid, addr = prim.p.pid, prim.addr
        clients = Clients(addr, a.clients, limit_s=3600 * 4)
        alive = lambda: prim.p.poll() is None
        storm(pid, a.warmup, 120, rng, alive)
        if not all_back(pid, addr, a.workers):
            sys.exit(f"not back after the warm-up (live {len(live_workers(pid))}): " + " | ".join(prim.lines[-4:]))
        clients.pause()
        base = settle(pid, settled(pid), limit_s=12)
        base = settled(pid)
        clients.resume()
        ok0, failed0 = clients.ok, clients.failed
        t1 = time.time()
        sent = storm(pid, a.kills, max(600, a.kills * 0.1), rng, alive)
        storm_s = time.time() - t1
        served, failed = clients.ok - ok0, clients.failed - failed0
        if not alive():
            sys.exit(f"the primary died during the storm: " + " | ".join(prim.lines[-5:]))
        t2 = time.time()
        back = all_back(pid, addr, a.workers)
        back_ms = (time.time() - t2) * 1000
        clients.pause()
        now = settle(pid, base)
        bad = grown(base, now)
        z = zombies(pid)
        if z:
            time.sleep(0.5)
            z = [p for p in zombies(pid) if p in z]
        after = sum(1 for _ in range(100) if get(addr, 3) == 200)
        orphans = unix_peers(pid)
        if not back:
            bad.append("workers not all back within 30 s")
        if z:
            bad.append(f"{len(z)} zombies")
        if after != 100:
            bad.append(f"after the storm {after}/100 served")
        kinds = lambda k: "/".join(f"{k.get(x, 0)} {x}" for x in ("socket", "pipe", "anon_inode", "other"))
        what = f"{a.target} --sched {a.sched}" if a.target == "run" else f"05_production_patterns {SCHED[a.sched]}"
        print(f"{what}, {a.workers} workers, {a.clients} clients: {sent} kills in {storm_s:.0f} s after a "
              f"{a.warmup}-kill warm-up; {served} served / {failed} failed during it; back in {back_ms:.0f} ms; "
              f"primary fds {base['fds']} -> {now['fds']} ({kinds(base['kinds'])} -> {kinds(now['kinds'])}), "
              f"threads {base['threads']} -> {now['threads']}, RSS {base['rss'] / 1024:.1f} -> {now['rss'] / 1024:.1f} MiB, "
              f"zombies {len(z)}, unix sockets with their peer gone {len(orphans)}, after {after}/100 "
              f"({time.time() - t0:.0f} s)")
        if bad:
            print("GREW/SHORT: " + "; ".join(bad))
            for l in orphans[:10]:
                print("  peerless: " + " ".join(l))
            sys.exit(1)
    finally:
        if clients:
            clients.close()
        if prim:
            prim.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
