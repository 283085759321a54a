"""The sync-generator bridge the server streams through (``authoring._threaded_iter``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlflow_app_agent.bridges import threaded_iter as _threaded_iter


def test_yields_everything_in_order_with_back_pressure() -> None:
    async def main() -> list[int]:
        return [i async for i in _threaded_iter(iter(range(1000)), buffer=4)]

    assert asyncio.run(main()) == list(range(1000))


def test_error_comes_after_the_items_before_it() -> None:
    def gen() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("boom")

    async def main() -> list[Any]:
        seen: list[Any] = []
        with pytest.raises(ValueError, match="boom"):
            async for item in _threaded_iter(gen()):
                seen.append(item)
        return seen

    assert asyncio.run(main()) == [1, 2]


def test_early_close_closes_the_generator_in_its_thread() -> None:
    closed = threading.Event()
    threads: list[str] = []

    def gen() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.001)
        finally:
            threads.append(threading.current_thread().name)
            closed.set()

    async def main() -> None:
        it = _threaded_iter(gen(), buffer=8)
        async for item in it:
            if item == 20:
                break
        await it.aclose()

    asyncio.run(main())
    assert closed.wait(5)
    assert threads and threads[0] != threading.main_thread().name


def test_the_loop_stays_free_while_the_generator_blocks() -> None:
    # The generator blocks until a task on the loop releases it: that can only happen if the
    # loop runs while the generator waits (the 60 s bound only stops a broken bridge hanging).
    waiting, released = threading.Event(), threading.Event()

    def gen() -> Iterator[str]:
        waiting.set()
        assert released.wait(60), "the loop never ran while the generator blocked"
        yield "late"

    async def main() -> list[str]:
        async def release_when_blocked() -> int:
            while not waiting.is_set():
                await asyncio.sleep(0.001)
            turns = 0
            while turns < 3:  # the loop keeps turning while the generator blocks
                await asyncio.sleep(0)
                turns += 1
            released.set()
            return turns

        task = asyncio.create_task(release_when_blocked())
        items = [x async for x in _threaded_iter(gen())]
        assert await task == 3
        return items

    assert asyncio.run(main()) == ["late"]


# --- sync callers of async agent code: one loop for the process (issue 15) ----------------
def _async_agent(seen: list[asyncio.AbstractEventLoop], client: Any = None, url: str = "") -> Any:
    from mlflow_app_agent import Agent

    agent = Agent("loops")

    async def answer() -> str:
        seen.append(asyncio.get_running_loop())
        if client is None:
            return "ok"
        return (await client.get(url)).text

    def item(text: str) -> dict[str, Any]:
        return {"type": "message", "id": "m1", "role": "assistant",
                "content": [{"type": "output_text", "text": text}]}

    @agent.invoke_method
    async def invoke(request: Any) -> dict[str, Any]:
        return {"output": [item(await answer())]}

    @agent.stream_method
    async def stream(request: Any) -> Any:
        yield {"type": "response.output_item.done", "item": item(await answer())}

    return agent


REQUEST = {"input": [{"role": "user", "content": "hi"}]}


def test_sync_calls_of_async_code_share_one_live_loop() -> None:
    seen: list[asyncio.AbstractEventLoop] = []
    agent = _async_agent(seen)
    agent.invoke(REQUEST)
    list(agent.stream(REQUEST))
    agent.invoke(REQUEST)
    assert len(seen) == 3 and len(set(map(id, seen))) == 1
    assert not seen[0].is_closed()


def test_a_module_level_async_client_survives_invoke_then_stream_then_invoke() -> None:
    """What an Agents SDK agent with a module-level ``AsyncOpenAI`` does when logged (the
    output check invokes, then streams): its keep-alive connection is reused by the next call.
    With a loop per call the second call failed with "Event loop is closed"."""
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def pong(request: Any) -> PlainTextResponse:
        return PlainTextResponse("pong")

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/", pong)]), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    client = httpx.AsyncClient(timeout=10)
    try:
        seen: list[asyncio.AbstractEventLoop] = []
        agent = _async_agent(seen, client, url)
        texts = [agent.invoke(REQUEST)["output"][0]["content"][0]["text"]]
        texts += [e["item"]["content"][0]["text"] for e in agent.stream(REQUEST)]
        texts.append(agent.invoke(REQUEST)["output"][0]["content"][0]["text"])
        assert texts == ["pong"] * 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_an_async_agent_called_synchronously_from_async_agent_code() -> None:
    """Re-entry from the bridge loop itself (async code calling ``agent.invoke``) runs on a
    private loop instead of waiting for itself."""
    inner = _async_agent([])
    outer = _async_agent([])
    from mlflow_app_agent.bridges import run_coroutine

    async def nested() -> str:
        text = inner.invoke(REQUEST)["output"][0]["content"][0]["text"]
        return text + "+" + next(iter(inner.stream(REQUEST)))["item"]["content"][0]["text"]

    assert run_coroutine(nested()) == "ok+ok"
    assert outer.invoke(REQUEST)["output"][0]["content"][0]["text"] == "ok"


def test_request_context_reaches_async_code_called_synchronously() -> None:
    from mlflow_app_agent import RequestContext, request_context, use_request_context
    from mlflow_app_agent.bridges import iterate_async_gen, run_coroutine

    async def who() -> str | None:
        return request_context().user_email

    async def who_stream() -> Any:
        yield request_context().user_email

    with use_request_context(RequestContext(user_email="ada@example.com")):
        assert run_coroutine(who()) == "ada@example.com"
        assert list(iterate_async_gen(who_stream())) == ["ada@example.com"]
