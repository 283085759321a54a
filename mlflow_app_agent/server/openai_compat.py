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

ADDED_EVENT = "response.output_item.added"
PART_ADDED_EVENT = "response.content_part.added"
# The response's own lifecycle: the server sends these, once, for the whole request.
_LIFECYCLE_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.failed",
        "response.incomplete",
    }
)


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
    """Agent events -> an OpenAI Responses stream (sequence numbers, lifecycle, indexes).

    Output indexes follow the order in which items are produced. An item is *open* from its
    first event (a text delta, or the agent's own ``output_item.added``) until its done event;
    only an open item's later events share its index. Ids are passed through and never merge
    distinct items: MLflow's LangChain helper gives a ``function_call`` the id of its
    ``call_id``, the Agents SDK gives every item ``"__fake_id__"``. Each done item that was not
    opened gets an ``output_item.added`` first, as the OpenAI API sends. The response
    lifecycle (``response.created`` ... ``response.completed``) belongs to the server: an
    agent's own lifecycle events (e.g. forwarded from an inner model call) are dropped.
    """

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._id = new_response_id()
        self._created = int(time.time())
        self._seq = 0
        self._open: dict[Any, _OpenItem] = {}  # item id (None too) -> the item being streamed
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

    def _new_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

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
        if kind in _LIFECYCLE_EVENTS:
            return []
        if kind == ADDED_EVENT:
            return self._item_added(event)
        out = dict(event)
        opened = self._open.get(event.get("item_id"), None) if "item_id" in event else None
        if opened is not None:
            out["output_index"] = opened.index
            if kind == PART_ADDED_EVENT:
                opened.has_part = True
        return [self._stamp(out)]

    def _item_added(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = event.get("item")
        item_id = item.get("id") if isinstance(item, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        index = self._new_index()
        # A message the agent announced itself gets a content part from here only if the
        # agent sends none before its first text delta.
        self._open[item_id] = _OpenItem(index, kind, has_part=kind != "message")
        return [self._stamp({**event, "output_index": index})]

    def _text_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item_id = event.get("item_id")
        opened = self._open.get(item_id)
        out: list[dict[str, Any]] = []
        if opened is None:
            opened = self._open[item_id] = _OpenItem(self._new_index(), "message")
            item: dict[str, Any] = {
                "type": "message",
                "id": item_id,
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out.append(self._stamp(
                {"type": ADDED_EVENT, "output_index": opened.index, "item": item}
            ))
        if not opened.has_part:
            opened.has_part = True
            out.append(
                self._stamp(
                    {
                        "type": PART_ADDED_EVENT,
                        "item_id": item_id,
                        "output_index": opened.index,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    }
                )
            )
        delta = dict(event)
        delta["output_index"] = opened.index
        delta.setdefault("content_index", 0)
        delta.setdefault("logprobs", [])
        out.append(self._stamp(delta))
        return out

    def _item_done(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = event.get("item")
        item_id = item.get("id") if isinstance(item, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        out: list[dict[str, Any]] = []
        opened = self._open.get(item_id)
        if opened is not None and opened.kind == kind:
            del self._open[item_id]
            index = opened.index
        else:
            index = self._new_index()
            out.append(self._stamp({"type": ADDED_EVENT, "output_index": index, "item": item}))
        done = dict(event)
        done["output_index"] = index
        self._done[index] = item
        out.append(self._stamp(done))
        return out

    def finish(self) -> list[dict[str, Any]]:
        output = [self._done[i] for i in sorted(self._done)]
        return [self._stamp({"type": "response.completed", "response": self._response("completed", output)})]

    def error(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._stamp({"type": "error", **error, "param": None, "error": error})]


class _OpenItem:
    """An output item whose done event has not come yet."""

    __slots__ = ("index", "kind", "has_part")

    def __init__(self, index: int, kind: Any, *, has_part: bool = False) -> None:
        self.index = index
        self.kind = kind
        self.has_part = has_part
