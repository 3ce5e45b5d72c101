"""What the agent needs from a cgroup driver, and the cgroupfs driver that writes files itself.

The agent sees only the CgroupDriver protocol; nodeagent.cgroups.systemd is the other driver.
Blocking file IO is batched into one asyncio.to_thread call per operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nodeagent.cgroups import files, oom
from nodeagent.cgroups.fs1 import V1Hierarchy
from nodeagent.cgroups.fs2 import V2Hierarchy
from nodeagent.errors import CgroupError
from nodeagent.plan.pod import CgroupPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Usage:
    memory_working_set_bytes: int
    cpu_usage_ns: int


class CgroupDriver(Protocol):
    name: str
    version: int

    async def apply(self, cgroups: Sequence[CgroupPlan]) -> None:
        """Create each cgroup (parents first) and write its files."""

    async def remove(self, paths: Sequence[str]) -> None:
        """Kill what is left in each cgroup (and below it) and remove it."""

    async def attach(self, path: str, pid: int) -> None:
        """Move a process into a cgroup (every controller); with systemd, into a transient scope."""

    def procs(self, path: str) -> list[int]: ...

    def exists(self, path: str) -> bool: ...

    def oom_kills(self, path: str) -> int: ...

    def usage(self, path: str) -> Usage: ...

    def children(self, path: str) -> list[str]: ...

    def read(self, path: str, name: str) -> str:
        """A file of a cgroup, as the kernel shows it."""

    def watch_oom(self, path: str, notify: Callable[[], None]) -> oom.OOMWatch: ...

    def kill(self, path: str) -> None:
        """SIGKILL every process in the cgroup, at once where the kernel can."""


Hierarchy = V1Hierarchy | V2Hierarchy
REMOVE_TIMEOUT_SECONDS = 5.0


class CgroupfsDriver:
    """The cgroupfs driver: nodeagent creates directories and writes files, as the kubelet's."""

    name = "cgroupfs"

    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self.version = hierarchy.version
        self._memory_events = oom.MemoryEventsWatches()  # v2: one inotify instance for every OOM watch

    async def apply(self, cgroups: Sequence[CgroupPlan]) -> None:
        await asyncio.to_thread(self._apply_all, list(cgroups))

    def _apply_all(self, cgroups: list[CgroupPlan]) -> None:
        for cgroup in cgroups:
            self.hierarchy.apply(cgroup.path, cgroup.files)

    async def remove(self, paths: Sequence[str]) -> None:
        await asyncio.to_thread(self._remove_all, list(paths))

    def _remove_all(self, paths: list[str]) -> None:
        for path in paths:
            if self.hierarchy.exists(path):
                self._remove_tree(path)

    def _remove_tree(self, path: str) -> None:
        """Children first; each emptied with SIGKILL (until no process is left) and removed."""
        for child in self.hierarchy.children(path):
            self._remove_tree(f"{path.rstrip('/')}/{child}")
        deadline = time.monotonic() + REMOVE_TIMEOUT_SECONDS
        while True:
            if self.hierarchy.procs(path):
                self.kill(path)
            else:
                try:
                    self.hierarchy.remove(path)
                    return
                except CgroupError:
                    pass  # the last task can still be exiting for a moment
            if time.monotonic() > deadline:
                raise CgroupError(f"{path}: cannot be emptied and removed (processes: {self.hierarchy.procs(path)})")
            time.sleep(0.01)

    async def attach(self, path: str, pid: int) -> None:
        await asyncio.to_thread(self.hierarchy.attach, path, pid)

    def procs(self, path: str) -> list[int]:
        return self.hierarchy.procs(path)

    def exists(self, path: str) -> bool:
        return self.hierarchy.exists(path)

    def oom_kills(self, path: str) -> int:
        return self.hierarchy.oom_kills(path)

    def usage(self, path: str) -> Usage:
        return Usage(self.hierarchy.memory_working_set(path), self.hierarchy.cpu_usage_ns(path))

    def children(self, path: str) -> list[str]:
        return self.hierarchy.children(path)

    def read(self, path: str, name: str) -> str:
        if isinstance(self.hierarchy, V1Hierarchy):
            return files.read_file(self.hierarchy.directory(name.split(".", 1)[0], path), name)
        return files.read_file(self.hierarchy.directory(path), name)

    def watch_oom(self, path: str, notify: Callable[[], None]) -> oom.OOMWatch:
        if isinstance(self.hierarchy, V1Hierarchy):
            return oom.watch_v1(self.hierarchy.directory("memory", path), notify)
        return self._memory_events.watch(self.hierarchy.directory(path), notify)

    def kill(self, path: str) -> None:
        if isinstance(self.hierarchy, V2Hierarchy) and self.hierarchy.kill(path):
            return
        for pid in self.hierarchy.procs(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
