"""Bridges between sync and async code for agents: run a coroutine or drive an async
generator from sync code (notebooks, ``pyfunc``), and iterate a sync generator from the event
loop without blocking it (the server)."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import anyio


def run_coroutine(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def runner() -> None:
        try:
            result["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=runner, name="mlflow-app-agent-run")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def iterate_async_gen(agen: Any) -> Iterator[Any]:
    """Drive an async generator from sync code, one event at a time, in its own loop."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                event = loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
            yield event
    finally:
        try:
            loop.run_until_complete(agen.aclose())
        finally:
            loop.close()


async def threaded_iter(
    gen: Iterator[Any], *, limiter: anyio.CapacityLimiter | None = None, buffer: int = 256
) -> AsyncGenerator[Any, None]:
    """Iterate a sync generator in a worker thread without blocking the event loop.

    Events cross threads through a bounded deque (back-pressure on a slow client). The
    worker wakes the loop only when the consumer is actually waiting, and the consumer takes
    everything available per wake-up: a fast generator costs one cross-thread wake-up (a
    syscall and a GIL hand-off) per batch rather than per event.
    """
    import anyio.to_thread

    loop = asyncio.get_running_loop()
    items: collections.deque[Any] = collections.deque()
    lock = threading.Lock()
    space = threading.Condition(lock)
    wakeup = asyncio.Event()
    stop = threading.Event()
    state: dict[str, Any] = {"waiting": False, "done": False, "error": None}

    def wake_consumer() -> None:  # call with the lock held
        if state["waiting"]:
            state["waiting"] = False
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def produce() -> None:
        try:
            for item in gen:
                with lock:
                    while len(items) >= buffer and not stop.is_set():
                        space.wait(0.05)
                    if stop.is_set():
                        return
                    items.append(item)
                    wake_consumer()
        except BaseException as exc:  # handed to the consumer, re-raised there
            with lock:
                state["error"] = exc
        finally:
            try:
                close = getattr(gen, "close", None)
                if close is not None:
                    close()
            finally:
                with lock:
                    state["done"] = True
                    wake_consumer()

    ctx = contextvars.copy_context()
    worker = asyncio.ensure_future(
        anyio.to_thread.run_sync(ctx.run, produce, limiter=limiter)
    )
    try:
        while True:
            with lock:
                batch = list(items)
                items.clear()
                if batch:
                    space.notify_all()
                done, error = state["done"], state["error"]
                if not batch and not done:
                    state["waiting"] = True
                    wakeup.clear()
            if batch:
                for item in batch:
                    yield item
                continue
            if done:
                if error is not None:
                    raise error
                return
            await wakeup.wait()
    finally:
        stop.set()
        with lock:
            items.clear()
            space.notify_all()
        if not worker.done():
            await asyncio.shield(worker)
