"""Stopping containers as the kubelet does: the stop signal, a grace period, then SIGKILL for what is still alive.

The one stop -> wait -> KILL of the agent: a pod's termination, a failed probe's kill, a pod past its deadline
and a container that started after its pod began to terminate all go through `stop_gracefully`, timed by the
injected Clock. Which signal and how long: nodeagent.agent.stopping (pure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from nodeagent.agent.clock import Clock
from nodeagent.runtime.base import RunningContainer

POLL_SECONDS = 0.05

C = TypeVar("C", bound=RunningContainer)


async def stop_gracefully(clock: Clock, containers: Sequence[C], grace: float, alive: Callable[[C], bool],
                          stop_signal: Callable[[C], int]) -> None:
    """Its stop signal to each container, then SIGKILL to each still `alive` after `grace` seconds."""
    for container in containers:
        container.signal(stop_signal(container))
    deadline = clock.monotonic() + grace
    while any(alive(c) for c in containers) and clock.monotonic() < deadline:
        await clock.sleep(POLL_SECONDS)
    for container in containers:
        if alive(container):
            container.kill()
