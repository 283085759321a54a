"""Servers for the validation tests: our real server (``create_app``) and a naive one.

The naive server is deliberately broken the way hand-written agent servers often are: it
parses the body with ``json.loads`` without handling errors, so odd input becomes a 500.
Both run in-process under a real uvicorn on 127.0.0.1 (an ephemeral port), in a thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import RequestError


@contextlib.contextmanager
def serve(app: Any, *, ready_path: str = "/health") -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    import httpx
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while httpx.get(url + ready_path).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}{ready_path} never answered 200")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def naive_app(agent: Agent, *, crash_on_bad_json: bool = True) -> Any:
    """A small Starlette agent server; with ``crash_on_bad_json`` a body that is not JSON
    raises inside the handler, which Starlette turns into a plain-text 500."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": {"code": "invalid_request", "message": message}}, status)

    async def invocations(request: Request) -> Response:
        raw = await request.body()
        if crash_on_bad_json:
            payload = json.loads(raw)
        else:
            try:
                payload = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                return error(400, f"body is not JSON: {type(exc).__name__}")
        stream = isinstance(payload, dict) and payload.get("stream") is True
        try:
            if not stream:
                return JSONResponse(await agent.ainvoke(payload))
            events = agent.astream(payload)
            first = await events.__anext__()
        except RequestError as exc:
            return error(400, exc.message)

        async def frames() -> AsyncIterator[str]:
            yield f"data: {json.dumps(first)}\n\n"
            async for event in events:
                yield f"data: {json.dumps(event)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
