"""A fake Clock: time moves only when the test says so, and jumps over every sleep at once.

    clock = FakeClock()
    task = asyncio.create_task(something(clock))
    await clock.advance(10)            # every sleep due within 10 s ends, in order
    await clock.run_until(lambda: x)   # jump from one due sleep to the next until x holds
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from collections.abc import Callable

from tests.fakes.executor import run_threads_inline

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SETTLE_TURNS = 50  # turns of the event loop that let every ready task run to its next await
IDLE_TURNS = 200  # of 5 ms each: how long run_until waits for threads when no sleep is due


class FakeClock:
    def __init__(self, start: dt.datetime = START) -> None:
        self._start = start
        self._monotonic = 1000.0
        self._origin = self._monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=self._monotonic - self._origin)

    def monotonic(self) -> float:
        return self._monotonic

    @property
    def elapsed(self) -> float:
        """Seconds of fake time since the clock was made."""
        return self._monotonic - self._origin

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._order), wake))
        await wake

    async def settle(self) -> None:
        """Let every task that can run without time passing do so (their work for threads too: inline)."""
        run_threads_inline()
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)

    def _next_due(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleeps
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def _wake_next(self) -> None:
        due, _, wake = heapq.heappop(self._sleepers)
        self._monotonic = max(self._monotonic, due)
        wake.set_result(None)
        await self.settle()

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, ending each sleep due meanwhile in order."""
        target = self._monotonic + seconds
        await self.settle()
        while (due := self._next_due()) is not None and due <= target:
            await self._wake_next()
        self._monotonic = target
        await self.settle()

    async def run_until(self, done: Callable[[], bool], limit: float = 3600.0) -> None:
        """Move time on from one due sleep to the next until `done()` holds; AssertionError if it does not
        within `limit` seconds of fake time or nothing sleeps any more."""
        deadline = self._monotonic + limit
        await self.settle()
        idle = 0
        while not done():
            due = self._next_due()
            if due is None:  # perhaps a thread (asyncio.to_thread) is still at work: real time, a little
                idle += 1
                assert idle <= IDLE_TURNS, "nothing left to wait for, and the condition does not hold"
                await asyncio.sleep(0.005)
                await self.settle()
                continue
            idle = 0
            assert due <= deadline, f"the condition does not hold within {limit}s"
            await self._wake_next()
