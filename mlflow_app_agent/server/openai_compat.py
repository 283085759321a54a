"""What the official ``openai`` client needs on ``/responses``.

MLflow's ResponsesAgent output lacks the Response envelope (``id``, ``object``,
``created_at``, ``status``, ``model``), and its streams carry text deltas without the
``response.created`` / ``output_item.added`` / ``content_part.added`` / ``response.completed``
lifecycle that ``client.responses.stream(...)`` accumulates. This module adds both, keeping
the agent's own events and ids.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mlflow_app_agent.authoring import DONE_EVENT, TEXT_DELTA_EVENT
from mlflow_app_agent.server.streaming import EventShaper


def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex


def envelope(result: dict[str, Any], *, model: str, response_id: str | None = None) -> dict[str, Any]:
    """A ResponsesAgentResponse with the Response fields the openai client reads."""
    out = dict(result)
    out.setdefault("id", response_id or new_response_id())
    out.setdefault("object", "response")
    out.setdefault("created_at", int(time.time()))
    out.setdefault("status", "completed")
    out.setdefault("model", model)
    out.setdefault("output", [])
    out.setdefault("parallel_tool_calls", False)
    out.setdefault("tool_choice", "auto")
    out.setdefault("tools", [])
    return out


class ResponsesShaper(EventShaper):
    """Agent events -> an OpenAI Responses stream (sequence numbers, lifecycle, indexes)."""

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._id = new_response_id()
        self._created = int(time.time())
        self._seq = 0
        self._index_of: dict[str, int] = {}  # item id -> output_index
        self._next_index = 0
        self._done: dict[int, Any] = {}
        self._custom_outputs: Any = None

    def _response(self, status: str, output: list[Any]) -> dict[str, Any]:
        response = envelope(
            {"output": output}, model=self._model, response_id=self._id
        )
        response["status"] = status
        response["created_at"] = self._created
        if self._custom_outputs is not None:
            response["custom_outputs"] = self._custom_outputs
        return response

    def _stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        event["sequence_number"] = self._seq
        self._seq += 1
        return event

    def _claim(self, item_id: str | None) -> tuple[int, bool]:
        if item_id is not None and item_id in self._index_of:
            return self._index_of[item_id], False
        index = self._next_index
        self._next_index += 1
        if item_id is not None:
            self._index_of[item_id] = index
        return index, True

    def start(self) -> list[dict[str, Any]]:
        return [
            self._stamp({"type": "response.created", "response": self._response("in_progress", [])})
        ]

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if event.get("custom_outputs") is not None:
            self._custom_outputs = event["custom_outputs"]
        if kind == TEXT_DELTA_EVENT:
            return self._text_delta(event)
        if kind == DONE_EVENT:
            return self._item_done(event)
        return [self._stamp(dict(event))]

    def _text_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item_id = event.get("item_id")
        index, new = self._claim(item_id)
        out: list[dict[str, Any]] = []
        if new:
            item: dict[str, Any] = {
                "type": "message",
                "id": item_id,
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out.append(
                self._stamp({"type": "response.output_item.added", "output_index": index, "item": item})
            )
            out.append(
                self._stamp(
                    {
                        "type": "response.content_part.added",
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    }
                )
            )
        delta = dict(event)
        delta["output_index"] = index
        delta.setdefault("content_index", 0)
        delta.setdefault("logprobs", [])
        out.append(self._stamp(delta))
        return out

    def _item_done(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = event.get("item")
        item_id = item.get("id") if isinstance(item, dict) else None
        if item_id is None and isinstance(item, dict):
            item_id = item.get("call_id")
        index, _ = self._claim(item_id)
        done = dict(event)
        done["output_index"] = index
        self._done[index] = item
        return [self._stamp(done)]

    def finish(self) -> list[dict[str, Any]]:
        output = [self._done[i] for i in sorted(self._done)]
        return [self._stamp({"type": "response.completed", "response": self._response("completed", output)})]

    def error(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._stamp({"type": "error", **error, "param": None, "error": error})]
