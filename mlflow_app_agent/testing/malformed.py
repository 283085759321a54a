"""Hypothesis strategies for malformed Responses requests, as HTTP bodies and as objects.

Each one says whether it *must* be rejected. That is decided by parsing it the way a Python
server does (``json.loads``, then MLflow's ``ResponsesAgentRequest``), not by a hand-kept
list, so the classification follows MLflow's schema. Those that parse (``input: []``, a
6 MB string, a JSON body labelled ``text/plain``) are edge cases: a server may accept them
or answer 4xx, but never 5xx.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from mlflow_app_agent.testing.strategies import (
    JSON,
    ROLES,
    identifiers,
    responses_requests,
    texts,
    unanswered_calls,
)

_RUNS = re.compile(r"(.)\1{15,}", re.DOTALL)

#: Ways a valid request is broken as a JSON object (sent JSON-encoded to a server).
OBJECT_KINDS: tuple[str, ...] = (
    "not_object", "missing_input", "input_not_list", "item_not_object",
    "empty_input", "unknown_role", "missing_role", "missing_content",
    "content_wrong_type", "unknown_item_type", "incomplete_function_call",
    "wrong_field_type", "deep_nesting_in_input", "deep_nesting_in_custom_inputs",
    "many_items", "unanswered_function_call", "orphan_function_call_output",
)  # fmt: skip
#: Ways a request body is broken below JSON: bytes, encoding, content type, size.
BYTE_KINDS: tuple[str, ...] = (
    "bad_json", "truncated_json", "invalid_utf8", "empty_body", "trailing_garbage",
    "nan", "wrong_content_type", "huge_string", "deep_nesting_bytes",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MalformedBody:
    """A request body to POST as-is. ``must_reject``: Python's JSON parser or MLflow's schema
    refuses it, so a server must answer 4xx; otherwise any non-5xx answer is acceptable.
    ``agent_may_refuse``: a broken conversation the schema accepts; the agent's own clean
    error (``agent_error`` with a message, no traceback) is acceptable too."""

    kind: str
    body: bytes
    content_type: str | None
    must_reject: bool
    agent_may_refuse: bool = False

    def preview(self, limit: int = 300) -> str:
        """The body as text for a report: runs of one character collapsed (``[×5000``), so
        deep nesting and huge strings stay readable; at most ``limit`` characters."""
        text = self.body.decode("utf-8", errors="backslashreplace")
        text = _RUNS.sub(lambda m: f"{m.group(1)}×{len(m.group(0))}", text)
        more = len(text) - limit
        return text[:limit] + (f"... ({more} more chars)" if more > 0 else "")


@dataclasses.dataclass(frozen=True)
class MalformedObject:
    """A malformed request as a Python object, for in-process agents."""

    kind: str
    obj: Any
    must_reject: bool
    agent_may_refuse: bool = False


def schema_rejects(obj: Any) -> bool:
    """Whether MLflow's ``ResponsesAgentRequest`` refuses ``obj``."""
    import pydantic
    from mlflow.types.responses import ResponsesAgentRequest

    if not isinstance(obj, dict):
        return True
    try:
        ResponsesAgentRequest.model_validate(obj)
    except (pydantic.ValidationError, RecursionError, ValueError, TypeError):
        return True
    return False


def broken_conversation(obj: Any) -> bool:
    """Whether ``obj`` is a request whose ``input`` no LLM API accepts as a conversation."""
    items = obj.get("input") if isinstance(obj, dict) else None
    return isinstance(items, list) and bool(unanswered_calls(items))


def body_is_broken_conversation(body: bytes) -> bool:
    try:
        return broken_conversation(json.loads(body))
    except (ValueError, RecursionError):
        return False


def body_rejected(body: bytes, *, openai_compat: bool = False) -> bool:
    """Whether a Python server must reject these bytes: not JSON, or not a valid request.

    ``openai_compat``: judge as an OpenAI-compatible ``/responses`` route does, where the
    Responses API also allows ``input`` as a plain string (one user message)."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return True
    if openai_compat and isinstance(obj, dict) and isinstance(obj.get("input"), str):
        obj = {**obj, "input": [{"role": "user", "content": obj["input"]}]}
    return schema_rejects(obj)


def must_reject_at(case: MalformedBody, path: str | None) -> bool:
    """``case.must_reject``, for the route it is sent to."""
    if path is not None and path.rstrip("/").endswith("/responses") and case.must_reject:
        return body_rejected(case.body, openai_compat=True)
    return case.must_reject


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def _malformed_object(draw: st.DrawFn, kinds: tuple[str, ...] = OBJECT_KINDS) -> tuple[str, Any]:
    """(kind, object) — a valid request broken in one way."""
    base = draw(responses_requests(max_items=3, optional_fields=()))
    obj = copy.deepcopy(base)
    message = {"role": "user", "content": "hi"}
    kind = draw(st.sampled_from(kinds))
    if kind == "not_object":
        return kind, draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=5),
                                    st.integers(), st.none(), st.booleans()))  # fmt: skip
    if kind == "missing_input":
        obj.pop("input")
        obj.update(draw(st.sampled_from(({}, {"messages": [message]}, {"inputs": [message]}))))
    elif kind == "input_not_list":
        obj["input"] = draw(st.one_of(st.text(max_size=10), st.integers(), st.none(),
                                      st.just(message), st.just({"0": message})))  # fmt: skip
    elif kind == "item_not_object":
        bad = draw(st.one_of(st.integers(), st.text(max_size=5), st.none(), st.just([message])))
        obj["input"].insert(draw(st.integers(0, len(obj["input"]))), bad)
    elif kind == "empty_input":
        obj["input"] = []
    elif kind == "unknown_role":
        role = draw(st.text(max_size=12).filter(lambda r: r not in ROLES))
        obj["input"].append({"role": role, "content": "hi"})
    elif kind == "missing_role":
        obj["input"].append({"content": draw(texts())})
    elif kind == "missing_content":
        obj["input"].append(draw(st.sampled_from(({"role": "user"},
                                                  {"role": "user", "type": "message"}))))  # fmt: skip
    elif kind == "content_wrong_type":
        content = draw(st.sampled_from((42, None, {"text": "hi"}, [42], [{"text": "hi"}],
                                        [{"type": "bogus", "text": "hi"}], True)))  # fmt: skip
        obj["input"].append({"role": "user", "content": content})
    elif kind == "unknown_item_type":
        obj["input"].append({"type": draw(identifiers.filter(lambda t: t not in _ITEM_TYPES))})
    elif kind == "incomplete_function_call":
        obj["input"].append(draw(st.sampled_from((
            {"type": "function_call", "name": "lookup"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": {"a": 1}},
            {"type": "function_call_output", "output": "x"},
            {"type": "function_call_output", "call_id": "c1", "output": 5},
        ))))  # fmt: skip
    elif kind == "wrong_field_type":
        name, value = draw(st.sampled_from((
            ("temperature", "hot"), ("max_output_tokens", "many"), ("custom_inputs", [1, 2]),
            ("custom_inputs", "x"), ("context", "ctx"), ("context", {"user_id": 5}),
            ("metadata", {"k": {"nested": 1}}), ("stream", "maybe"), ("top_p", [0.5]),
        )))  # fmt: skip
        obj[name] = value
    elif kind == "deep_nesting_in_input":
        obj["input"] = _nested(draw(st.integers(2, 200)))
    elif kind == "deep_nesting_in_custom_inputs":
        obj["custom_inputs"] = {"a": _nested(draw(st.integers(2, 200)))}
    elif kind == "many_items":
        obj["input"] = [message] * draw(st.sampled_from((1_000, 10_000)))
    elif kind == "unanswered_function_call":
        # what the standard LangGraph wrapper was sent before generated conversations were
        # well-formed: a call with no output, then the next user turn
        at = draw(st.integers(0, len(obj["input"]) - 1))
        obj["input"].insert(at, {"type": "function_call", "call_id": "call_lost",
                                 "name": draw(identifiers), "arguments": "{}"})  # fmt: skip
        if obj["input"][-1].get("role") != "user":
            obj["input"].append(message)
    elif kind == "orphan_function_call_output":
        obj["input"].append({"type": "function_call_output", "call_id": "call_nobody",
                             "output": draw(texts(20))})  # fmt: skip
    return kind, obj


_ITEM_TYPES = frozenset(
    {"message", "function_call", "reasoning", "function_call_output", "mcp_approval_request",
     "mcp_approval_response", "file_search_call", "computer_call", "web_search_call"}
)  # fmt: skip


def malformed_objects(kinds: Iterable[str] | None = None) -> st.SearchStrategy[MalformedObject]:
    """Malformed requests as objects (for ``Agent.invoke``), classified by MLflow's schema.

    ``kinds``: only these breakages (names from :data:`OBJECT_KINDS`); all by default."""
    chosen = _select(kinds, OBJECT_KINDS, "malformed_objects")
    return _malformed_object(chosen).map(
        lambda ko: MalformedObject(ko[0], ko[1], schema_rejects(ko[1]), broken_conversation(ko[1]))
    )


def _select(kinds: Iterable[str] | None, known: tuple[str, ...], where: str) -> tuple[str, ...]:
    if kinds is None:
        return known
    chosen = tuple(dict.fromkeys([kinds] if isinstance(kinds, str) else kinds))
    unknown = [k for k in chosen if k not in known]
    if unknown or not chosen:
        raise ValueError(
            f"{where}(kinds=...): unknown kind(s) {unknown or '(none given)'}; "
            f"known: {', '.join(known)}"
        )
    return chosen


def _valid_json(draw: st.DrawFn) -> bytes:
    return json.dumps(draw(responses_requests(max_items=3, optional_fields=()))).encode()


@st.composite
def _malformed_bytes(
    draw: st.DrawFn, kinds: tuple[str, ...] = BYTE_KINDS
) -> tuple[str, bytes, str | None]:
    kind = draw(st.sampled_from(kinds))
    ctype: str | None = JSON
    if kind == "bad_json":
        body = draw(st.one_of(st.binary(max_size=64), st.sampled_from(
            (b"{", b"{input: []}", b"{'input': []}", b'{"input": [,]}', b"null null", b"\x00")
        )))  # fmt: skip
    elif kind == "truncated_json":
        valid = _valid_json(draw)
        body = valid[: draw(st.integers(0, max(0, len(valid) - 1)))]
    elif kind == "invalid_utf8":
        body = b'{"input": [{"role": "user", "content": "\xff\xfe\xc3"}]}'
    elif kind == "empty_body":
        body = b""
    elif kind == "trailing_garbage":
        body = _valid_json(draw) + draw(st.sampled_from((b"}", b" x", b"\x00", b"{}")))
    elif kind == "nan":
        body = b'{"input": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    elif kind == "wrong_content_type":
        body = _valid_json(draw)
        ctype = draw(st.sampled_from((None, "text/plain", "application/x-www-form-urlencoded",
                                      "application/xml", "multipart/form-data")))  # fmt: skip
    elif kind == "huge_string":
        size = draw(st.sampled_from((65_536, 1_048_576, 6_291_456)))
        body = b'{"input": [{"role": "user", "content": "' + b"x" * size + b'"}]}'
    else:  # deep_nesting_bytes: past Python's JSON recursion limit for the deepest ones
        depth = draw(st.sampled_from((500, 5_000, 100_000)))
        nest = b"[" * depth + b"]" * depth
        if draw(st.booleans()):
            body = b'{"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"a": '
            body += nest + b"}}"
        else:
            body = b'{"input": ' + nest + b"}"
    return kind, body, ctype


def malformed_requests(kinds: Iterable[str] | None = None) -> st.SearchStrategy[MalformedBody]:
    """Malformed HTTP bodies: bad JSON bytes, wrong types, missing/empty input, unknown
    roles, huge strings, deep nesting, wrong content types (half byte-level, half JSON).

    ``kinds``: only these breakages (names from :data:`OBJECT_KINDS` and
    :data:`BYTE_KINDS`); all by default."""
    chosen = _select(kinds, OBJECT_KINDS + BYTE_KINDS, "malformed_requests")
    parts: list[st.SearchStrategy[tuple[str, bytes, str | None]]] = []
    if object_kinds := tuple(k for k in chosen if k in OBJECT_KINDS):
        parts.append(
            _malformed_object(object_kinds).map(
                lambda ko: (ko[0], json.dumps(ko[1]).encode(), JSON)
            )
        )
    if byte_kinds := tuple(k for k in chosen if k in BYTE_KINDS):
        parts.append(_malformed_bytes(byte_kinds))
    return st.one_of(*parts).map(
        lambda kbc: MalformedBody(
            kbc[0], kbc[1], kbc[2], body_rejected(kbc[1]), body_is_broken_conversation(kbc[1])
        )
    )
