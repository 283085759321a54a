from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

from mlflow_app_agent import Agent, RequestContext, request_context, use_request_context
from mlflow_app_agent.authoring import as_agent, reduce_stream, to_request
from mlflow_app_agent.errors import AgentDefinitionError, RequestError

REQUEST = {"input": [{"role": "user", "content": "hi there"}]}


def message(text: str, item_id: str = "m1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def text_of(response: dict[str, Any]) -> str:
    return str(response["output"][0]["content"][0]["text"])


def test_invoke_only_derives_stream() -> None:
    agent = Agent("a")

    @agent.invoke_method
    def invoke(request: ResponsesAgentRequest) -> dict[str, Any]:
        return {"output": [message(str(request.input[0].content))], "custom_outputs": {"k": 1}}

    assert agent.native_interfaces == ("invoke",) and agent.interfaces == ("invoke", "stream")
    assert text_of(agent.invoke(REQUEST)) == "hi there"
    events = list(agent.stream(REQUEST))
    assert [e["type"] for e in events] == ["response.output_item.done"]
    assert events[0]["custom_outputs"] == {"k": 1}
    for e in events:
        ResponsesAgentStreamEvent.model_validate(e)
    assert reduce_stream(events) == agent.invoke(REQUEST)


def test_stream_only_derives_invoke() -> None:
    agent = Agent("s")

    @agent.stream_method
    def stream(request: ResponsesAgentRequest) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "he"}
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "llo"}
        yield {"type": "response.output_item.done", "item": message("hello")}

    response = agent.invoke(REQUEST)
    ResponsesAgentResponse.model_validate(response)
    assert text_of(response) == "hello"
    assert agent(REQUEST) == response  # callable, for mlflow.models.set_model


def test_async_methods_work_sync_and_async() -> None:
    agent = Agent("async")

    @agent.invoke_method
    async def invoke(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        await asyncio.sleep(0)
        return ResponsesAgentResponse(output=[message("async")])

    @agent.stream_method
    async def stream(request: ResponsesAgentRequest) -> AsyncIterator[ResponsesAgentStreamEvent]:
        await asyncio.sleep(0)
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=message("a"))

    assert agent.invoke_is_async and agent.stream_is_async
    assert text_of(agent.invoke(REQUEST)) == "async"
    assert [e["item"]["content"][0]["text"] for e in agent.stream(REQUEST)] == ["a"]

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        # a sync invoke of an async agent inside a running loop (as in a notebook)
        nested = agent.invoke(REQUEST)
        return await agent.ainvoke(REQUEST), [e async for e in agent.astream(REQUEST)], nested

    result, events, nested = asyncio.run(main())
    assert text_of(result) == "async" and len(events) == 1 and text_of(nested) == "async"


def test_sync_agent_runs_off_the_event_loop_with_request_context() -> None:
    agent = Agent("ctx")
    seen: dict[str, Any] = {}

    @agent.invoke_method
    def invoke(request: ResponsesAgentRequest) -> dict[str, Any]:
        seen["thread"] = threading.current_thread()
        seen["user"] = request_context().user
        return {"output": [message("x")]}

    @agent.stream_method
    def stream(request: ResponsesAgentRequest) -> Iterator[dict[str, Any]]:
        seen["stream_user"] = request_context().user_email
        yield {"type": "response.output_item.done", "item": message("x")}

    async def main() -> None:
        ctx = RequestContext(request_id="r1", user_email="ann@example.com", access_token="t")
        with use_request_context(ctx):
            await agent.ainvoke(REQUEST)
            [e async for e in agent.astream(REQUEST)]

    asyncio.run(main())
    assert seen["thread"] is not threading.main_thread()
    assert seen["user"] == "ann@example.com" and seen["stream_user"] == "ann@example.com"
    assert request_context() == RequestContext()


