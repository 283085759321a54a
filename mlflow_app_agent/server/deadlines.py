"""Per-request deadlines (the body-read and request timeouts) on one sweeper per event loop.

``asyncio.timeout`` schedules a timer per use and cancels it on exit: ~4-6 us a time, twice
per request on the hot path. Here entering a deadline is a dict insert and leaving it a dict
pop; one sweeper task per loop wakes every ``tick`` seconds and cancels the tasks whose
deadline passed, so a deadline fires up to ``tick`` late (50 ms by default: nothing here
times out in less than seconds). Semantics are ``asyncio.timeout``'s: the expired block
raises ``TimeoutError``; a cancellation from elsewhere stays a ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

#: how long a loop's sweeper keeps running with no deadline pending
_IDLE_EXIT = 30.0


class Deadlines:
    """The deadlines of one app (owned by its runtime)."""

    def __init__(self, tick: float = 0.05) -> None:
        self.tick = tick
        self._pending: dict[int, Deadline] = {}
        self._sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def after(self, seconds: float | None) -> Deadline:
        """An ``async with`` block that may run ``seconds`` (None or 0: no limit)."""
        return Deadline(self, seconds or None)

    def _add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        if loop not in self._sweepers:
            self._sweepers[loop] = loop.create_task(self._sweep(loop), name="deadlines")
        self._pending[id(deadline)] = deadline

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        idle_since = loop.time()
        try:
            while True:
                await asyncio.sleep(self.tick)
                now = loop.time()
                if not self._pending:
                    if now - idle_since > _IDLE_EXIT:
                        return
                    continue
                idle_since = now
                for deadline in list(self._pending.values()):
                    if deadline.when <= now and deadline.loop is loop:
                        deadline.expire()
        finally:
            if self._sweepers.get(loop) is asyncio.current_task():
                del self._sweepers[loop]


class Deadline:
    """One block's deadline; see :class:`Deadlines`."""

    __slots__ = ("_owner", "seconds", "when", "loop", "expired", "_task", "_cancelling")

    def __init__(self, owner: Deadlines, seconds: float | None) -> None:
        self._owner = owner
        self.seconds = seconds
        self.when = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> Deadline:
        if self.seconds is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.loop = task.get_loop()
        self.when = self.loop.time() + self.seconds
        self._owner._add(self, self.loop)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is None:
            return
        self._owner._pending.pop(id(self), None)
        if (self.expired and self._task.uncancel() <= self._cancelling
                and exc_type is asyncio.CancelledError):
            raise TimeoutError from exc

    def expire(self) -> None:
        """Cancel the block's task (the sweeper calls this once the deadline passed)."""
        if not self.expired and self._task is not None:
            self.expired = True
            self._owner._pending.pop(id(self), None)
            self._task.cancel()


__all__ = ["Deadline", "Deadlines"]
