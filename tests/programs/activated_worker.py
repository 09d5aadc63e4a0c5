"""A plain Python worker for `corral run` (stdlib only): HTTP on the socket at fd 3, as
systemd's socket activation passes it. Answers "<slot> <pid>". Checks LISTEN_PID, LISTEN_FDS
and LISTEN_FDNAMES as systemd-aware programs do, says READY=1 on NOTIFY_SOCKET, drains on
SIGTERM.

Knobs (environment): NEVER_READY=1 (never says READY=1), PID_DIR (writes its pid there),
CHILD_DIR (starts a grandchild `sleep` and writes its pid there), EXPECT_NAME (the name
LISTEN_FDNAMES must give fd 3), ORPHAN_LIFE (seconds an orphan of GET /orphan lives; 0.2),
SLOW_START_FILE (while that file exists, a worker starting sleeps 5 s before it serves).

Paths: GET /env/NAME answers the value of NAME in its environment ("<unset>" without it);
GET /orphan leaves an orphan, as daemonising libraries and crash reporters do (a child that
calls setsid(), forks a grandchild `sleep ORPHAN_LIFE` and exits), and answers its pid;
GET /print/TEXT prints TEXT on stdout; GET /healthz answers 200 "ok" (500 after SIGUSR1;
never, after SIGUSR2: the connection is held until SIGTERM); anything else answers
"<slot> <pid>"."""
import os, sys

# First thing, before the slower imports: the tests count the processes started.
if os.environ.get("PID_DIR"):
    open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w").close()

import signal, socket, subprocess, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit(f"LISTEN_PID {os.environ.get('LISTEN_PID')!r} is not my pid {os.getpid()}")
if int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("no LISTEN_FDS")
want = os.environ.get("EXPECT_NAME")
if want and os.environ.get("LISTEN_FDNAMES", "").split(":")[0] != want:
    sys.exit(f"LISTEN_FDNAMES {os.environ.get('LISTEN_FDNAMES')!r} does not name fd 3 {want!r}")
slot = os.environ.get("CORRAL_SLOT", "?")
if os.environ.get("CHILD_DIR"):
    child = subprocess.Popen(["sleep", "300"])
    open(os.path.join(os.environ["CHILD_DIR"], str(child.pid)), "w").close()
sock = socket.socket(fileno=3)
# Shared by several processes: when a connection wakes them all, the losers' accept must not
# block (socketserver drops the BlockingIOError), or a SIGTERM would wait for the next one.
sock.setblocking(False)


health = ["ok"]  # ok | 500 | hang (SIGUSR1, SIGUSR2)
released = threading.Event()  # set at SIGTERM: hanging /healthz requests give up
signal.signal(signal.SIGUSR1, lambda *_: health.__setitem__(0, "500"))
signal.signal(signal.SIGUSR2, lambda *_: health.__setitem__(0, "hang"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            if health[0] == "hang":
                released.wait(120)
                self.close_connection = True
                return
            code, body = (500, b"unhealthy\n") if health[0] == "500" else (200, b"ok\n")
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if self.path.startswith("/slow"):
            time.sleep(0.05)
        if self.path.startswith("/print/"):
            print(self.path[len("/print/"):], flush=True)
        if self.path.startswith("/env/"):
            body = os.environ.get(self.path[len("/env/"):], "<unset>").encode()
        elif self.path.startswith("/orphan"):
            body = f"{orphan()}\n".encode()
        else:
            body = f"{slot} {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


def orphan():
    """A grandchild in a session of its own that outlives its parent: its pid."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 1024)
                os.execvp("sleep", ["sleep", os.environ.get("ORPHAN_LIFE", "0.2")])
            os.write(w, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(w)
    pid = os.read(r, 32).decode()
    os.close(r)
    os.waitpid(child, 0)
    return pid


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True


server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
server.socket = sock
def on_term(*_):
    released.set()
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)


def notify(message):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(message.encode(), path)
    finally:
        s.close()


if os.environ.get("SLOW_START_FILE") and os.path.exists(os.environ["SLOW_START_FILE"]):
    time.sleep(5)  # a slow start, only once the test asks for it
if not os.environ.get("NEVER_READY"):
    notify(f"READY=1\nSTATUS=serving on fd 3 as slot {slot}")
server.serve_forever(poll_interval=0.05)
notify("STOPPING=1")
server.server_close()
