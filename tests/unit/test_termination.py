"""SIGTERM -> grace period -> SIGKILL, on the fake clock."""

from __future__ import annotations

import asyncio
import signal

import pytest

from nodeagent.agent.termination import grace_seconds, stop_gracefully
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRunning


def test_the_grace_period_is_at_least_two_seconds() -> None:
    assert grace_seconds(0) == 2
    assert grace_seconds(1) == 2
    assert grace_seconds(30) == 30


async def test_a_container_that_ends_on_sigterm_is_not_killed() -> None:
    clock = FakeClock()
    container = FakeRunning(clock, "fake://a")
    await stop_gracefully(clock, [container], 30, lambda c: not c.exited)
    assert container.signals == [signal.SIGTERM]
    assert clock.elapsed == 0


async def test_a_container_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    clock = FakeClock()
    stubborn = FakeRunning(clock, "fake://a", ignores_term=True)
    polite = FakeRunning(clock, "fake://b")
    task = asyncio.create_task(stop_gracefully(clock, [stubborn, polite], 30, lambda c: not c.exited))
    await clock.advance(29.9)
    assert not task.done() and stubborn.signals == [signal.SIGTERM]
    await clock.advance(0.2)
    assert task.done()
    assert stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
    assert polite.signals == [signal.SIGTERM]
    assert clock.elapsed == pytest.approx(30.1)
