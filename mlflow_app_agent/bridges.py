"""Bridges between sync and async code for agents: run a coroutine or drive an async
generator from sync code (notebooks, ``pyfunc``), and iterate a sync generator from the event
loop without blocking it (the server)."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import anyio


class _SyncLoop:
    """The one event loop on which sync callers (notebooks, ``pyfunc``, ``log_model``'s
    output check) run an agent's async code, in a daemon thread, for the whole process.

    One loop, not a fresh one per call: agents keep async clients (``AsyncOpenAI``,
    ``httpx.AsyncClient``) at module level, and their pooled connections belong to the loop
    that opened them; a second call on a new loop would reuse them after their loop closed
    ("Event loop is closed"). Contextvars follow each call, as with ``asyncio.run``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # a forked child has the loop object but not the thread that runs it
            if self._loop is None or self._loop.is_closed() or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="mlflow-app-agent-sync-loop",
                                 daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the loop and wait for it; Ctrl-C cancels it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.get())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop and close the loop (for a private one; the process's loop lives on)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        done = threading.Event()

        def stop() -> None:
            loop.stop()
            done.set()

        loop.call_soon_threadsafe(stop)
        done.wait(10)
        deadline = time.monotonic() + 10
        while loop.is_running() and time.monotonic() < deadline:
            time.sleep(0.001)
        if not loop.is_running():
            loop.close()


_SYNC_LOOP = _SyncLoop()


def _on_sync_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _SYNC_LOOP.get()
    except RuntimeError:
        return False


def run_coroutine(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop (notebooks):
    on the process's sync-bridge loop, or (called from that loop itself) a private one."""
    if not _on_sync_loop():
        return _SYNC_LOOP.run(coro)
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


async def _anext(agen: Any) -> Any:
    return await agen.__anext__()


async def _aclose(agen: Any) -> None:
    await agen.aclose()


def iterate_async_gen(agen: Any) -> Iterator[Any]:
    """Drive an async generator from sync code, one event at a time, on the sync-bridge
    loop (the same loop for every call, see :class:`_SyncLoop`); re-entered from async code
    running on that loop, on a private loop in its own thread."""
    runner = _SyncLoop() if _on_sync_loop() else _SYNC_LOOP
    try:
        while True:
            try:
                event = runner.run(_anext(agen))
            except StopAsyncIteration:
                return
            yield event
    finally:
        try:
            runner.run(_aclose(agen))
        finally:
            if runner is not _SYNC_LOOP:
                runner.close()


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