def test_closing_an_async_stream_early_closes_a_sync_generator() -> None:
    agent = Agent("long")
    closed = threading.Event()

    @agent.stream_method
    def stream(request: ResponsesAgentRequest) -> Iterator[dict[str, Any]]:
        try:
            for i in range(10_000_000):
                yield {"type": "response.output_text.delta", "item_id": "m", "delta": str(i)}
        finally:
            closed.set()

    async def main() -> None:
        gen = agent.astream(REQUEST)
        async for _ in gen:
            break
        await gen.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert closed.wait(5)


def test_errors_inside_a_threaded_stream_reach_the_consumer() -> None:
    agent = Agent("boom")

    @agent.stream_method
    def stream(request: ResponsesAgentRequest) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m", "delta": "x"}
        raise RuntimeError("tool failed")

    async def main() -> list[dict[str, Any]]:
        return [e async for e in agent.astream(REQUEST)]

    with pytest.raises(RuntimeError, match="tool failed"):
        asyncio.run(main())


def test_definition_errors() -> None:
    agent = Agent("x")
    with pytest.raises(AgentDefinitionError, match="neither"):
        agent.invoke(REQUEST)

    def gen(request: Any) -> Iterator[int]:
        yield 1

    with pytest.raises(AgentDefinitionError, match="@stream_method"):
        agent.invoke_method(gen)
    with pytest.raises(AgentDefinitionError, match="must be a generator"):
        agent.stream_method(lambda r: r)
    with pytest.raises(AgentDefinitionError, match="non-empty"):
        Agent("")
    with pytest.raises(AgentDefinitionError, match="got int"):
        as_agent(3)


def test_request_validation_names_the_field() -> None:
    with pytest.raises(RequestError, match=r"request\.input: Field required"):
        to_request({})
    with pytest.raises(RequestError, match="JSON object"):
        to_request(["x"])
    assert to_request(ResponsesAgentRequest(**REQUEST)).input[0].content == "hi there"


@pytest.mark.parametrize(
    ("body", "where"),
    [  # found by fuzzing /invocations with MLflow's schema: its validators raised TypeError
        ({"input": [{"role": "", "content": [{"text": "", "type": []}]}], "top_p": []},
         r"request\.input\.0\.content\.0\.type: must be a string"),
        ({"input": [{"role": "user", "content": "x"}, {"type": {"a": 1}}]},
         r"request\.input\.1\.type: must be a string|request\.input\.1"),
    ],
)
def test_values_mlflows_validators_choke_on_are_request_errors(body: dict, where: str) -> None:
    with pytest.raises(RequestError, match=where):
        to_request(body)


class Plain(ResponsesAgent):
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        return ResponsesAgentResponse(output=[message("plain")])


class Streaming(Plain):
    def predict_stream(self, request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=message("s"))


def test_responses_agent_adapter() -> None:
    plain = as_agent(Plain())
    assert plain.name == "Plain" and plain.native_interfaces == ("invoke",)
    assert text_of(plain.invoke(REQUEST)) == "plain"
    assert len(list(plain.stream(REQUEST))) == 1
    streaming = as_agent(Streaming)
    assert streaming.native_interfaces == ("invoke", "stream")
    assert [e["item"]["content"][0]["text"] for e in streaming.stream(REQUEST)] == ["s"]


def test_request_context_from_headers_hides_the_token() -> None:
    ctx = RequestContext.from_headers(
        {
            "X-Forwarded-Email": "a@b.c",
            "X-Forwarded-User": "123@456",
            "X-Forwarded-Preferred-Username": "ann",
            "X-Forwarded-Access-Token": "dapi-secret",
        },
        request_id="generated",
    )
    assert ctx.user == "a@b.c" and ctx.is_authenticated and ctx.request_id == "generated"
    assert "dapi-secret" not in repr(ctx) and "dapi-secret" not in str(ctx.to_public_dict())
    assert ctx.access_token == "dapi-secret"
    assert not RequestContext().is_authenticated


def test_union_errors_say_which_item_shape_they_are_about() -> None:
    with pytest.raises(RequestError) as info:
        to_request({"input": [{"role": 7, "content": "x"}]})
    message = str(info.value)
    assert "request.input.0.role (as Message): Input should be a valid string" in message
    assert "request.input.0.type (as OutputItem): Field required" in message
    assert "function-after" not in message
