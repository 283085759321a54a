"""A deterministic echo agent: no LLM needed, so the whole workflow runs anywhere.

It answers with the text of the last user message. ``stream`` emits the answer word by word
as ``response.output_text.delta`` events, then the finished item, so invoke (derived from
nothing: it is written out too) and stream agree exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow

from mlflow_app_agent import Agent, request_context

agent = Agent("echo", description="Echoes the last user message; deterministic.")


def _last_user_text(request: Any) -> str:
    for item in reversed(request.input):
        data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        if data.get("role") == "user":
            content = data.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    part.get("text", "") for part in content if isinstance(part, dict)
                )
    return ""


def _answer(request: Any) -> str:
    text = _last_user_text(request)
    user = request_context().user
    return f"{text}" if not user else f"{text} (for {user})"


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg-echo",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


@agent.invoke_method
def invoke(request: Any) -> dict[str, Any]:
    return {"output": [_message(_answer(request))]}


@agent.stream_method
def stream(request: Any) -> Iterator[dict[str, Any]]:
    text = _answer(request)
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = word if i == len(words) - 1 else word + " "
        yield {"type": "response.output_text.delta", "item_id": "msg-echo", "delta": delta}
    yield {"type": "response.output_item.done", "item": _message(text)}


mlflow.models.set_model(agent)
