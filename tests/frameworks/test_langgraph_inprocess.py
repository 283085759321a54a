"""The LangGraph wrapper of docs/authoring.md (real langgraph + langchain-core, a scripted
chat model) through the server's /responses and /invocations, in process (issue 15)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.authoring import as_agent
from mlflow_app_agent.server import create_app

pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")
AGENT_FILE = Path(__file__).with_name("langgraph_agent.py")
TOOL_ROUND = ["function_call", "function_call_output", "message"]
ASK = {"input": [{"role": "user", "content": "Paris"}]}


def _agent(monkeypatch: pytest.MonkeyPatch, model: Any = None) -> Any:
    from .fake_chat_model import ScriptedChatModel

    # the file builds a ChatOpenAI at import (never called here); it wants a key to exist
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused-in-process")
    spec = importlib.util.spec_from_file_location("_langgraph_agent", AGENT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = module.build_graph(model or ScriptedChatModel())
    return as_agent(module.LangGraphResponsesAgent(graph))


def _events(text: str) -> list[dict[str, Any]]:
    frames = [f[len("data: "):] for f in text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]", text
    return [json.loads(f) for f in frames[:-1]]


def test_langgraph_tool_round_is_complete_in_both_apis(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(_agent(monkeypatch), tracing=False)) as client:
        invoked = client.post("/invocations", json=ASK).json()
        assert [i["type"] for i in invoked["output"]] == TOOL_ROUND
        call = invoked["output"][0]
        assert call["id"] == call["call_id"]  # MLflow's LangChain helper does this
        events = _events(client.post("/responses", json={**ASK, "stream": True}).text)
    completed = events[-1]["response"]["output"]
    assert [i["type"] for i in completed] == TOOL_ROUND
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == completed[2]["content"][0]["text"] == "Forecast: sunny in Paris."
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2]


def test_a_tool_loop_ends_at_the_recursion_limit_as_an_agent_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from .fake_chat_model import LoopingChatModel

    with TestClient(create_app(_agent(monkeypatch, LoopingChatModel()), tracing=False)) as client:
        answer = client.post("/invocations", json=ASK)
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "agent_error"
    assert "Recursion limit of 12 reached" in error["message"], error
