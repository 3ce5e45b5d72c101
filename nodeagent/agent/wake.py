"""The one wake-up of a pod's lifecycle: a change it decides on (admitted, stopped, a sidecar started) is
notified, and whoever waits for a condition over the pod's state looks again.

    wake.notify()                           something the lifecycle decides on changed
    await wake.until(lambda: pod.stopping)  until the condition holds (checked at once, then at each change)
    seen = wake.changes; ...; await wake.until(lambda: wake.changes != seen)   a change since a decision

Unlike an asyncio.Event, nothing is to be cleared: the conditions are the pod's state itself, so a change made
while nobody waits is never lost, and two waiters never race over one flag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Wake:
    def __init__(self) -> None:
        self.changes = 0  # notifications so far
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        self.changes += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
