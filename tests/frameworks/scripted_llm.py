"""A scripted OpenAI-compatible chat-completions server on loopback, standing in for an LLM.

Both framework agents (LangGraph through ``langchain-openai``'s ``ChatOpenAI``, the OpenAI
Agents SDK through ``OpenAIChatCompletionsModel``) talk to it with the real ``openai``
client, streamed and not. The script, from the last message of the conversation:

* a user turn -> a call of the first offered tool with ``{"city": <the user's text>}``
  (when no tool is offered, a plain answer);
* anything else (a tool result, an assistant turn) -> ``Forecast: <tool result>.``, streamed
  as several content deltas;
* a user turn containing :data:`FAIL` -> HTTP 400 with an OpenAI-style error whose message
  is :data:`FAIL_MESSAGE` (the framework raises it; the agent server must surface it).

It runs under a real uvicorn in a daemon thread of the test process (see :func:`running`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

FAIL = "please-fail-the-llm"
FAIL_MESSAGE = "scripted LLM refused: the prompt asked it to fail"
MODEL = "scripted-llm"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def call_id_for(text: str) -> str:
    """The (deterministic) tool-call id the script uses for a user text."""
    return "call_" + hashlib.sha256(text.encode()).hexdigest()[:12]


def reply(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the script answers ``body`` with (chat-completions shape)."""
    messages = body.get("messages") or [{}]
    last = messages[-1]
    tools = body.get("tools") or []
    if last.get("role") == "user" and tools:
        asked = _text(last.get("content"))
        name = tools[0].get("function", {}).get("name", "tool")
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": call_id_for(asked), "type": "function",
            "function": {"name": name, "arguments": json.dumps({"city": asked})},
        }]}
    if last.get("role") == "user":
        return {"role": "assistant", "content": f"You said: {_text(last.get('content'))}."}
    return {"role": "assistant", "content": f"Forecast: {_text(last.get('content'))}."}


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


class ScriptedLLM:
    """The ASGI app plus a record of the requests it answered (for assertions)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        async def completions(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users and FAIL in _text(users[-1].get("content")):
                return JSONResponse({"error": {
                    "message": FAIL_MESSAGE, "type": "invalid_request_error", "code": None,
                    "param": None}}, status_code=400)
            message = reply(body)
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            created = int(time.time())
            ident = "chatcmpl-" + hashlib.sha256(  # the same, streamed or not
                json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:16]
            usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
            if not body.get("stream"):
                return JSONResponse({
                    "id": ident, "object": "chat.completion", "created": created,
                    "model": MODEL, "usage": usage,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                 "logprobs": None}],
                })
            base = {"id": ident, "object": "chat.completion.chunk", "created": created,
                    "model": MODEL}
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
            if message.get("tool_calls"):
                deltas += [{"tool_calls": [{"index": i, **call}]}
                           for i, call in enumerate(message["tool_calls"])]
            else:
                deltas += [{"content": piece} for piece in _chunks(message["content"])]
            include_usage = (body.get("stream_options") or {}).get("include_usage")

            async def frames() -> AsyncIterator[str]:
                for i, delta in enumerate(deltas):
                    last = i == len(deltas) - 1
                    choice = {"index": 0, "delta": delta,
                              "finish_reason": finish if last else None, "logprobs": None}
                    yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
                if include_usage:
                    yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(frames(), media_type="text/event-stream")

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]})

        return Starlette(routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ])


@contextlib.contextmanager
def running() -> Iterator[tuple[str, ScriptedLLM]]:
    """Serve a :class:`ScriptedLLM` on 127.0.0.1 (ephemeral port); yield ``(base_url, llm)``
    where ``base_url`` ends in ``/v1`` as the openai client expects."""
    import httpx
    import uvicorn

    llm = ScriptedLLM()
    server = uvicorn.Server(uvicorn.Config(llm.app(), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="scripted-llm", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the scripted LLM server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    assert httpx.get(base_url + "/models", timeout=10).status_code == 200
    try:
        yield base_url, llm
    finally:
        server.should_exit = True
        thread.join(timeout=10)
