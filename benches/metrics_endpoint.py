#!/usr/bin/env python3
"""The metrics endpoint's cost to the primary: RSS and CPU of `http_cluster`'s primary with
the endpoint off, on and idle, and on and scraped (GET /metrics, and GET / the status page)
once a second. Each repetition is a fresh cluster; the setups run interleaved, medians printed.

    cargo build --release --example http_cluster
    python3 benches/metrics_endpoint.py [REPS] [SECONDS]

Run from the project's root. Nothing but 127.0.0.1 is used.
"""
import os, re, signal, socket, statistics, subprocess, sys, threading, time, urllib.request

EXE = os.path.join("target", "release", "examples", "http_cluster")
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat: finer than the stat ticks' 10 ms)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(setup):
    args = [EXE, "--workers", "2", "--port", "0"]
    mport = None
    if setup != "off":
        mport = free_port()
        args += ["--metrics", f"127.0.0.1:{mport}"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, RUST_LOG="off"), start_new_session=True)
    line = p.stdout.readline()
    if not line.startswith("listening on"):
        raise SystemExit(f"{setup}: unexpected first line {line!r}")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    time.sleep(2.0)  # let the start settle (first heartbeats, first sample)
    stop = threading.Event()
    scrapes = [0]

    def scrape(path):
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}{path}", timeout=5) as r:
                r.read()
            scrapes[0] += 1

    scraper = None
    if setup.startswith("scraped"):
        scraper = threading.Thread(target=scrape, args=("/metrics" if setup == "scraped /metrics" else "/",))
        scraper.start()
    t0, c0 = time.monotonic(), cpu_ns(p.pid)
    time.sleep(SECONDS)
    t1, c1 = time.monotonic(), cpu_ns(p.pid)
    rss = rss_kib(p.pid)
    stop.set()
    if scraper:
        scraper.join()
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(20)
    cpu_ms_per_min = (c1 - c0) / 1e6 / ((t1 - t0) / 60.0)
    return rss / 1024.0, cpu_ms_per_min, scrapes[0]


SETUPS = ["off", "on, idle", "scraped /metrics", "scraped /"]
results = {s: [] for s in SETUPS}
for rep in range(REPS):
    for setup in SETUPS:
        results[setup].append(run(setup))
        r = results[setup][-1]
        print(f"rep {rep + 1} {setup:17} RSS {r[0]:.2f} MiB  CPU {r[1]:.1f} ms/min  scrapes {r[2]}", flush=True)

print(f"\nmedians over {REPS} repetitions of {SECONDS:.0f} s (primary of http_cluster --workers 2):")
print("| setup | primary VmRSS | primary CPU | scrapes |")
print("|---|---:|---:|---:|")
base = statistics.median(r[0] for r in results["off"])
for setup in SETUPS:
    rss = statistics.median(r[0] for r in results[setup])
    cpu = statistics.median(r[1] for r in results[setup])
    n = statistics.median(r[2] for r in results[setup])
    print(f"| {setup} | {rss:.2f} MiB ({rss - base:+.2f}) | {cpu:.1f} ms/min ({cpu / 600:.3f} % of a core) | {n:.0f} |")
