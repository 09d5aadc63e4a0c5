#!/usr/bin/env python3
"""Autoscaling under a load step (issue 31), side by side in one run: corral's scaler, fixed
clusters at the sizes it moves between, and uWSGI's cheaper subsystem on the same app.

    cargo build --release --bin corral --example http_cluster
    python3 benches/autoscale.py                # every setup, 3 rounds, alternating
    python3 benches/autoscale.py --rounds 1 corral   # only setups whose label has a word

The app burns 20 ms of its thread's CPU per request (stdlib, 4 threads per worker: under the
GIL a worker uses at most one core; `tests/programs/burn_worker.py` for corral,
`benches/python/burn_wsgi.py` for uWSGI). The load, per setup: 3 s paced at 7.5 requests/s in
all (~15 % of one core: 2 keep-alive clients at 1.5/s and a fresh-connection client at
4.5/s), then 20 s of 16 closed-loop fresh-connection clients (the paced ones keep going), then
20 s paced again. Setups:

  corral 1..4      corral run, workers = "1..4", [autoscale] up_after 2s, down_after 5s,
                   cooldown 1s (default signal: queue or CPU)
  corral fixed 2   corral run -w 2 (the issue's reference)
  corral fixed 4   corral run -w 4 (the final size the scaler reaches under this load)
  uwsgi cheaper    uwsgi --http11-socket (keep-alive), --processes 4 --threads 4 --cheaper 1 --cheaper-initial 1
                   --cheaper-algo busyness --cheaper-step 1 --cheaper-overload 1
                   --cheaper-busyness-multiplier 5 (5 idle cycles of 1 s: as down_after 5s)

Measured: rise = the step to the first answer from a second pid; p50/p99 of the requests that
ended in the 10 s after the rise (for the fixed clusters: after corral 1..4's rise in the same
round); fall = the drop to one worker process again (counted in /proc every 100 ms); failed
requests. Then the scaler's own cost: the primary's CPU seconds per second at a steady
moderate load (8 closed-loop clients, 15 s) with workers = "2..2" (the scaler samples, the
count cannot move) and with workers = 2, alternating, median of the rounds.

Needs uWSGI for its setup (`pip install uwsgi==2.0.28` into target/bench-autoscale/venv; the
script does it once, or skips that setup saying why).
"""
import argparse, http.client, os, re, signal, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRAL = os.path.join(ROOT, "target", "release", "corral")
APP = os.path.join(ROOT, "tests", "programs", "burn_worker.py")
WSGI = os.path.join(ROOT, "benches", "python", "burn_wsgi.py")
VENV = os.path.join(ROOT, "target", "bench-autoscale", "venv")
UWSGI_PIN = "uwsgi==2.0.28"
HZ = os.sysconf("SC_CLK_TCK")
PID_RE = re.compile(r"(?:pid (\d+)|^\S+ (\d+)\s*$)", re.M)
LOW, HIGH, AFTER = 3.0, 20.0, 20.0


def uwsgi_bin():
    exe = os.path.join(VENV, "bin", "uwsgi")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        r = subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", UWSGI_PIN], capture_output=True, text=True)
        if r.returncode != 0:
            return None, (r.stderr or r.stdout).strip().splitlines()[-1:]
    return exe, None


def corral_config(d, workers, autoscale):
    path = os.path.join(d, f"corral-{workers.replace('.', '_')}.toml")
    text = (f'program = "python3"\nargs = ["{APP}"]\nworkers = {workers}\nlisten = ["127.0.0.1:0"]\n'
            'ready = "notify"\n')
    if autoscale:
        text += '\n[autoscale]\nup_after = "2s"\ndown_after = "5s"\ncooldown = "1s"\n'
    text += '\n[env]\nBURN_MS = "20"\nBURN_THREADS = "4"\n'
    with open(path, "w") as f:
        f.write(text)
    return path


