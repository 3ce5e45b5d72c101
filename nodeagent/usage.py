"""CPU and memory use of cgroups, as rates: what `top` shows (metrics.k8s.io's units).

CPU is a rate, so it needs two readings: the last reading of a cgroup is kept, and a cgroup read
for the first time (or long ago) is read again after a short window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from nodeagent.cgroups.driver import CgroupDriver, Usage
from nodeagent.errors import NodeAgentError

FIRST_WINDOW_SECONDS = 0.25
STALE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    cpu_nanocores: int
    memory_bytes: int
    window_seconds: float

    def usage_json(self) -> dict[str, str]:
        return {"cpu": f"{self.cpu_nanocores}n", "memory": f"{self.memory_bytes // 1024}Ki"}


class UsageSampler:
    def __init__(self, cgroups: CgroupDriver) -> None:
        self.cgroups = cgroups
        self._last: dict[str, tuple[float, Usage]] = {}

    async def rates(self, paths: list[str]) -> dict[str, Rate]:
        first = await asyncio.to_thread(self._read, paths)
        now = time.monotonic()
        fresh = {p for p in first if p in self._last and now - self._last[p][0] < STALE_SECONDS}
        if len(fresh) < len(first):
            for path, usage in first.items():
                self._last[path] = (now, usage)
            await asyncio.sleep(FIRST_WINDOW_SECONDS)
            first = await asyncio.to_thread(self._read, paths)
            now = time.monotonic()
        rates = {}
        for path, usage in first.items():
            then, before = self._last[path]
            window = max(now - then, 1e-3)
            cpu = max(usage.cpu_usage_ns - before.cpu_usage_ns, 0)
            rates[path] = Rate(int(cpu / window), usage.memory_working_set_bytes, window)
            self._last[path] = (now, usage)
        for gone in set(self._last) - set(paths):
            del self._last[gone]
        return rates

    def _read(self, paths: list[str]) -> dict[str, Usage]:
        found = {}
        for path in paths:
            try:
                found[path] = self.cgroups.usage(path)
            except (NodeAgentError, OSError, ValueError):
                continue  # a container between attempts has no cgroup
        return found
