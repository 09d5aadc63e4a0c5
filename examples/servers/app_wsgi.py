"""A bare WSGI app (no framework) for waitress and gunicorn's gthread worker under `corral run`.
GET /who -> {"pid", "peer", "peer_port"}: the pid that served the request and the client address
the server reports. See docs/src/recipes/waitress.md and gunicorn-workers.md."""
import json
import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/who":
        port = environ.get("REMOTE_PORT")
        body = json.dumps({"pid": os.getpid(), "peer": environ.get("REMOTE_ADDR"),
                           "peer_port": int(port) if port and str(port).isdigit() else port})
        status, kind = "200 OK", "application/json"
    elif path == "/":
        status, body, kind = "200 OK", f"hello from {os.getpid()}\n", "text/plain"
    else:
        status, body, kind = "404 Not Found", "not found\n", "text/plain"
    body = body.encode()
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    # waitress under `corral run`: `python3 app_wsgi.py` serves `app` on the socket inherited at fd 3
    # (waitress-serve has no option for an inherited socket; waitress.serve takes sockets=[...]).
    import socket

    import waitress

    waitress.serve(app, sockets=[socket.socket(fileno=3)], threads=4)