class Server:
    """A server under test: its address, and the worker processes under it."""

    def __init__(self, label, argv, app_marker, env=None):
        self.label, self.marker = label, app_marker.encode()
        self.err = open(f"/tmp/autoscale-{label.replace(' ', '-').replace('.', '_')}.err", "w")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err, text=True, start_new_session=True,
                                  env=dict(os.environ, RUST_LOG="info", **(env or {})), stdin=subprocess.DEVNULL)
        self.addr = None

    def wait_listening(self, addr=None):
        if addr:
            self.addr = addr
        deadline = time.time() + 30
        while self.addr is None and time.time() < deadline:
            line = self.p.stdout.readline()
            m = re.search(r"listening on (?:http://)?([\d.]+):(\d+)", line or "")
            if m:
                self.addr = (m.group(1), int(m.group(2)))
            elif not line and self.p.poll() is not None:
                raise RuntimeError(f"{self.label} exited {self.p.returncode}")
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()
        while time.time() < deadline:  # answering
            try:
                c = http.client.HTTPConnection(*self.addr, timeout=2)
                c.request("GET", "/")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} does not answer")

    def workers(self):
        """Worker processes under the server (its app's marker in their command line)."""
        parent = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        s = f.read()
                    fields = s[s.rindex(")") + 2:].split()
                    if fields[0] != "Z":
                        parent[int(d)] = int(fields[1])
                except (OSError, ValueError, IndexError):
                    pass
        under, todo = set(), [self.p.pid]
        while todo:
            p = todo.pop()
            for k, pp in parent.items():
                if pp == p and k not in under:
                    under.add(k)
                    todo.append(k)
        n = 0
        for p in under:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    n += self.marker in f.read()
            except OSError:
                pass
        return n

    def cpu(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / HZ

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.err.close()


class Load:
    """Paced clients throughout; `high(True)` adds 16 closed-loop fresh-connection clients."""

    def __init__(self, addr):
        self.addr, self.rec, self.lock, self.done = addr, [], threading.Lock(), threading.Event()
        self.extra_stop, self.extra = threading.Event(), []
        self.base = [threading.Thread(target=self.paced, args=(True, 1.5)) for _ in range(2)]
        self.base.append(threading.Thread(target=self.paced, args=(False, 4.5)))
        for t in self.base:
            t.start()

    def one(self, conn):
        t0 = time.monotonic()
        try:
            if conn is None:
                c = http.client.HTTPConnection(*self.addr, timeout=10)
                c.request("GET", "/", headers={"Connection": "close"})
                r = c.getresponse()
                body = r.read().decode(errors="replace")
                c.close()
            else:
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode(errors="replace")
            m = PID_RE.search(body)
            pid = int(m.group(1) or m.group(2)) if m else None
            with self.lock:
                self.rec.append((t0, time.monotonic(), r.status == 200, pid))
            return r.status == 200 and not r.will_close
        except (OSError, http.client.HTTPException):
            with self.lock:
                self.rec.append((t0, time.monotonic(), False, None))
            return False

    def paced(self, keep_alive, rate):
        conn, since, nxt = None, 0.0, time.monotonic()
        for _ in range(100000):
            if self.done.is_set():
                break
            self.done.wait(max(0.0, nxt - time.monotonic()))
            nxt += 1.0 / rate
            if keep_alive and (conn is None or time.monotonic() - since > 3.0):
                if conn is not None:
                    conn.close()
                conn, since = http.client.HTTPConnection(*self.addr, timeout=10), time.monotonic()
            if not self.one(conn if keep_alive else None) and conn is not None:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def closed(self):
        for _ in range(100000):
            if self.extra_stop.is_set() or self.done.is_set():
                return
            self.one(None)

    def high(self, on, clients=16):
        if on:
            self.extra_stop.clear()
            self.extra = [threading.Thread(target=self.closed) for _ in range(clients)]
            for t in self.extra:
                t.start()
        else:
            self.extra_stop.set()
            for t in self.extra:
                t.join(15)

    def close(self):
        self.done.set()
        self.high(False)
        for t in self.base:
            t.join(15)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs))) - 1))] if xs else float("nan")


