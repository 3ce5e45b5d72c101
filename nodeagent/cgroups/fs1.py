"""cgroup v1: one directory per controller, and the kernel's ordering rules for writing limits.

    V1Hierarchy({"memory": "/sys/fs/cgroup/memory", "cpu": ..., "cpuacct": ..., "pids": ...})
      .apply("/kubepods/burstable/pod1", {"cpu.shares": "2", "memory.limit_in_bytes": "104857600"})

Only the controllers nodeagent manages get directories: memory, cpu, cpuacct (usage), pids and, where
mounted, hugetlb. OCI runtimes (runc, crun, containerd's runc) create a container's cgroup, and its
missing parents, in every hierarchy mounted (cpuset, devices, freezer, blkio, name=systemd, a hybrid's
cgroup2): removing a cgroup removes what is left of it there too (`runtime_mounts`), or pods would leave
directories behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping, Sequence

from nodeagent.cgroups import files
from nodeagent.errors import CgroupError, CgroupWriteError

MANAGED_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "hugetlb")
MEMORY_LIMIT = "memory.limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"


class V1Hierarchy:
    version = 1

    def __init__(self, mounts: Mapping[str, str], *, runtime_mounts: Sequence[str] = ()) -> None:
        missing = [c for c in ("memory", "cpu", "pids") if c not in mounts]
        if missing:
            raise CgroupError(f"cgroup v1 controllers not mounted: {', '.join(missing)}")
        self.mounts = {c: mounts[c] for c in MANAGED_CONTROLLERS if c in mounts}
        self.unmanaged = sorted(set(runtime_mounts) - set(self.mounts.values()))

    def directories(self, path: str) -> dict[str, str]:
        """controller -> directory of a cgroup (several controllers may share one mount)."""
        return {controller: os.path.join(mount, path.lstrip("/")) for controller, mount in self.mounts.items()}

    def directory(self, controller: str, path: str) -> str:
        return os.path.join(self.mounts[controller], path.lstrip("/"))

    def create(self, path: str) -> None:
        for directory in set(self.directories(path).values()):
            files.make_dir(directory)

    def apply(self, path: str, values: Mapping[str, str]) -> None:
        """Create the cgroup in every managed controller, then write its files in a safe order."""
        self.create(path)
        pending = dict(values)
        memory = pending.pop(MEMORY_LIMIT, None)
        memsw = pending.pop(MEMSW_LIMIT, None)
        if memory is not None or memsw is not None:
            self._write_memory(self.directory("memory", path), memory, memsw)
        period = pending.pop("cpu.cfs_period_us", None)
        quota = pending.pop("cpu.cfs_quota_us", None)
        self._write_cpu(self.directory("cpu", path), period, quota)
        for name, value in pending.items():
            controller = name.split(".", 1)[0]
            files.write_file(self.directory(controller, path), name, value)

    @staticmethod
    def _write_memory(directory: str, memory: str | None, memsw: str | None) -> None:
        """memsw must stay >= memory at every step: raise memsw first when the limit grows."""
        if memsw is not None and not os.path.exists(os.path.join(directory, MEMSW_LIMIT)):
            memsw = None  # swap accounting is off (swapaccount=0): there is no swap to limit
        if memory is not None and memsw is not None:
            current = files.read_int(directory, MEMORY_LIMIT)
            if memsw == "-1" or current < int(memsw):
                files.write_file(directory, MEMSW_LIMIT, memsw)
                files.write_file(directory, MEMORY_LIMIT, memory)
                return
        if memory is not None:
            files.write_file(directory, MEMORY_LIMIT, memory)
        if memsw is not None:
            files.write_file(directory, MEMSW_LIMIT, memsw)

    @staticmethod
    def _write_cpu(directory: str, period: str | None, quota: str | None) -> None:
        """A shorter period can be refused (EINVAL) until the quota is set: then retry after it."""
        retry_period = False
        if period is not None:
            try:
                files.write_file(directory, "cpu.cfs_period_us", period)
            except CgroupWriteError as exc:
                if exc.errno != errno.EINVAL or quota is None:
                    raise
                retry_period = True
        if quota is not None:
            files.write_file(directory, "cpu.cfs_quota_us", quota)
            if retry_period and period is not None:
                files.write_file(directory, "cpu.cfs_period_us", period)

    def attach(self, path: str, pid: int) -> None:
        for directory in set(self.directories(path).values()):
            files.write_file(directory, "cgroup.procs", str(pid))

    def procs(self, path: str) -> list[int]:
        """Its processes in any managed hierarchy: an attach cut short (the agent killed half way) leaves a
        process in some of them only, and the cgroup could not be removed while it is there."""
        found: set[int] = set()
        for directory in set(self.directories(path).values()):
            found.update(files.read_procs(directory))
        return sorted(found)

    def exists(self, path: str) -> bool:
        """In any managed hierarchy: a removal cut short leaves it in some of them only."""
        return any(os.path.isdir(directory) for directory in self.directories(path).values())

    def remove(self, path: str) -> None:
        """What runtimes made in unmanaged hierarchies first, the managed ones last: exists() stays true
        until all of it is gone (the processes, in the managed ones too, are dead by now)."""
        for mount in self.unmanaged:
            root = os.path.join(mount, path.lstrip("/"))
            for current, children, _ in os.walk(root, topdown=False):
                for child in children:
                    files.remove_dir(os.path.join(current, child))
            if os.path.isdir(root):
                files.remove_dir(root)
        for directory in set(self.directories(path).values()):
            files.remove_dir(directory)

    def oom_kills(self, path: str) -> int:
        return files.read_keyed(self.directory("memory", path), "memory.oom_control").get("oom_kill", 0)

    def memory_working_set(self, path: str) -> int:
        """usage - inactive file pages, as the kubelet (cAdvisor) reports working set."""
        directory = self.directory("memory", path)
        usage = files.read_int(directory, "memory.usage_in_bytes")
        inactive = files.read_keyed(directory, "memory.stat").get("total_inactive_file", 0)
        return max(usage - inactive, 0)

    def cpu_usage_ns(self, path: str) -> int:
        return files.read_int(self.directory("cpuacct", path), "cpuacct.usage")

    def children(self, path: str) -> list[str]:
        """In any managed hierarchy (see exists)."""
        found: set[str] = set()
        for directory in set(self.directories(path).values()):
            with contextlib.suppress(FileNotFoundError):
                found.update(entry.name for entry in os.scandir(directory) if entry.is_dir())
        return sorted(found)
