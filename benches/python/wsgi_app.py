"""The Python app of `benches/supervisors.rs` under gunicorn (`gunicorn -w 2 wsgi_app:app`): the
same answers as tests/programs/activated_worker.py, "<worker> <pid>" (gunicorn has no slot
numbers: its worker's age, 1, 2, … in start order), `/slow` waits 50 ms."""
import os
import time


def app(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/slow"):
        time.sleep(0.05)
    age = os.environ.get("GUNICORN_WORKER_AGE", "?")
    body = f"{age} {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
