"""Reading and checking request bodies: size limit while reading, JSON, stream selection."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request

from mlflow_app_agent.errors import PayloadTooLargeError, RequestError, UnsupportedMediaTypeError
from mlflow_app_agent.server.deadlines import Deadlines

# After the limit is hit we keep reading (and discarding) up to this much, so a client that
# is still uploading gets our 413 instead of a connection reset mid-write.
_DISCARD_LIMIT = 64 * 1024 * 1024


async def read_body(request: Request, headers: Mapping[str, str], limit: int, timeout: float,
                    deadlines: Deadlines) -> bytes:
    """The body, refusing more than ``limit`` bytes without buffering the excess, and a body
    that takes longer than ``timeout`` seconds (0: no limit) to arrive (408). ``headers``:
    the request's headers as the caller already holds them (their Content-Length)."""
    declared = headers.get("content-length")
    if not timeout:
        return await _read_body(request, limit, declared)
    try:
        async with deadlines.after(timeout):
            return await _read_body(request, limit, declared)
    except TimeoutError:
        raise RequestError(
            f"the request body did not arrive within {timeout:g} s (a Content-Length larger "
            "than what was sent?); raise MLFLOW_APP_AGENT_BODY_READ_TIMEOUT or serve "
            "--body-read-timeout", code="request_timeout", status_code=408,
        ) from None


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than the {limit} byte limit "
        "(raise it with MLFLOW_APP_AGENT_MAX_BODY_BYTES or serve --max-body-bytes)"
    )


async def _read_body(request: Request, limit: int, declared: str | None) -> bytes:
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise RequestError("Content-Length header is not a number") from None
        if declared_size > limit:
            await _discard(request, declared_size)
            raise _too_large(limit)
    # ASGI messages read directly: Starlette's request.stream() is an async generator, a few
    # µs per request more for the one or two messages a typical body takes
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            if more:
                await _discard(request, size)
            raise _too_large(limit)
        chunks.append(chunk)
        if not more:
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._body = body  # Starlette's own cache: a later request.body() returns it
    return body


async def _discard(request: Request, seen: int) -> None:
    """Read and drop the rest of an over-limit body, up to ``_DISCARD_LIMIT`` bytes."""
    while seen <= _DISCARD_LIMIT:
        message = await request.receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def require_json(content_type: str | None) -> None:
    """Refuse bodies not declared as JSON (``application/json`` or ``application/*+json``).
    Browsers send form posts and ``text/plain`` / body-less-type fetches across origins
    without a CORS preflight; a JSON content type forces one, which the server denies unless
    CORS origins are configured."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/")
                                        and media.endswith("+json")):
        return
    got = f"Content-Type {media!r}" if media else "no Content-Type"
    raise UnsupportedMediaTypeError(
        f"request body must be JSON: send Content-Type: application/json (got {got})"
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise RequestError("request body is empty; send a JSON object with an 'input' list")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError("request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        # CPython's decoder gives up on nesting deeper than the interpreter's stack allows.
        raise RequestError("request body is nested too deeply to be a Responses request") from None
    if not isinstance(data, dict):
        raise RequestError(
            f"request body must be a JSON object with an 'input' list, got {_json_kind(data)}"
        )
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:  # else it cannot nest that deep
        _check_depth(data)
    return data


MAX_JSON_DEPTH = 64


def _check_depth(data: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse absurd nesting up front: validation, tracing and agents all recurse over the
    request, and a Responses request needs a handful of levels (custom_inputs a few more)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise RequestError(f"request body nests deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


def wants_stream(data: dict[str, Any], accept: str | None) -> bool:
    flag = data.get("stream")
    if flag is not None and not isinstance(flag, bool):
        raise RequestError(
            f"request.stream: must be true or false, got {_json_kind(flag)}", status_code=422
        )
    if flag:
        return True
    return flag is None and bool(accept) and "text/event-stream" in (accept or "")


def normalize_openai_input(data: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Responses API allows ``input`` as a plain string and a separate
    ``instructions`` string; MLflow's request wants a list of messages."""
    out = dict(data)
    value = out.get("input")
    if isinstance(value, str):
        out["input"] = [{"role": "user", "content": value}]
    elif "input" in out and not isinstance(value, list):
        raise RequestError(
            f"request.input: must be a string or a list of input items, got {_json_kind(value)}",
            code="invalid_request", status_code=422,
        )
    instructions = out.pop("instructions", None)
    if isinstance(instructions, str) and instructions and isinstance(out.get("input"), list):
        out["input"] = [{"role": "system", "content": instructions}, *out["input"]]
    return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
