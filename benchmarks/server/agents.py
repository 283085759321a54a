"""The agents every benchmarked server runs: plain functions, wrapped once as
mlflow_app_agent Agents (ours) and once with AgentServer's decorators (``agentserver_app``).
Importing this module does not import MLflow."""

from __future__ import annotations

import time
from typing import Any

from mlflow_app_agent import Agent

STREAM_EVENTS = 1000


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def sleepy_invoke(request: Any) -> dict[str, Any]:
    """(a) a sync agent that waits 20 ms (an LLM call stand-in)."""
    time.sleep(0.02)
    return {"output": [_message("done")]}


async def echo_invoke(request: Any) -> dict[str, Any]:
    """(b) an async echo."""
    content = request.input[-1].content
    return {"output": [_message(content if isinstance(content, str) else "")]}


def delta_stream(request: Any) -> Any:
    """(c) 1,000 text deltas, then the finished item."""
    for _ in range(STREAM_EVENTS):
        yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "tok "}
    yield {"type": "response.output_item.done", "item": _message("tok " * STREAM_EVENTS)}


sleepy = Agent("sleepy")
sleepy.invoke_method(sleepy_invoke)

echo = Agent("echo")
echo.invoke_method(echo_invoke)

streamer = Agent("streamer")
streamer.invoke_method(sleepy_invoke)
streamer.stream_method(delta_stream)
