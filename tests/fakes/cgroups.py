"""A fake CgroupDriver: it remembers which cgroups exist and what was asked of it, and touches nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nodeagent.cgroups import oom
from nodeagent.cgroups.driver import Usage
from nodeagent.errors import CgroupError
from nodeagent.plan.pod import CgroupPlan


@dataclass
class FakeCgroupDriver:
    name: str = "cgroupfs"
    version: int = 2
    existing: dict[str, CgroupPlan] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    fail_apply: int = 0  # the next so many apply() calls fail

    async def apply(self, cgroups: Sequence[CgroupPlan]) -> None:
        if self.fail_apply > 0:
            self.fail_apply -= 1
            raise CgroupError("no space left on device")
        for cgroup in cgroups:
            self.existing[cgroup.path] = cgroup

    async def remove(self, paths: Sequence[str]) -> None:
        for path in paths:
            if self.existing.pop(path, None) is not None:
                self.removed.append(path)

    async def attach(self, path: str, pid: int) -> None:
        return None

    def kill(self, path: str) -> None:
        self.killed.append(path)

    def procs(self, path: str) -> list[int]:
        return []

    def exists(self, path: str) -> bool:
        return path in self.existing

    def oom_kills(self, path: str) -> int:
        return 0

    def usage(self, path: str) -> Usage:
        return Usage(memory_working_set_bytes=0, cpu_usage_ns=0)

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.existing if p.startswith(prefix)})

    def read(self, path: str, name: str) -> str:
        return ""

    def watch_oom(self, path: str, notify: Callable[[], None]) -> oom.OOMWatch:
        raise NotImplementedError("the lifecycle does not watch OOM kills itself")
