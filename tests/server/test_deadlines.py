"""The app's request deadlines behave as ``asyncio.timeout`` does, on one sweeper per loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mlflow_app_agent.server.deadlines import Deadlines


def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    deadlines = Deadlines(tick=0.01)

    async def main() -> bool:
        deadline = deadlines.after(0.05)
        with pytest.raises(TimeoutError):
            async with deadline:
                await asyncio.sleep(5)
        return deadline.expired

    assert asyncio.run(main()) is True


def test_a_block_within_its_deadline_or_without_one_is_untouched() -> None:
    deadlines = Deadlines(tick=0.01)

    async def main() -> list[object]:
        seen: list[object] = []
        for seconds in (5.0, None, 0):
            deadline = deadlines.after(seconds)
            async with deadline:
                await asyncio.sleep(0.03)
                seen.append(deadline.expired)
        await asyncio.sleep(0.05)  # a finished block is never expired later
        seen.append(deadline.expired)
        return seen

    assert asyncio.run(main()) == [False, False, False, False]


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(tick=0.01)

    async def main() -> None:
        async def guarded() -> None:
            async with deadlines.after(5):
                await asyncio.sleep(5)

        task = asyncio.create_task(guarded())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_nested_deadlines_each_fire_as_their_own() -> None:
    deadlines = Deadlines(tick=0.01)

    async def main() -> str:
        async with deadlines.after(5) as outer:
            try:
                async with deadlines.after(0.03):
                    await asyncio.sleep(5)
            except TimeoutError:
                pass
            await asyncio.sleep(0.03)  # the outer block goes on
        return f"outer expired={outer.expired}"

    assert asyncio.run(main()) == "outer expired=False"


def test_two_event_loops_each_get_their_own_sweeper() -> None:
    """Test clients run the app on a loop of their own, sometimes two at once."""
    deadlines = Deadlines(tick=0.01)
    results: list[str] = []

    async def expires() -> None:
        try:
            async with deadlines.after(0.05):
                await asyncio.sleep(5)
            results.append("ran out the sleep")
        except TimeoutError:
            results.append("timed out")

    threads = [threading.Thread(target=asyncio.run, args=(expires(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["timed out", "timed out"]
