"""A small web app for `corral run` (stdlib only): it serves HTTP on the socket corral passes
it (fd 3, `LISTEN_FDS`, as systemd's socket activation does), says READY=1 on
`NOTIFY_SOCKET`, and finishes its requests on SIGTERM. Every worker of the cluster runs it.

    corral run -w 4 -l 0.0.0.0:8080 -- python3 app.py"""
import json, os, signal, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("app.py: no LISTEN_FDS: run it under `corral run`")
SLOT = os.environ.get("CORRAL_SLOT", "?")
GREETING = os.environ.get("APP_GREETING", "hello")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"greeting": GREETING, "slot": SLOT, "pid": os.getpid()}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        # One line per request on stdout: corral logs it with the worker's slot and pid.
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}".strip(), flush=True)


def notify(message):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


sock = socket.socket(fileno=3)
# The workers share the socket: one that loses a connection to another must not block.
sock.setblocking(False)
server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
server.socket = sock
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
notify(f"READY=1\nSTATUS=serving as slot {SLOT}")
server.serve_forever(poll_interval=0.1)
server.server_close()
