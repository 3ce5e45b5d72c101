"""Stopping containers as the kubelet does: SIGTERM, a grace period, then SIGKILL for what is still alive.

The one TERM -> wait -> KILL of the agent: a pod's termination, a failed probe's kill and a container that
started after its pod began to terminate all go through `stop_gracefully`, timed by the injected Clock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import TypeVar

from nodeagent.agent.clock import Clock
from nodeagent.runtime.base import RunningContainer

MIN_GRACE_SECONDS = 2  # the kubelet never gives a container less (minimumGracePeriodInSeconds)
POLL_SECONDS = 0.05

C = TypeVar("C", bound=RunningContainer)


def grace_seconds(termination_grace_period_seconds: int) -> float:
    """The pod's grace period for a SIGTERM, at least the kubelet's minimum."""
    return float(max(termination_grace_period_seconds, MIN_GRACE_SECONDS))


async def stop_gracefully(clock: Clock, containers: Sequence[C], grace: float, alive: Callable[[C], bool]) -> None:
    """SIGTERM to each container, then SIGKILL to each still `alive` after `grace` seconds."""
    for container in containers:
        container.signal(signal.SIGTERM)
    deadline = clock.monotonic() + grace
    while any(alive(c) for c in containers) and clock.monotonic() < deadline:
        await clock.sleep(POLL_SECONDS)
    for container in containers:
        if alive(container):
            container.kill()
