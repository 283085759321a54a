"""Agents the server tests serve, in-process and from real uvicorn processes
(``tests/server/agents.py:<name>``). Deterministic, no LLM."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from mlflow_app_agent import Agent, request_context


def _text_of(request: Any) -> str:
    last = request.input[-1]
    content = getattr(last, "content", "")
    if isinstance(content, list):
        return "".join(str(getattr(c, "text", "") or (c.get("text") if isinstance(c, dict)
                                                       else "")) for c in content)
    return str(content)


def _message(text: str, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


# --- echo: sync invoke, sync stream of word deltas --------------------------------------------
echo = Agent("echo", description="repeats the last user message")


@echo.invoke_method
def _echo_invoke(request: Any) -> dict[str, Any]:
    ctx = request_context()
    return {
        "output": [_message(_text_of(request))],
        "custom_outputs": {"user": ctx.user, "request_id": ctx.request_id,
                           "has_token": ctx.access_token is not None},
    }


@echo.stream_method
def _echo_stream(request: Any):
    text = _text_of(request)
    for word in text.split(" "):
        yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": word + " "}
    yield {"type": "response.output_item.done", "item": _message(text)}


# --- async echo ------------------------------------------------------------------------------
async_echo = Agent("async-echo")


@async_echo.invoke_method
async def _async_invoke(request: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"output": [_message(_text_of(request))]}


@async_echo.stream_method
async def _async_stream(request: Any):
    for i in range(3):
        await asyncio.sleep(0)
        yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": f"t{i}"}
    yield {"type": "response.output_item.done", "item": _message("t0t1t2")}


# --- failures -------------------------------------------------------------------------------
broken = Agent("broken")


@broken.invoke_method
def _broken_invoke(request: Any) -> dict[str, Any]:
    raise RuntimeError("database unreachable")


@broken.stream_method
def _broken_stream(request: Any):
    if _text_of(request) == "late":
        yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "partial"}
    raise RuntimeError("model crashed")


leaky = Agent("leaky")


@leaky.invoke_method
def _leaky_invoke(request: Any) -> dict[str, Any]:
    raise PermissionError(f"token {request_context().access_token} rejected")


bad_output = Agent("bad-output")


@bad_output.invoke_method
def _bad_output(request: Any) -> Any:
    return ["not", "a", "response"]


# --- slow / endless ----------------------------------------------------------------------------
slow = Agent("slow")


@slow.invoke_method
def _slow_invoke(request: Any) -> dict[str, Any]:
    time.sleep(float(_text_of(request) or "0.02"))
    return {"output": [_message("done")]}


@slow.stream_method
def _slow_stream(request: Any):
    yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "first"}
    time.sleep(float(_text_of(request) or "0.02"))
    yield {"type": "response.output_item.done", "item": _message("first")}


# Blocks in invoke until $GATE_DIR/open exists, after writing $GATE_DIR/started: a request
# that is provably in flight, without guessing how long anything takes.
gated = Agent("gated")


@gated.invoke_method
def _gated_invoke(request: Any) -> dict[str, Any]:
    gate = Path(os.environ["GATE_DIR"])
    (gate / "started").touch()
    for _ in range(6000):  # at most ~60 s, so a broken test cannot hang the server
        if (gate / "open").exists():
            break
        time.sleep(0.01)
    return {"output": [_message("through the gate")]}


endless = Agent("endless")


@endless.stream_method
def _endless_stream(request: Any):
    """Streams until closed; the marker file proves the generator was closed."""
    marker = Path(os.environ.get("ENDLESS_MARKER", "endless.closed"))
    try:
        i = 0
        while True:
            yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": f"{i} "}
            i += 1
            time.sleep(0.01)
    finally:
        marker.write_text("closed")


endless_async = Agent("endless-async")


@endless_async.stream_method
async def _endless_async_stream(request: Any):
    marker = Path(os.environ.get("ENDLESS_MARKER", "endless.closed"))
    try:
        i = 0
        while True:
            yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": f"{i} "}
            i += 1
            await asyncio.sleep(0.01)
    finally:
        marker.write_text("closed")


# --- impatient: the agent's own TimeoutError (an upstream call timed out) ----------------------
impatient = Agent("impatient")


@impatient.invoke_method
def _impatient_invoke(request: Any) -> dict[str, Any]:
    raise TimeoutError("upstream LLM call timed out after 30 s")


@impatient.stream_method
def _impatient_stream(request: Any):
    if _text_of(request) == "at once":
        raise TimeoutError("upstream LLM call timed out after 30 s")
    yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "partial"}
    raise TimeoutError("upstream LLM call timed out after 30 s")


# --- spills secrets into its exceptions (issue 14 items 5-6) ----------------------------------
spill = Agent("spill")


def _spilled(request: Any) -> str:
    text = _text_of(request)
    if text == "token":
        return f"upstream refused token {request_context().access_token}"
    if text == "env":
        return f"upstream refused key {os.environ.get('SERVING_API_KEY')}"
    return "upstream refused token dapiSECRET123"


@spill.invoke_method
def _spill_invoke(request: Any) -> dict[str, Any]:
    raise RuntimeError(_spilled(request))


@spill.stream_method
def _spill_stream(request: Any):
    yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "partial"}
    raise RuntimeError(_spilled(request))
# --- colliding ids (issue 15): a call whose id is its call_id; every item "__fake_id__" -------
# MLflow's LangChain helper: a function_call's id equals its call_id, and the output of that
# call carries the same call_id.
tool_round = Agent("tool-round")


@tool_round.stream_method
def _tool_round_stream(request: Any):
    yield {"type": "response.output_item.done", "item": {
        "type": "function_call", "id": "call_1", "call_id": "call_1", "name": "lookup",
        "arguments": '{"q": "x"}'}}
    yield {"type": "response.output_item.done", "item": {
        "type": "function_call_output", "call_id": "call_1", "output": "42"}}
    for word in ("the ", "answer ", "is ", "42"):
        yield {"type": "response.output_text.delta", "item_id": "msg_1", "delta": word}
    yield {"type": "response.output_item.done", "item": _message("the answer is 42")}


# The OpenAI Agents SDK's to_input_item(): every item has the id "__fake_id__".
fake_ids = Agent("fake-ids")
FAKE_ID = "__fake_id__"


@fake_ids.invoke_method
def _fake_ids_invoke(request: Any) -> dict[str, Any]:
    return {"output": [
        {"type": "function_call", "id": FAKE_ID, "call_id": "call_9", "name": "lookup",
         "arguments": "{}"},
        {"type": "function_call_output", "id": FAKE_ID, "call_id": "call_9", "output": "sunny"},
        _message("it is sunny", FAKE_ID),
    ]}


# An agent forwarding an inner model's whole Responses stream (its own lifecycle events,
# output_item.added, content parts, function-call argument deltas) as it comes.
forwarder = Agent("forwarder")


@forwarder.stream_method
def _forwarder_stream(request: Any):
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_2", "name": "lookup",
            "arguments": ""}
    inner = {"id": "resp_inner", "object": "response", "status": "in_progress", "output": []}
    yield {"type": "response.created", "response": inner}
    yield {"type": "response.output_item.added", "output_index": 0, "item": call}
    yield {"type": "response.function_call_arguments.delta", "item_id": "fc_1",
           "output_index": 0, "delta": "{}"}
    yield {"type": "response.output_item.done", "output_index": 0,
           "item": {**call, "arguments": "{}"}}
    yield {"type": "response.completed", "response": {**inner, "status": "completed"}}
    yield {"type": "response.output_item.done", "item": {
        "type": "function_call_output", "call_id": "call_2", "output": "ok"}}
    yield {"type": "response.output_item.added", "output_index": 0, "item": {
        "type": "message", "id": "msg_2", "role": "assistant", "content": [],
        "status": "in_progress"}}
    yield {"type": "response.content_part.added", "item_id": "msg_2", "output_index": 0,
           "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}
    yield {"type": "response.output_text.delta", "item_id": "msg_2", "output_index": 0,
           "content_index": 0, "delta": "done"}
    yield {"type": "response.output_item.done", "output_index": 0, "item": _message("done", "msg_2")}


# --- forking: forks a child (as a multiprocessing "fork" pool would) that holds every fd the
# server has, the trace writer's pipe too, until $FORK_DIR/release appears ------------------
forking = Agent("forking")


@forking.invoke_method
def _forking_invoke(request: Any) -> dict[str, Any]:
    if _text_of(request) != "fork":
        return {"output": [_message("not forked")]}
    gate = Path(os.environ["FORK_DIR"])
    pid = os.fork()
    if pid == 0:  # the child: no Python clean-up, just wait (at most 5 min)
        deadline = time.monotonic() + 300
        while not (gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os._exit(0)
    (gate / "child.pid").write_text(str(pid))
    return {"output": [_message(f"forked {pid}")]}
