#!/usr/bin/env python3
"""Kill -> served with and without warm spares (issue 33), side by side in one run.

    cargo build --release --bins --examples
    python3 benches/spares.py                 # every setup, 20 kills each, alternating
    python3 benches/spares.py --kills 10 lib  # only setups whose label contains a word
    # with net.ipv4.tcp_migrate_req=1, in a network namespace of its own (root):
    unshare -n sh -c 'ip link set lo up; echo 1 > /proc/sys/net/ipv4/tcp_migrate_req; python3 benches/spares.py run/node'

Setups (2 serving workers each; kills alternate between the setups, one kill per setup per
round, each setup its own long-running cluster):

  lib spares=1 / lib spares=0     target/release/examples/http_cluster --workers 2 --port 0 --spares N
  run/node spares=1 / spares=0    target/release/corral run -w 2 --spares N -l 127.0.0.1:0
                                  --ready delay:300 -- node tests/programs/activated_worker.js
  node cluster                    node benches/node/lifecycle_bench.js --workers 2 --port 0
                                  (restarts a worker on 'exit')

Each kill: a SIGKILL of the oldest serving worker that has been up >= 1.1 s (so that no
restart backoff enters), then `GET /` on fresh connections in a tight loop until a 200 names a
pid that was not serving before (the promoted spare, or the replacement); the time from the
kill to that answer. Printed: p50 / p90 / max per setup, requests that failed (refused, reset,
non-200, or no answer within 250 ms) around the kills, and the load average. Each setup's
stderr goes to /tmp/spares-<label>.err (the primaries' logs, to compare with the kill times).
"""
import argparse, os, re, signal, socket, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
PID_RE = re.compile(rb"(?:pid (\d+)\)|^\d+ (\d+)\s*$)", re.M)
HZ = os.sysconf("SC_CLK_TCK")


def setups():
    node_app = os.path.join(ROOT, "tests", "programs", "activated_worker.js")
    lib = os.path.join(REL, "examples", "http_cluster")
    run = [os.path.join(REL, "corral"), "run", "-w", "2", "-l", "127.0.0.1:0", "--ready", "delay:300"]
    return [
        ("lib spares=1", [lib, "--workers", "2", "--port", "0", "--spares", "1"], 3),
        ("lib spares=0", [lib, "--workers", "2", "--port", "0", "--spares", "0"], 2),
        ("run/node spares=1", run[:4] + ["--spares", "1"] + run[4:] + ["--", "node", node_app], 3),
        ("run/node spares=0", run[:4] + ["--spares", "0"] + run[4:] + ["--", "node", node_app], 2),
        ("node cluster", ["node", os.path.join(ROOT, "benches", "node", "lifecycle_bench.js"), "--workers", "2",
                          "--port", "0"], 2),
    ]


class Server:
    def __init__(self, label, argv, processes):
        self.label, self.processes = label, processes
        self.last_kill = 0.0
        env = dict(os.environ, RUST_LOG="warn")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(f"/tmp/spares-{label.replace('/', '-').replace(' ', '-')}.err", "w"), text=True,
                                  start_new_session=True, env=env)
        self.addr = None
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.p.stdout.readline()
            m = re.search(r"listening on (?:http://)?([\d.]+):(\d+)", line or "")
            if m:
                self.addr = (m.group(1), int(m.group(2)))
                break
            if not line and self.p.poll() is not None:
                break
        if not self.addr:
            self.stop()
            raise SystemExit(f"{label}: no listening line")
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()
        self.wait_children(processes)

    def children(self):
        out = []
        for tid in os.listdir(f"/proc/{self.p.pid}/task"):
            try:
                with open(f"/proc/{self.p.pid}/task/{tid}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return out

    def wait_children(self, n, limit=15):
        end = time.time() + limit
        while len(self.children()) < n and time.time() < end:
            time.sleep(0.02)

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(5)
        except Exception:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except Exception:
                pass


def get(addr, timeout=3.0):
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
    finally:
        s.close()
    m = PID_RE.search(data.split(b"\r\n\r\n", 1)[-1])
    ok = data.startswith(b"HTTP/1.1 200")
    return ok, int(m.group(1) or m.group(2)) if m else None


def age(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return up - int(s[s.rindex(")") + 2:].split()[19]) / HZ
    except (OSError, ValueError):
        return 0.0


def serving(srv, n=2):
    seen = set()
    for _ in range(100):
        if len(seen) >= n:
            break
        try:
            ok, pid = get(srv.addr)
            if ok and pid:
                seen.add(pid)
        except OSError:
            pass
    return seen


def one_kill(srv):
    """Kill the oldest serving worker up >= 1.1 s; (ms to the first 200 from a new pid, failed)."""
    srv.wait_children(srv.processes)
    active = serving(srv)
    end = time.time() + 10
    while time.time() < end and not [p for p in active if age(p) >= 1.1]:
        time.sleep(0.05)
    old = [p for p in active if age(p) >= 1.1]
    if not old:
        return None, 0
    victim = max(old, key=age)
    # Kills of one cluster >= 2.1 s apart: each slot then dies at most 3 times in 10 s, inside
    # the default restart intensity (5 in 10 s), whatever how few setups run (with only two,
    # the rounds alone are too quick, and a spares=0 cluster gave up).
    wait = srv.last_kill + 2.1 - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    failed = 0
    t = time.perf_counter()
    srv.last_kill = t
    os.kill(victim, signal.SIGKILL)
    while time.perf_counter() < t + 3:
        try:
            # A request handed to the dead worker may hang (Node's primary does that): given
            # up on after 250 ms and counted as failed, the loop goes on.
            ok, pid = get(srv.addr, timeout=0.25)
        except OSError:
            failed += 1
            continue
        if ok and pid and pid not in active:
            return (time.perf_counter() - t) * 1000, failed
        if not ok:
            failed += 1
    return None, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("only", nargs="*")
    a = ap.parse_args()
    chosen = [s for s in setups() if not a.only or any(w in s[0] for w in a.only)]
    load0 = os.getloadavg()[0]
    servers = [Server(*s) for s in chosen]
    times = {s.label: [] for s in servers}
    failed = {s.label: 0 for s in servers}
    try:
        for _ in range(a.kills):
            for srv in servers:
                ms, f = one_kill(srv)
                failed[srv.label] += f
                times[srv.label].append(ms if ms is not None else float("inf"))
            # Past each cluster's restart intensity window for one slot (5 in 10 s).
            time.sleep(0.6)
    finally:
        for srv in servers:
            srv.stop()
    print(f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}, {a.kills} kills per setup")
    print("| setup | kill -> served p50 | p90 | max | requests failed |")
    print("|---|---:|---:|---:|---:|")
    for label, ms in times.items():
        ms = sorted(ms)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"| {label} | {statistics.median(ms):.2f} ms | {p90:.2f} ms | {ms[-1]:.2f} ms | {failed[label]} |")


if __name__ == "__main__":
    sys.exit(main())
