"""cgroup v2: one tree, controllers enabled in cgroup.subtree_control on the way down.

    V2Hierarchy("/sys/fs/cgroup").apply("/kubepods/burstable/pod1", {"cpu.weight": "1", ...})

The mount point is a parameter, so tests can hand in a directory shaped like cgroup2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nodeagent.cgroups import files
from nodeagent.errors import CgroupError

WANTED_CONTROLLERS = ("cpu", "memory", "pids", "hugetlb")


class V2Hierarchy:
    version = 2

    def __init__(self, mount: str) -> None:
        self.mount = mount

    def directory(self, path: str) -> str:
        return os.path.join(self.mount, path.lstrip("/"))

    def create(self, path: str) -> None:
        """Create each missing level and enable our controllers for the level below it."""
        parts = [p for p in path.split("/") if p]
        current = self.mount
        for part in parts:
            self._enable_controllers(current)
            current = os.path.join(current, part)
            files.make_dir(current)

    def _enable_controllers(self, directory: str) -> None:
        available = files.read_file(directory, "cgroup.controllers").split()
        enabled = files.read_file(directory, "cgroup.subtree_control").split()
        wanted = [c for c in WANTED_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            files.write_file(directory, "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def apply(self, path: str, values: Mapping[str, str]) -> None:
        self.create(path)
        directory = self.directory(path)
        for name, value in values.items():
            files.write_file(directory, name, value)

    def attach(self, path: str, pid: int) -> None:
        files.write_file(self.directory(path), "cgroup.procs", str(pid))

    def procs(self, path: str) -> list[int]:
        return files.read_procs(self.directory(path))

    def exists(self, path: str) -> bool:
        return os.path.isdir(self.directory(path))

    def remove(self, path: str) -> None:
        files.remove_dir(self.directory(path))

    def kill(self, path: str) -> bool:
        """cgroup.kill (Linux 5.14+) SIGKILLs every process at once; False where it does not exist."""
        directory = self.directory(path)
        if not os.path.exists(os.path.join(directory, "cgroup.kill")):
            return False
        files.write_file(directory, "cgroup.kill", "1")
        return True

    def oom_kills(self, path: str) -> int:
        return files.read_keyed(self.directory(path), "memory.events").get("oom_kill", 0)

    def memory_working_set(self, path: str) -> int:
        directory = self.directory(path)
        usage = files.read_int(directory, "memory.current")
        inactive = files.read_keyed(directory, "memory.stat").get("inactive_file", 0)
        return max(usage - inactive, 0)

    def cpu_usage_ns(self, path: str) -> int:
        return files.read_keyed(self.directory(path), "cpu.stat").get("usage_usec", 0) * 1000

    def children(self, path: str) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.directory(path)) if entry.is_dir())
        except FileNotFoundError:
            return []


def check_v2(mount: str) -> None:
    if not os.path.exists(os.path.join(mount, "cgroup.controllers")):
        raise CgroupError(f"{mount} is not a cgroup v2 hierarchy")
