"""``/responses`` streams: output indexes follow production order whatever the items' ids
(issue 15), in-process and through the real ``openai`` client against a real uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import agents
from .test_routes import MSG, client_for, sse_events

TOOL_ROUND = ["function_call", "function_call_output", "message"]


def _stream(agent: Any) -> list[dict[str, Any]]:
    with client_for(agent) as c:
        resp = c.post("/responses", json={**MSG, "stream": True})
        assert resp.status_code == 200, resp.text
        return sse_events(resp.text)


def _check_indexes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item is added once, at the next index, and done at the index it was added at;
    returns the completed output."""
    added: dict[int, Any] = {}
    done: dict[int, Any] = {}
    for e in events:
        if e["type"] == "response.output_item.added":
            assert e["output_index"] == len(added), e
            added[e["output_index"]] = e["item"]
        elif e["type"] == "response.output_item.done":
            index = e["output_index"]
            assert index in added and index not in done, e
            assert added[index].get("id") == e["item"].get("id")
            done[index] = e["item"]
        elif "output_index" in e:
            assert e["output_index"] in added and e["output_index"] not in done, e
    assert sorted(done) == sorted(added)
    assert [e["type"] for e in events].count("response.completed") == 1
    assert [e["type"] for e in events].count("response.created") == 1
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed["type"] == "response.completed"
    output: list[dict[str, Any]] = completed["response"]["output"]
    assert output == [done[i] for i in sorted(done)]
    return output


def test_a_call_whose_id_is_its_call_id_keeps_its_own_index() -> None:
    events = _stream(agents.tool_round)
    output = _check_indexes(events)
    assert [i["type"] for i in output] == TOOL_ROUND
    assert output[0]["id"] == output[0]["call_id"] == output[1]["call_id"] == "call_1"
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert {e["output_index"] for e in deltas} == {2}


def test_items_sharing_one_id_are_not_merged() -> None:
    output = _check_indexes(_stream(agents.fake_ids))
    assert [i["type"] for i in output] == TOOL_ROUND
    assert {i["id"] for i in output} == {agents.FAKE_ID}  # ids are passed through


def test_an_inner_models_stream_is_reindexed_under_one_lifecycle() -> None:
    events = _stream(agents.forwarder)
    output = _check_indexes(events)
    assert [i["type"] for i in output] == TOOL_ROUND
    assert events[0]["response"]["id"] != "resp_inner"
    args = next(e for e in events if e["type"] == "response.function_call_arguments.delta")
    assert args["output_index"] == 0
    parts = [e for e in events if e["type"] == "response.content_part.added"]
    assert [p["output_index"] for p in parts] == [2]  # the agent's own, not a second one


def test_invocations_output_is_unchanged() -> None:
    with client_for(agents.fake_ids) as c:
        body = c.post("/invocations", json=MSG).json()
    assert [i["type"] for i in body["output"]] == TOOL_ROUND


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["tool_round", "fake_ids", "forwarder"])
def test_openai_client_sees_every_item_in_order(serve: Any, agents_path: Path, name: str) -> None:
    from openai import OpenAI

    server = serve(f"{agents_path}:{name}")
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)

    def kinds(output: list[Any]) -> list[str]:
        return [item.type for item in output]

    with client.responses.stream(model=name, input="go") as managed:
        final = managed.get_final_response()
    assert kinds(final.output) == TOOL_ROUND
    assert final.output_text == {"tool_round": "the answer is 42", "fake_ids": "it is sunny",
                                 "forwarder": "done"}[name]

    events = list(client.responses.create(model=name, input="go", stream=True))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert kinds(completed.response.output) == TOOL_ROUND

    response = client.responses.create(model=name, input="go")
    assert kinds(response.output) == TOOL_ROUND
    assert response.output[0].call_id == response.output[1].call_id
