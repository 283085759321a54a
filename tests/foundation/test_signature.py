"""The log-time contract check on its own: the input example, invoke's output and every
stream event are validated with MLflow's own models; each failure names what is wrong."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import SignatureError
from mlflow_app_agent.signature import (
    DEFAULT_INPUT_EXAMPLE,
    MAX_CHECKED_EVENTS,
    TASK,
    check_agent_output,
    check_response,
    check_stream_event,
    normalize_input_example,
    responses_signature,
)


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "m1", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}


def echo_agent() -> Agent:
    agent = Agent("sig-echo")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message(str(request.input[-1].content))]}

    return agent


def test_the_example_defaults_and_is_normalized() -> None:
    assert normalize_input_example(None) == DEFAULT_INPUT_EXAMPLE
    assert normalize_input_example(None) is not DEFAULT_INPUT_EXAMPLE  # a copy
    example = normalize_input_example({"input": [{"role": "user", "content": "hi"}],
                                       "custom_inputs": {"k": 1}})
    assert example["custom_inputs"] == {"k": 1}
    assert example["input"][0]["content"] == "hi"


def test_a_bad_example_names_the_field() -> None:
    with pytest.raises(SignatureError, match="input_example is not a valid Responses request"
                                             ".*input"):
        normalize_input_example({"messages": [{"role": "user", "content": "hi"}]})


def test_the_signature_is_mlflows_responses_agent_signature() -> None:
    from mlflow.types.responses import RESPONSES_AGENT_INPUT_SCHEMA

    sig = responses_signature()
    assert sig.inputs == RESPONSES_AGENT_INPUT_SCHEMA
    assert TASK == "agent/v1/responses"


def test_good_output_passes_and_comes_back_as_a_dict() -> None:
    from mlflow.types.responses import ResponsesAgentResponse

    out = check_response(ResponsesAgentResponse(output=[message("ok")]))
    assert out["output"][0]["content"][0]["text"] == "ok"
    check = check_agent_output(echo_agent(), {"input": [{"role": "user", "content": "a b"}]})
    assert check.response["output"][0]["content"][0]["text"] == "a b"
    assert [e["type"] for e in check.events] == ["response.output_item.done"]
    assert check.input_example["input"][0]["content"] == "a b"


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ("data: {}", r"stream event #3 is a str; stream events must be"),
        ({"type": "response.output_text.delta", "item_id": "m1"},
         r"stream event #3 \(type 'response.output_text.delta'\) is not a valid .*delta"),
        ({"delta": "x"}, r"stream event #3 \(type '\?'\)"),
    ],
)
def test_bad_stream_events_are_named_by_index_and_type(event: Any, words: str) -> None:
    with pytest.raises(SignatureError, match=words):
        check_stream_event(event, index=3)


def test_an_agent_raising_names_the_interface() -> None:
    agent = Agent("raises")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        raise KeyError("api_key")

    with pytest.raises(SignatureError, match=r"raised KeyError on the input example through "
                                             r"invoke: 'api_key'"):
        check_agent_output(agent)

    streamer = Agent("stream-raises")

    @streamer.invoke_method
    def ok(request: Any) -> dict[str, Any]:
        return {"output": [message("fine")]}

    @streamer.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "fi"}
        raise ConnectionError("LLM endpoint went away")

    with pytest.raises(SignatureError, match=r"raised ConnectionError on the input example "
                                             r"through stream: LLM endpoint went away"):
        check_agent_output(streamer)


def test_a_stream_without_done_items_fails() -> None:
    agent = Agent("deltas-only")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message("hello")]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "hello"}

    with pytest.raises(SignatureError, match="ended without a 'response.output_item.done'"):
        check_agent_output(agent)


def test_an_endless_stream_is_cut_off() -> None:
    agent = Agent("endless")
    pulled = itertools.count()

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [message("x")]}

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        while True:
            next(pulled)
            yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "x"}

    with pytest.raises(SignatureError, match=f"did not end within {MAX_CHECKED_EVENTS} events"):
        check_agent_output(agent)
    assert next(pulled) == MAX_CHECKED_EVENTS + 1  # stopped right after the cap
