"""Time, injected: wall time for status, monotonic time for timers.

Every sleep and timeout of the lifecycle goes through a Clock, so that the fast tests (tests/unit) run it on
a fake clock, without real time passing. `sleep_or_set` and `within` build the two shapes the lifecycle needs
(a sleep cut short by an event, a deadline on an awaitable) from `Clock.sleep` alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def sleep_or_set(clock: Clock, seconds: float, event: asyncio.Event) -> bool:
    """Sleep `seconds`, or less if the event is set meanwhile; True if it is set."""
    if event.is_set():
        return True
    await _first(clock, seconds, event.wait())
    return event.is_set()


async def within(clock: Clock, seconds: float, awaitable: Awaitable[T]) -> T:
    """The awaitable's result, or TimeoutError (the awaitable cancelled) once `seconds` have passed."""
    done, result = await _first(clock, seconds, awaitable)
    if not done:
        raise TimeoutError
    return result  # type: ignore[return-value]


async def _first(clock: Clock, seconds: float, awaitable: Awaitable[T]) -> tuple[bool, T | None]:
    """Run the awaitable against a sleep; (True, its result) if it ended first, else (False, None). The loser is
    cancelled and awaited; the awaitable's exception is raised."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, timer):
            task.cancel()
        await asyncio.gather(work, timer, return_exceptions=True)  # a cancellation of ours still comes through
    if work.done() and not work.cancelled():
        return True, work.result()
    return False, None
