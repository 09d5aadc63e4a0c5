"""The WSGI twin of tests/programs/burn_worker.py, for uWSGI in benches/autoscale.py: every
request burns $BURN_MS (default 20) ms of the serving thread's CPU, then answers `- <pid>`."""
import os
import time

BURN = float(os.environ.get("BURN_MS", "20")) / 1000.0


def application(environ, start_response):
    end = time.thread_time() + BURN
    while time.thread_time() < end:
        sum(range(200))
    body = f"- {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
