"""Run inside a network namespace of its own (`unshare -n`, as root): with
net.ipv4.tcp_migrate_req=1, a connection queued on a killed worker's reuse-port socket is
served by the others (here the warm spare) at once, not by the slot's next process, which
starts slowly (5 s).

    unshare -n python3 tests/programs/migrate_on_death.py CORRAL WORKER.py

Prints `served after N ms by pid P (victim V)` and exits 0, or says why and exits 1."""
import os, re, signal, socket, subprocess, sys, tempfile, threading, time

corral, worker = sys.argv[1], sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
    f.write("1")
slow = os.path.join(tempfile.mkdtemp(prefix="corral-migrate-"), "slow")
env = dict(os.environ, SLOW_START_FILE=slow)
p = subprocess.Popen([corral, "run", "-w", "2", "--spares", "1", "--sched", "reuseport", "-l", "127.0.0.1:0",
                      "--", "python3", worker], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
lines, addr, seen = [], [], threading.Event()


def read():
    for line in p.stdout:
        lines.append(line.rstrip())
        m = re.search(r"listening on (?:http://)?([\d.]+):(\d+)", line)
        if m and not addr:
            addr.append((m.group(1), int(m.group(2))))
            seen.set()


threading.Thread(target=read, daemon=True).start()


def fail(why):
    print(why, "|", " | ".join(lines[-8:]))
    p.kill()
    sys.exit(1)


def ask(timeout):
    """GET / on a fresh connection: the answering pid, or the socket still waiting (timeout)."""
    s = socket.create_connection(addr[0], timeout=2)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except socket.timeout:
        return None, s
    s.close()
    m = re.search(rb"\r\n\r\n\d+ (\d+)", data)
    return (int(m.group(1)) if m else -1), None


try:
    if not seen.wait(20):
        fail("no listening line within 20 s")
    serving, deadline = set(), time.time() + 20
    while len(serving) < 2 and time.time() < deadline:
        pid, _ = ask(2)
        if pid and pid > 0:
            serving.add(pid)
    if len(serving) < 2:
        fail(f"two workers never answered: {serving}")
    open(slow, "w").close()  # from now on a starting worker takes 5 s
    victim = min(serving)
    os.kill(victim, signal.SIGSTOP)
    stuck = None
    for _ in range(60):
        pid, s = ask(0.3)
        if s is not None:
            stuck = s
            break
    if stuck is None:
        fail("no connection landed on the stopped worker's socket in 60 tries")
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    stuck.settimeout(10)
    data = b""
    try:
        while not re.search(rb"\r\n\r\n\d+ \d+", data):
            chunk = stuck.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        fail(f"the queued connection failed: {e!r}")
    took = (time.time() - t0) * 1000
    m = re.search(rb"\r\n\r\n\d+ (\d+)", data)
    if not m:
        fail(f"the queued connection got no answer: {data[:200]!r}")
    by = int(m.group(1))
    print(f"served after {took:.0f} ms by pid {by} (victim {victim})")
    if by == victim:
        fail("answered by the killed worker?")
    if took > 2500:
        fail(f"served only after {took:.0f} ms: it waited for the slot's next process")
finally:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
