"""Pure checks of the ResponsesAgent contract: each returns a list of problems (empty = ok).

They are what the properties in :mod:`.properties` assert, and are usable on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DONE = "response.output_item.done"
DELTA = "response.output_text.delta"
# Fields that legitimately differ between two answers to the same request.
VOLATILE_KEYS = frozenset({"id", "item_id", "created_at", "status"})
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


def _pydantic_problem(model: Any, obj: Any, prefix: str) -> str | None:
    import pydantic

    from mlflow_app_agent.authoring import describe_validation_error

    try:
        model.model_validate(obj)
    except pydantic.ValidationError as exc:
        return describe_validation_error(exc, prefix=prefix)
    return None


def response_problems(response: Any) -> list[str]:
    """(a) ``response`` is a non-empty, JSON-ready ``ResponsesAgentResponse``."""
    from mlflow.types.responses import ResponsesAgentResponse

    if not isinstance(response, Mapping):
        return [f"invoke returned {type(response).__name__}, not a response object"]
    try:
        json.dumps(response)
    except (TypeError, ValueError) as exc:
        return [f"invoke output is not JSON-serializable: {exc}"]
    problem = _pydantic_problem(ResponsesAgentResponse, dict(response), "output")
    if problem:
        return [f"invoke output is not a valid ResponsesAgentResponse: {problem}"]
    if not response.get("output"):
        return ["invoke output has no output items (the agent did not answer)"]
    return []


def item_text(item: Mapping[str, Any]) -> str:
    """The text of an output message item: its ``output_text`` parts, concatenated."""
    parts = item.get("content") or []
    return "".join(
        p.get("text", "")
        for p in parts
        if isinstance(p, Mapping) and p.get("type") == "output_text"
    )


def stream_problems(events: list[Any]) -> list[str]:
    """(b) every event is a valid ``ResponsesAgentStreamEvent``, there is at least one done
    item, no ``error`` event, and the text deltas of each item add up to its done item's text
    and come before it.

    Items are told apart the way the server's ``/responses`` tells them apart: an item is
    open from its first delta until the done event with its id. Ids are not unique in
    practice (the OpenAI Agents SDK gives every item ``"__fake_id__"``), so a delta after a
    done item with the same id starts the next item; it is not merged into the closed one."""
    from mlflow.types.responses import ResponsesAgentStreamEvent

    problems: list[str] = []
    open_deltas: dict[str, list[str]] = {}  # item id -> the deltas of the item being streamed
    n_done = 0
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            problems.append(f"event {i} is {type(event).__name__}, not an event object")
            continue
        problem = _pydantic_problem(ResponsesAgentStreamEvent, dict(event), f"event[{i}]")
        if problem:
            problems.append(f"event {i} is not a valid ResponsesAgentStreamEvent: {problem}")
            continue
        kind = event.get("type")
        if kind == "error":
            problems.append(f"event {i} is an error event: {event.get('message')!r}")
        elif kind == DELTA:
            item_id = str(event.get("item_id"))
            open_deltas.setdefault(item_id, []).append(str(event.get("delta", "")))
        elif kind == DONE:
            n_done += 1
            item = event.get("item") or {}
            if item.get("id") is None:
                continue
            item_id = str(item["id"])
            if item_id in open_deltas:
                streamed = "".join(open_deltas.pop(item_id))
                text = item_text(item)
                if streamed != text:
                    problems.append(
                        f"event {i}: the text deltas of item {item_id!r} add up to "
                        f"{_short(streamed)} but its done item says {_short(text)}"
                    )
    for item_id in open_deltas:
        problems.append(
            f"text deltas for item {item_id!r} but no {DONE!r} event after them "
            "(a stream must end each item with a done event)"
        )
    if n_done == 0 and not problems:
        problems.append(f"the stream has no {DONE!r} event (the agent did not answer)")
    return problems


def normalize(value: Any) -> Any:
    """Drop volatile ids, ``None`` fields and empty annotation lists, for comparison."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if k in VOLATILE_KEYS or v is None or (k == "annotations" and v == []):
                continue
            out[k] = normalize(v)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def consistency_problems(response: Mapping[str, Any], events: list[Any]) -> list[str]:
    """(c) the done items of the stream, in order (and its custom_outputs), equal invoke's
    output, ignoring volatile ids."""
    from mlflow_app_agent.authoring import reduce_stream

    reduced = reduce_stream(events)
    problems = []
    want, got = normalize(response.get("output")), normalize(reduced["output"])
    if want != got:
        problems.append(
            f"the stream's done items differ from invoke's output:\n"
            f"      invoke: {_short(want, 400)}\n      stream: {_short(got, 400)}"
        )
    want_co = normalize(response.get("custom_outputs"))
    got_co = normalize(reduced.get("custom_outputs"))
    if want_co != got_co:
        problems.append(f"custom_outputs differ: invoke {_short(want_co)}, stream {_short(got_co)}")
    return problems


def rejection_problems(
    status: int, content_type: str, text: str, *, must_reject: bool, what: str,
    agent_may_refuse: bool = False,
) -> list[str]:
    """(d) a server's answer to a malformed body: 4xx with ``{"error": {"message"}}``;
    never 5xx, never a traceback; a 2xx only for bodies that are in fact valid.
    ``agent_may_refuse``: also a clean 500 ``agent_error`` with a message (a conversation
    the schema accepts but the agent's framework or LLM refuses)."""
    problems = []
    if any(marker in text for marker in TRACEBACK_MARKERS):
        problems.append(f"the {status} answer to {what} contains a traceback: {_short(text)}")
    if status == 500 and agent_may_refuse and _error_message(text, code="agent_error"):
        return problems
    if status >= 500:
        problems.append(f"{what} got {status} (a server error), not a 4xx: {_short(text)}")
    elif 400 <= status < 500:
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = None
        if not isinstance(message, str) or not message.strip():
            problems.append(
                f"{what} got {status} without a JSON body "
                f'{{"error": {{"message": ...}}}}: {_short(text)}'
            )
    elif 200 <= status < 300:
        if must_reject:
            problems.append(f"{what} was accepted with {status}; it must be rejected with a 4xx")
        elif content_type.startswith("application/json"):
            try:
                body = json.loads(text)
            except ValueError:
                return [*problems, f"{what} got {status} with a body that is not JSON"]
            problems.extend(response_problems(body))
    else:
        problems.append(f"{what} got an unexpected status {status}")
    return problems


def _error_message(text: str, *, code: str) -> str | None:
    """The message of an ``{"error": {"code": code, "message"}}`` body, if it is one."""
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return None
    message = error.get("message") if isinstance(error, dict) else None
    if error.get("code") != code or not isinstance(message, str) or not message.strip():
        return None
    return message


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = json.dumps(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[:limit] + "..."