def step_run(server, rise_hint=None):
    """One load step against a started server: rise, p50/p99 after it, fall, failures."""
    server.wait_listening()
    load = Load(server.addr)
    time.sleep(LOW)
    before = {r[3] for r in load.rec if r[2]}
    t_step = time.monotonic()
    load.high(True)
    counts = []
    end = t_step + HIGH
    while time.monotonic() < end:
        counts.append((time.monotonic(), server.workers()))
        time.sleep(0.1)
    t_drop = time.monotonic()
    load.high(False)
    end = t_drop + AFTER
    while time.monotonic() < end:
        counts.append((time.monotonic(), server.workers()))
        time.sleep(0.1)
    load.close()
    recs = sorted(load.rec, key=lambda r: r[1])
    rise = next((r[1] - t_step for r in recs if r[1] > t_step and r[2] and r[3] and r[3] not in before), None)
    at = t_step + (rise if rise is not None else (rise_hint or 0.0))
    lat = [(r[1] - r[0]) * 1000 for r in recs if at <= r[1] <= at + 10.0 and r[2]]
    fall = next((t - t_drop for t, n in counts if t > t_drop and n == 1), None)
    peak = max((n for t, n in counts), default=0)
    failed = sum(1 for r in recs if not r[2])
    return {"rise": rise, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "fall": fall, "peak": peak,
            "failed": failed, "requests": len(recs)}


def scaler_cost(d, rounds):
    """Primary CPU s/s at a steady load, workers = "2..2" (scaler on) vs 2 (off)."""
    out = {"on": [], "off": []}
    for _ in range(rounds):
        for label, workers, auto in (("on", '"2..2"', True), ("off", "2", False)):
            cfg = corral_config(d, workers, auto)
            s = Server(f"cost {label}", [CORRAL, "run", "-c", cfg], "burn_worker.py")
            try:
                s.wait_listening()
                load = Load(s.addr)
                load.high(True, clients=8)
                time.sleep(2.0)
                c0, t0 = s.cpu(), time.monotonic()
                time.sleep(15.0)
                out[label].append((s.cpu() - c0) / (time.monotonic() - t0))
                load.close()
            finally:
                s.stop()
    return out


