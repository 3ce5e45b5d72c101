"""The Clock helpers every sleep and timeout of the lifecycle goes through, on the fake clock."""

from __future__ import annotations

import asyncio

import pytest

from nodeagent.agent.clock import sleep_or_set, within
from tests.fakes.clock import FakeClock


async def test_sleep_or_set_sleeps_the_whole_time_when_nothing_happens() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    task = asyncio.create_task(sleep_or_set(clock, 30, event))
    await clock.advance(29.9)
    assert not task.done()
    await clock.advance(0.1)
    assert task.done() and task.result() is False
    assert clock.elapsed == pytest.approx(30)


async def test_sleep_or_set_ends_early_when_the_event_is_set() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    task = asyncio.create_task(sleep_or_set(clock, 30, event))
    await clock.advance(5)
    event.set()
    await clock.settle()
    assert task.done() and task.result() is True
    assert await sleep_or_set(clock, 30, event) is True  # already set: no sleep at all


async def test_within_returns_the_result_in_time() -> None:
    clock = FakeClock()

    async def work() -> str:
        await clock.sleep(3)
        return "done"

    task = asyncio.create_task(within(clock, 5, work()))
    await clock.advance(3)
    assert task.result() == "done"


async def test_within_cancels_the_work_at_the_deadline() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await clock.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    task = asyncio.create_task(within(clock, 5, work()))
    await clock.advance(5)
    assert task.done()
    with pytest.raises(TimeoutError):
        task.result()
    assert cancelled.is_set()


async def test_within_passes_the_work_s_error_on() -> None:
    clock = FakeClock()

    async def work() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await within(clock, 5, work())
