"""The pod lifecycle's one wake-up: conditions over the pod's state, looked at again at each change."""

from __future__ import annotations

import asyncio

from nodeagent.agent.wake import Wake


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_until_returns_at_once_when_the_condition_holds() -> None:
    await asyncio.wait_for(Wake().until(lambda: True), 1)


async def test_every_waiter_looks_again_at_each_change_and_ends_when_its_condition_holds() -> None:
    wake = Wake()
    state = {"admitted": False, "stopping": False}
    admitted = asyncio.create_task(wake.until(lambda: state["admitted"]))
    stopping = asyncio.create_task(wake.until(lambda: state["stopping"]))
    await turns()
    state["admitted"] = True
    wake.notify()
    await turns()
    assert admitted.done() and not stopping.done()
    state["stopping"] = True
    wake.notify()
    await turns()
    assert stopping.done()


async def test_a_change_while_nobody_waits_is_not_lost() -> None:
    """The decide loop notes the count at its decision and waits for another: a change made while it was acting
    (a sidecar started meanwhile) ends that wait at once."""
    wake = Wake()
    decided_at = wake.changes
    wake.notify()
    await asyncio.wait_for(wake.until(lambda: wake.changes != decided_at), 1)


async def test_a_cancelled_waiter_is_forgotten() -> None:
    wake = Wake()
    waiter = asyncio.create_task(wake.until(lambda: False))
    await turns()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    wake.notify()
    assert wake.changes == 1 and not wake._waiters
