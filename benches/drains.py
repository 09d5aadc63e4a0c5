#!/usr/bin/env python3
"""Rolling reloads under load: how many requests fail (RELIABILITY.md, "Drains").

For each cluster (a `corral run` cluster of the stdlib Python fd-3 worker
tests/programs/activated_worker.py, and the library flagship examples/http_cluster.rs) and each
scheduling (reuseport, shared): 2 workers, 4 clients for the whole run (2 open a new connection
per request, 2 keep one connection alive), RELOADS rolling reloads by SIGHUP, each waited for
(every old worker gone, two new ones) and followed by 0.5 s of load. Prints one line per run and
exits 1 if any request failed.

    cargo build --release --bin corral --example http_cluster
    python3 benches/drains.py [RELOADS]          # default 50

Stdlib only; binds 127.0.0.1:0; every wait is bounded."""
import http.client, os, re, signal, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRAL = os.path.join(ROOT, "target", "release", "corral")
HTTP_CLUSTER = os.path.join(ROOT, "target", "release", "examples", "http_cluster")
WORKER = os.path.join(ROOT, "tests", "programs", "activated_worker.py")
RELOADS = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def children(pid):
    kids = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.update(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Load:
    """2 new-connection clients and 2 keep-alive clients until stopped."""

    def __init__(self, addr):
        self.addr, self.stop = addr, threading.Event()
        self.ok, self.failed = {"fresh": 0, "keep-alive": 0}, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(kind,)) for kind in ("fresh", "fresh", "keep-alive", "keep-alive")]

    def run(self, kind):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None or kind == "fresh":
                    conn = http.client.HTTPConnection(*self.addr, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
                if kind == "fresh" or r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
                with self.lock:
                    self.ok[kind] += 1
            except Exception as e:  # every failure counts
                with self.lock:
                    self.failed.append(f"{kind} {type(e).__name__}")
                if conn is not None:
                    conn.close()
                conn = None

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def run(label, argv, pattern):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        addr, end = None, time.time() + 30
        while addr is None and time.time() < end:
            line = p.stdout.readline()
            if not line:
                break
            m = re.search(pattern, line)
            if m:
                addr = (m.group(1), int(m.group(2)))
        if addr is None:
            return f"{label}: no listening line", False
        threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
        workers = lambda: {k for k in children(p.pid) if alive(k)}
        if not wait_for(lambda: len(workers()) == 2, 20):
            return f"{label}: expected 2 workers, saw {workers()}", False
        took = []
        with Load(addr) as load:
            time.sleep(1.0)
            for i in range(RELOADS):
                old, t0 = workers(), time.time()
                p.send_signal(signal.SIGHUP)
                done = lambda: (lambda w: len(w) == 2 and not (w & old) and not any(alive(x) for x in old))(workers())
                if not wait_for(done, 30):
                    return f"{label}: reload {i + 1} not finished within 30 s", False
                took.append(time.time() - t0)
                time.sleep(0.5)
            time.sleep(1.0)
        total = sum(load.ok.values()) + len(load.failed)
        kinds = {k: load.failed.count(k) for k in set(load.failed)}
        line = (f"{label}: {len(load.failed)} failed of {total:,} requests ({load.ok['fresh']:,} fresh, "
                f"{load.ok['keep-alive']:,} keep-alive) across {RELOADS} reloads; reload median "
                f"{statistics.median(took):.2f} s, max {max(took):.2f} s{f'; failures {kinds}' if kinds else ''}")
        return line, not load.failed
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main():
    with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
        print(f"net.ipv4.tcp_migrate_req = {f.read().strip()}", flush=True)
    ok = True
    for sched in ("reuseport", "shared"):
        argv = [CORRAL, "run", "--workers", "2", "--sched", sched, "--listen", "127.0.0.1:0", "--ready", "notify",
                "--no-control", "--", "python3", WORKER]
        line, good = run(f"corral run {sched}", argv, r"listening on ([\d.]+):(\d+)")
        print(line, flush=True)
        ok &= good
        argv = [HTTP_CLUSTER, "--workers", "2", "--port", "0", "--sched", sched]
        line, good = run(f"library {sched}", argv, r"listening on http://([\d.]+):(\d+)")
        print(line, flush=True)
        ok &= good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
