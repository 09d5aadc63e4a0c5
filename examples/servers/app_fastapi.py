"""FastAPI (ASGI) app served by uvicorn under `corral run` (`--fd 3`; docs/src/recipes/uvicorn.md;
tests/real_programs.rs), or alone with `--host/--port`. GET /who -> {"pid", "peer", "peer_port"}."""
import os

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/who")
def who(request: Request):
    c = request.client
    return {"pid": os.getpid(), "peer": c.host if c else None, "peer_port": c.port if c else None}


@app.get("/")
def index():
    return {"hello": os.getpid()}
