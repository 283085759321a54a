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