def lib_cost(rounds):
    """A library cluster in round robin (the primary accepts and hands off every connection):
    the primary's CPU s/s under `wrk -H "Connection: close"` with --workers 2..2 vs 2."""
    lib = os.path.join(ROOT, "target", "release", "examples", "http_cluster")
    out = {"on": [], "off": []}
    for _ in range(rounds):
        for label, workers in (("on", "2..2"), ("off", "2")):
            s = Server(f"lib cost {label}", [lib, "--workers", workers, "--port", "0", "--sched", "rr"], "http_cluster")
            try:
                s.wait_listening()
                url = f"http://{s.addr[0]}:{s.addr[1]}/"
                w = subprocess.Popen(["wrk", "-t1", "-c16", "-d14s", "-H", "Connection: close", url],
                                     stdout=subprocess.PIPE, text=True)
                time.sleep(2.0)
                c0, t0 = s.cpu(), time.monotonic()
                time.sleep(10.0)
                cpu = (s.cpu() - c0) / (time.monotonic() - t0)
                rps = re.search(r"Requests/sec:\s+([\d.]+)", w.communicate(timeout=30)[0] or "")
                out[label].append((cpu, float(rps.group(1)) if rps else float("nan")))
            finally:
                s.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("only", nargs="*")
    a = ap.parse_args()
    if not os.path.exists(CORRAL):
        sys.exit("build it first: cargo build --release --bin corral")
    uwsgi, why = uwsgi_bin()
    d = tempfile.mkdtemp(prefix="corral-bench-autoscale-")
    setups = [
        ("corral 1..4", lambda: Server("corral 1..4", [CORRAL, "run", "-c", corral_config(d, '"1..4"', True)], "burn_worker.py")),
        ("corral fixed 2", lambda: Server("corral fixed 2", [CORRAL, "run", "-c", corral_config(d, "2", False)], "burn_worker.py")),
        ("corral fixed 4", lambda: Server("corral fixed 4", [CORRAL, "run", "-c", corral_config(d, "4", False)], "burn_worker.py")),
    ]
    if uwsgi:
        port_file = os.path.join(d, "uwsgi.port")

        def start_uwsgi():
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            srv = Server("uwsgi cheaper", [uwsgi, "--http11-socket", f"127.0.0.1:{port}", "--wsgi-file", WSGI, "--master",
                                           "--processes", "4", "--threads", "4", "--cheaper", "1", "--cheaper-initial", "1",
                                           "--cheaper-algo", "busyness", "--cheaper-step", "1", "--cheaper-overload", "1",
                                           "--cheaper-busyness-multiplier", "5", "--disable-logging", "--die-on-term"],
                         "uwsgi", env={"BURN_MS": "20"})
            srv.addr = ("127.0.0.1", port)
            return srv
        setups.append(("uwsgi cheaper", start_uwsgi))
    else:
        print(f"uwsgi cheaper: skipped, {UWSGI_PIN} does not install: {why}")
    setups = [s for s in setups if not a.only or any(w in s[0] for w in a.only)]
    results = {label: [] for label, _ in setups}
    for rnd in range(a.rounds):
        hint = None
        for label, start in setups:
            server = start()
            try:
                r = step_run(server, hint)
            finally:
                server.stop()
            if label == "corral 1..4":
                hint = r["rise"]
            results[label].append(r)
            print(f"round {rnd + 1} {label}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in r.items()), flush=True)
    print(f"\nmedians of {a.rounds} rounds (load average {os.getloadavg()[0]:.1f}):")
    print("| setup | rise s | p50 ms | p99 ms | fall s | peak workers | failed / requests |")
    print("|---|---|---|---|---|---|---|")
    for label, rs in results.items():
        med = lambda k: statistics.median([r[k] for r in rs if r[k] is not None]) if any(r[k] is not None for r in rs) else None
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
        print(f"| {label} | {f(med('rise'))} | {f(med('p50'), 0)} | {f(med('p99'), 0)} | {f(med('fall'), 1)} | "
              f"{max(r['peak'] for r in rs)} | {sum(r['failed'] for r in rs)} / {sum(r['requests'] for r in rs)} |")
    if not a.only or "cost" in a.only:
        cost = scaler_cost(d, a.rounds)
        on, off = statistics.median(cost["on"]), statistics.median(cost["off"])
        print(f"\nscaler cost: primary CPU {on * 100:.2f} % of a core with workers = \"2..2\" (scaler on) vs "
              f"{off * 100:.2f} % with workers = 2 (off), medians of {a.rounds}: {on - off:+.2%} of a core, "
              f"{(on / off - 1) * 100 if off else float('nan'):+.1f} % of the primary's own CPU")
        lib = lib_cost(a.rounds)
        on = statistics.median(c for c, _ in lib["on"])
        off = statistics.median(c for c, _ in lib["off"])
        rps_on, rps_off = statistics.median(r for _, r in lib["on"]), statistics.median(r for _, r in lib["off"])
        print(f"scaler cost, library rr under wrk -c16 Connection: close: primary CPU {on * 100:.1f} % of a core "
              f"(--workers 2..2, {rps_on:.0f} conn/s) vs {off * 100:.1f} % (--workers 2, {rps_off:.0f} conn/s): "
              f"{(on / off - 1) * 100 if off else float('nan'):+.1f} % of the primary's own CPU; per connection "
              f"{(on / rps_on) / (off / rps_off) * 100 - 100:+.1f} %")


if __name__ == "__main__":
    main()
