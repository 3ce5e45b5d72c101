"""Stop signal -> grace period -> SIGKILL, on the fake clock."""

from __future__ import annotations

import asyncio
import signal

import pytest

from nodeagent.agent.termination import stop_gracefully
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRunning


def term(_: FakeRunning) -> int:
    return signal.SIGTERM


async def test_a_container_that_ends_on_sigterm_is_not_killed() -> None:
    clock = FakeClock()
    container = FakeRunning(clock, "fake://a")
    await stop_gracefully(clock, [container], 30, lambda c: not c.exited, term)
    assert container.signals == [signal.SIGTERM]
    assert clock.elapsed == 0


async def test_a_container_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    clock = FakeClock()
    stubborn = FakeRunning(clock, "fake://a", ignores_term=True)
    polite = FakeRunning(clock, "fake://b")
    task = asyncio.create_task(stop_gracefully(clock, [stubborn, polite], 30, lambda c: not c.exited, term))
    await clock.advance(29.9)
    assert not task.done() and stubborn.signals == [signal.SIGTERM]
    await clock.advance(0.2)
    assert task.done()
    assert stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
    assert polite.signals == [signal.SIGTERM]
    assert clock.elapsed == pytest.approx(30.1)


async def test_each_container_gets_its_own_stop_signal() -> None:
    clock = FakeClock()
    quits, terms = FakeRunning(clock, "fake://q"), FakeRunning(clock, "fake://t")
    task = asyncio.create_task(stop_gracefully(clock, [quits, terms], 5, lambda c: not c.exited,
                                               lambda c: signal.SIGQUIT if c is quits else signal.SIGTERM))
    await clock.advance(5.1)
    assert task.done()
    assert quits.signals == [signal.SIGQUIT, signal.SIGKILL]  # the fake ends on SIGTERM alone
    assert terms.signals == [signal.SIGTERM]
