"""gunicorn settings of `benches/supervisors.rs`: the ready line the bench waits for, once the
arbiter listens (it then waits until every worker answers)."""


def when_ready(server):
    print(f"listening on {server.LISTENERS[0]}", flush=True)


def post_fork(server, worker):
    import os

    os.environ["GUNICORN_WORKER_AGE"] = str(worker.age)
