"""Targets under bad conditions: servers that answer the wrong thing (non-JSON, wrong status,
wrong content type, broken or unterminated SSE, too slow, nothing listening) and in-process
agents that hang, raise or never stop. Each becomes a problem that says what happened."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import ValidationFailure
from mlflow_app_agent.testing.targets import (
    AgentTarget,
    ModelTarget,
    ServerTarget,
    resolve_target,
)

from . import agents
from .servers import serve

REQ = {"input": [{"role": "user", "content": "hi"}]}
DONE_EVENT = {"type": "response.output_item.done", "item": agents.message("hi")}


def misbehaving_app() -> Any:
    """One route per way a hand-written agent server goes wrong."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    def sse(frames: list[str]) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            for frame in frames:
                yield frame

        return StreamingResponse(body(), media_type="text/event-stream")

    async def not_json(request: Request) -> Response:
        return PlainTextResponse("<html>hello</html>")

    async def unavailable(request: Request) -> Response:
        return PlainTextResponse("upstream LLM unavailable " + "x" * 400, status_code=503)

    async def json_only(request: Request) -> Response:
        return JSONResponse({"output": [agents.message("hi")]})

    async def bad_frame(request: Request) -> Response:
        return sse(["data: {broken\n\n"])

    async def no_done(request: Request) -> Response:
        return sse([f"data: {json.dumps(DONE_EVENT)}\n\n"])

    async def chatty(request: Request) -> Response:
        # comments, event:/id: fields, blank keep-alives and a JSON frame split over several
        # data: lines (joined with a newline, as SSE says): all fine
        lines = json.dumps(DONE_EVENT, indent=1).split("\n")
        frame = "".join(f"data: {line}\n" for line in lines) + "\n"
        return sse([": keep-alive\n\n", "\n", "event: message\nid: 1\n", frame,
                    "data: [DONE]\n\n"])

    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            while True:
                yield f"data: {json.dumps(DONE_EVENT)}\n\n"
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="text/event-stream")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(3)
        return JSONResponse({"output": [agents.message("late")]})

    async def trickle(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            for _ in range(40):
                yield f"data: {json.dumps(DONE_EVENT)}\n\n"
                await asyncio.sleep(0.05)
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def pings(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            while True:  # keep-alive comments only, never an event
                yield ": ping\n\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(body(), media_type="text/event-stream")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    posts = {"/not-json": not_json, "/unavailable": unavailable, "/json-only": json_only,
             "/bad-frame": bad_frame, "/no-done": no_done, "/chatty": chatty,
             "/endless": endless, "/slow": slow, "/trickle": trickle, "/pings": pings}
    return Starlette(routes=[Route(p, f, methods=["POST"]) for p, f in posts.items()]
                     + [Route("/health", health, methods=["GET"])])


@pytest.fixture(scope="module")
def bad_url() -> Iterator[str]:
    with serve(misbehaving_app()) as url:
        yield url


@pytest.fixture
def target(bad_url: str) -> Iterator[ServerTarget]:
    with ServerTarget(bad_url, timeout=1.0, max_events=25) as t:
        yield t


def test_invoke_needs_a_200_with_json(target: ServerTarget) -> None:
    with pytest.raises(ValidationFailure, match=r"POST /not-json answered non-JSON: <html>"):
        target.invoke(REQ, endpoint="/not-json")
    with pytest.raises(ValidationFailure, match=r"POST /unavailable answered 503: upstream") as e:
        target.invoke(REQ, endpoint="/unavailable")
    assert e.value.message.endswith("more chars)")  # long bodies are clipped


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("/unavailable", "POST /unavailable (stream) answered 503: upstream LLM unavailable"),
        ("/json-only", "POST /json-only (stream) answered 'application/json' instead of "
                       "text/event-stream"),
        ("/bad-frame", "stream frame is not JSON: {broken"),
        ("/no-done", "stream closed without a final 'data: [DONE]' frame"),
        ("/endless", "stream did not end after 25 events (an endless stream?)"),
        ("/slow", "stream did not end within 1 s"),
        ("/trickle", "stream did not end within 1 s"),
        ("/pings", "stream did not end within 1 s"),  # keep-alives do not extend it
    ],
)
def test_stream_problems_say_what_the_server_did(
    target: ServerTarget, endpoint: str, words: str
) -> None:
    result = target.stream(REQ, endpoint=endpoint)
    assert not result.ended and result.problem is not None
    assert result.problem.startswith(words), result.problem


def test_sse_comments_fields_and_multi_line_data_are_parsed(target: ServerTarget) -> None:
    result = target.stream(REQ, endpoint="/chatty")
    assert result.ended and result.problem is None
    assert result.events == [DONE_EVENT]


def test_a_slow_server_is_a_timeout_not_a_hang(target: ServerTarget) -> None:
    # The server would answer "late" after 3 s; the client gave up first (its 1 s timeout)
    with pytest.raises(ValidationFailure, match=r"POST /slow got no answer within 1 s"):
        target.invoke(REQ, endpoint="/slow")
    assert target.invoke(REQ, endpoint="/json-only")["output"]  # and is still usable


