"""Bare Starlette baselines: ``python starlette_app.py KIND PORT``.

* ``echo``: one route that parses the JSON body and echoes it as a response (no validation,
  no tracing): the ceiling for benchmark (b).
* ``sse``: 1,000 deltas through sse-starlette's EventSourceResponse (the library we could
  have used for SSE) for comparison with our own encoder in benchmark (c).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
import agents  # noqa: E402


async def echo(request: Request) -> Response:
    data = await request.json()
    content = data["input"][-1]["content"]
    return JSONResponse({"output": [agents._message(content)]})


async def sse(request: Request) -> Response:
    from sse_starlette.sse import EventSourceResponse

    async def frames():  # type: ignore[no-untyped-def]
        async for event in iterate_in_threadpool(agents.delta_stream(None)):
            yield {"data": json.dumps(event)}
        yield {"data": "[DONE]"}

    return EventSourceResponse(frames())


kind, port = sys.argv[1], int(sys.argv[2])
endpoint = {"echo": echo, "sse": sse}[kind]
app = Starlette(routes=[Route("/invocations", endpoint, methods=["POST"]),
                        Route("/ready", lambda r: Response("ok"), methods=["GET"])])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
