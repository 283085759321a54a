"""Agents for the validation tests: the quickstart echo agent and deliberately broken ones.

Each broken agent breaks exactly one part of the contract, on some inputs only where that
is the point, so the tests can check that the property catches it and that hypothesis
shrinks the request to a small, readable counterexample.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_app_agent import Agent

ECHO_PATH = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


def load_echo() -> Agent:
    """The quickstart's echo agent, imported from its models-from-code file."""
    spec = importlib.util.spec_from_file_location("_validate_echo_agent", ECHO_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    agent: Agent = module.agent
    return agent


def last_text(request: Any) -> str:
    for item in reversed(request.input):
        data = item.model_dump()
        if data.get("role") == "user":
            content = data["content"]
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def message(text: str, item_id: str = "msg-1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def wrong_output_shape() -> Agent:
    """invoke answers a bare string content and no item id."""
    agent = Agent("wrong-shape")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [{"type": "message", "role": "assistant", "content": last_text(request)}]}

    return agent


def stream_without_done() -> Agent:
    """stream emits the text deltas but never the finished item."""
    agent = Agent("no-done")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message(last_text(request))]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        for word in last_text(request).split(" "):
            yield {"type": "response.output_text.delta", "item_id": "msg-1", "delta": word}

    return agent


def stream_disagrees() -> Agent:
    """stream upper-cases the answer when it holds a digit; invoke never does."""
    agent = Agent("disagree")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message(last_text(request))]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        text = last_text(request)
        if any(c.isdigit() for c in text):
            text = text.upper() + "!"
        yield {"type": "response.output_text.delta", "item_id": "msg-1", "delta": text}
        yield {"type": "response.output_item.done", "item": message(text)}

    return agent


def raises_on_custom_inputs() -> Agent:
    """invoke crashes whenever the request carries custom_inputs."""
    agent = Agent("raises")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        if request.custom_inputs is not None:
            raise KeyError("session_id")
        return {"output": [message(last_text(request))]}

    return agent


def deltas_mismatch() -> Agent:
    """stream's deltas drop the spaces that the done item has."""
    agent = Agent("bad-deltas")

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        text = last_text(request)
        for word in text.split(" "):
            yield {"type": "response.output_text.delta", "item_id": "msg-1", "delta": word}
        yield {"type": "response.output_item.done", "item": message(text)}

    return agent


def endless_stream() -> Agent:
    agent = Agent("endless")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message("hi")]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        while True:
            yield {"type": "response.output_text.delta", "item_id": "msg-1", "delta": "."}

    return agent


def hangs() -> Agent:
    agent = Agent("hangs")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        time.sleep(3600)
        return {"output": []}

    return agent


def responses_agent_echo() -> Any:
    """A plain ``mlflow.pyfunc.ResponsesAgent`` with predict and predict_stream."""
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

    class Echo(ResponsesAgent):
        def predict(self, request: Any) -> ResponsesAgentResponse:
            return ResponsesAgentResponse(output=[message(last_text(request))])

        def predict_stream(self, request: Any) -> Iterator[ResponsesAgentStreamEvent]:
            text = last_text(request)
            yield ResponsesAgentStreamEvent(
                type="response.output_text.delta", item_id="msg-1", delta=text
            )
            yield ResponsesAgentStreamEvent(type="response.output_item.done", item=message(text))

    return Echo()


def fresh_ids() -> Agent:
    """Correct, but every answer gets new item ids (as real LLM agents' do)."""
    import uuid

    agent = Agent("fresh-ids")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message(last_text(request), f"msg_{uuid.uuid4().hex}")]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        item_id, text = f"msg_{uuid.uuid4().hex}", last_text(request)
        yield {"type": "response.output_text.delta", "item_id": item_id, "delta": text}
        yield {"type": "response.output_item.done", "item": message(text, item_id)}

    return agent