def test_a_server_without_agent_endpoints_fails_ping(bad_url: str) -> None:
    with ServerTarget(bad_url, endpoints=("/invocations", "/responses")) as t:
        with pytest.raises(ValidationFailure, match=r"has no agent endpoint: POST "
                                                    r"/invocations and /responses answered"):
            t.ping()
    with ServerTarget(bad_url, endpoints=("/nothing", "/json-only")) as t:
        t.ping()
        assert t.endpoints == ("/json-only",)
        assert t.invoke(REQ)["output"][0]["id"] == "msg-1"


def test_nothing_listening_is_a_clear_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with ServerTarget(f"http://127.0.0.1:{port}/", timeout=2.0) as t:
            assert repr(t) == f"<ServerTarget server http://127.0.0.1:{port}>"
            with pytest.raises(ValidationFailure, match=r"POST /invocations failed: ConnectError"):
                t.invoke(REQ)
            result = t.stream(REQ)
            assert result.problem is not None
            assert result.problem.startswith("stream failed: ConnectError")
            with pytest.raises(ValidationFailure, match="failed: ConnectError"):
                t.post_raw(b"{", "application/json")


# --- in-process agents ---------------------------------------------------------------------


def test_agents_take_no_raw_bodies_and_pass_their_errors_through() -> None:
    agent = agents.raises_on_custom_inputs()
    with AgentTarget(agent) as t:
        assert repr(t) == f"<AgentTarget agent {agent.name!r}>"
        with pytest.raises(ValidationFailure, match="is not a server; it takes no raw bodies"):
            t.post_raw(b"{}", "application/json")
        with pytest.raises(KeyError):
            t.invoke({**REQ, "custom_inputs": {"a": 1}})
        assert t.invoke(REQ)["output"]


def test_a_hung_invoke_marks_the_target_stuck() -> None:
    calls: list[Any] = []
    agent = Agent("hangs-counted")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        calls.append(request)
        time.sleep(3600)
        return {"output": []}

    with AgentTarget(agent, timeout=0.3) as t:
        with pytest.raises(ValidationFailure, match=r"invoke did not return within 0.3 s"):
            t.invoke(REQ)
        with pytest.raises(ValidationFailure, match=r"not run: an earlier invoke did not return "
                                                    r"within 0.3 s \(on request \{\"input\""):
            t.stream(REQ)
        assert len(calls) == 1  # the stream was refused without calling the agent again


def test_a_stream_that_stops_answering_marks_the_target_stuck() -> None:
    agent = Agent("stalls")

    @agent.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "a"}
        time.sleep(5)
        yield DONE_EVENT

    with AgentTarget(agent, timeout=0.3) as t:
        result = t.stream(REQ)
        assert result.problem == "stream did not end within 0.3 s"
        assert len(result.events) == 1
        with pytest.raises(ValidationFailure, match="not run: an earlier stream did not return"):
            t.invoke(REQ)


def test_stream_errors_are_problems() -> None:
    raising = Agent("stream-raises")

    @raising.stream_method
    def stream(request: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "response.output_text.delta", "item_id": "m1", "delta": "a"}
        raise ValueError("tool failed")

    result = AgentTarget(raising).stream(REQ)
    assert result.problem == "stream raised ValueError: tool failed"
    assert len(result.events) == 1

    failing = Agent("stream-validation-failure")

    @failing.stream_method
    def stream2(request: Any) -> Iterator[dict[str, Any]]:
        raise ValidationFailure("the agent's own check failed")
        yield {}  # a generator

    assert AgentTarget(failing).stream(REQ).problem == "the agent's own check failed"


def test_an_endless_agent_stream_is_capped_and_closed() -> None:
    result = AgentTarget(agents.endless_stream(), max_events=2000).stream(REQ)
    assert result.problem == "stream did not end after 2000 events (an endless stream?)"
    assert len(result.events) == 2000


def test_resolve_target_by_kind(tmp_path: Path) -> None:
    existing = AgentTarget(agents.fresh_ids())
    assert resolve_target(existing) is existing
    assert isinstance(resolve_target("https://example.invalid", timeout=1), ServerTarget)
    assert isinstance(resolve_target(agents.fresh_ids()), AgentTarget)
    from_file = resolve_target(f"{agents.ECHO_PATH}:agent", timeout=5)
    assert isinstance(from_file, AgentTarget)
    assert from_file.description == f"{agents.ECHO_PATH}:agent" and from_file.timeout == 5
    assert from_file.invoke(REQ)["output"][0]["content"][0]["text"] == "hi"
    from_path = resolve_target(Path(agents.ECHO_PATH))
    assert from_path.description == str(agents.ECHO_PATH)
    from mlflow_app_agent.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="not a model URI"):
        resolve_target(str(tmp_path / "missing-model"))
    assert ModelTarget.__mro__[1] is AgentTarget
