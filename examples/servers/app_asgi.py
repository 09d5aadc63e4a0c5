"""A bare ASGI app (no framework) for hypercorn and gunicorn's asgi worker under `corral run`.
GET /who -> {"pid", "peer", "peer_port"}: the pid that served the request and the client address
the server reports. See docs/src/recipes/hypercorn.md and gunicorn-workers.md."""
import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/who":
        host, port = scope.get("client") or (None, None)
        status, body, kind = 200, json.dumps({"pid": os.getpid(), "peer": host, "peer_port": port}), b"application/json"
    elif scope["path"] == "/":
        status, body, kind = 200, f"hello from {os.getpid()}\n", b"text/plain"
    else:
        status, body, kind = 404, "not found\n", b"text/plain"
    body = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
