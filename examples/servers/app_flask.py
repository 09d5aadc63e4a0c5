"""Flask (WSGI) app served by gunicorn (sync worker) under `corral run` (docs/src/recipes/gunicorn.md;
tests/real_programs.rs). gunicorn takes its socket from LISTEN_FDS when LISTEN_PID is its own pid.
GET /who -> {"pid", "peer", "peer_port"}: the pid that served the request and the client address
the framework reports."""
import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/who")
def who():
    port = request.environ.get("REMOTE_PORT")
    return jsonify(pid=os.getpid(), peer=request.remote_addr,
                   peer_port=int(port) if port and str(port).isdigit() else port)


@app.get("/")
def index():
    return f"hello from {os.getpid()}\n"
