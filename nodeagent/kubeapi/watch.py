"""Resource versions and a watch feed for pods: ADDED, MODIFIED and DELETED as the API server sends them.

The agent says "something changed" (its on_change hook); the feed then takes the pods' JSON, compares it
with what it last saw, and gives every pod that changed the next resource version (one counter for the
node, as etcd's revision). It does so once per turn of the event loop while someone watches, and else
only when asked (a list, a watch that begins): comparing every pod costs O(pods), and doing it on every
change while 1,000 pods start kept the event loop busy with nothing but this. Watchers get the events
after a resource version; a watcher too far behind (more than HISTORY events) gets 410 Gone, as from the
API server.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HISTORY = 1024  # changes kept for watchers that resume (a pod JSON is a few kB: a few MB at most)


class Expired(Exception):
    """The resource version asked for is older than the feed remembers."""


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    type: str  # ADDED, MODIFIED, DELETED
    pod: dict[str, Any]


class PodFeed:
    def __init__(self, snapshot: Callable[[], list[dict[str, Any]]], *, history: int = HISTORY) -> None:
        self._snapshot = snapshot
        # uid -> (pod, version); pods are compared as data (JSON of the same types), not as JSON text
        self._seen: dict[str, tuple[dict[str, Any], int]] = {}
        self.version = 1
        self._history: collections.deque[Change] = collections.deque(maxlen=history)
        self._changed = asyncio.Condition()
        self._scheduled = False
        self._dirty = True  # changed since the last comparison
        self._watching = 0  # watchers waiting in changes()

    def changed(self) -> None:
        """The agent's hook: compare once this turn of the event loop is over, if anyone watches."""
        self._dirty = True
        if self._watching and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._scheduled = False
        self.refresh()

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def refresh(self) -> bool:
        """Compare the pods with what was seen; True when any changed."""
        self._dirty = False
        current = {pod["metadata"]["uid"]: pod for pod in self._snapshot()}
        changes = []
        for uid, pod in current.items():
            before = self._seen.get(uid)
            if before is None or before[0] != pod:
                changes.append(("ADDED" if before is None else "MODIFIED", uid, pod))
        for uid in [uid for uid in self._seen if uid not in current]:
            changes.append(("DELETED", uid, self._seen[uid][0]))
        for kind, uid, pod in changes:
            self.version += 1
            if kind == "DELETED":
                del self._seen[uid]
            else:
                self._seen[uid] = (pod, self.version)
            self._history.append(Change(self.version, kind, self.stamp(pod, self.version)))
        if changes:  # whoever noticed first (the hook, or a list), the watchers hear of it
            asyncio.get_running_loop().create_task(self._wake())
        return bool(changes)

    @staticmethod
    def stamp(pod: dict[str, Any], version: int) -> dict[str, Any]:
        return {**pod, "metadata": {**pod["metadata"], "resourceVersion": str(version)}}

    def pods(self) -> list[dict[str, Any]]:
        """The pods now, each with its resource version."""
        self.refresh()
        pods = [self.stamp(pod, version) for pod, version in self._seen.values()]
        return sorted(pods, key=lambda pod: (pod["metadata"]["namespace"], pod["metadata"]["name"]))

    async def changes(self, since: int) -> list[Change]:
        """The changes after `since`, waiting for one when there is none yet; Expired when forgotten."""
        while True:
            if self._dirty:
                self.refresh()
            if self._history and since < self._history[0].version - 1:
                raise Expired(f"too old resource version: {since} ({self._history[0].version - 1})")
            found = [change for change in self._history if change.version > since]
            if found:
                return found
            async with self._changed:
                self._watching += 1
                try:
                    await self._changed.wait()
                finally:
                    self._watching -= 1
