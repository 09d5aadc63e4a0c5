"""A CPU-bound socket-activated HTTP worker for the autoscaling tests (stdlib only).

Fd 3 is the listener (LISTEN_PID checked). $BURN_THREADS (default 2) threads each accept one
connection at a time and serve it (HTTP/1.1 keep-alive unless the client says close); every
request burns $BURN_MS (default 20) ms of the thread's own CPU, so under the GIL one worker
uses at most one core and further connections wait in the accept queue. Answers
`<slot> <pid>`. READY=1 over NOTIFY_SOCKET. SIGTERM drains: no more accepts; the request in
progress, or the next one on a kept-alive connection (waited for up to 2 s), is answered with
`Connection: close`; then the process exits 0."""
import os, select, signal, socket, sys, threading, time

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit("LISTEN_PID is not mine")
BURN = float(os.environ.get("BURN_MS", "20")) / 1000.0
THREADS = int(os.environ.get("BURN_THREADS", "2"))
slot = os.environ.get("CORRAL_SLOT", "?")
listener = socket.socket(fileno=3)
listener.setblocking(False)
draining = threading.Event()


def burn():
    end = time.thread_time() + BURN
    while time.thread_time() < end:
        sum(range(200))


def next_request(conn):
    """The request head, or None when the connection should close."""
    buf, drain_until = b"", None
    while b"\r\n\r\n" not in buf:
        if not buf:
            ready, _, _ = select.select([conn], [], [], 0.1)
            if not ready:
                if draining.is_set():
                    drain_until = drain_until or time.monotonic() + 2.0
                    if time.monotonic() >= drain_until:
                        return None
                continue
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk or len(buf) > 65536:
            return None
        buf += chunk
    return buf.partition(b"\r\n\r\n")[0].decode("latin-1")


def serve(conn):
    with conn:
        while True:
            head = next_request(conn)
            if head is None:
                return
            keep = "connection: close" not in head.lower()
            burn()
            keep = keep and not draining.is_set()
            body = f"{slot} {os.getpid()}\n".encode()
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
                             % (len(body), b"keep-alive" if keep else b"close") + body)
            except OSError:
                return
            if not keep:
                return


def acceptor():
    while not draining.is_set():
        ready, _, _ = select.select([listener], [], [], 0.05)
        if not ready or draining.is_set():
            continue
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue
        conn.setblocking(True)
        serve(conn)


def notify(message):
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(message.encode(), "\0" + path[1:] if path.startswith("@") else path)
        finally:
            s.close()


signal.signal(signal.SIGTERM, lambda *_: draining.set())
threads = [threading.Thread(target=acceptor) for _ in range(THREADS)]
for t in threads:
    t.start()
notify("READY=1")
for t in threads:
    t.join()
