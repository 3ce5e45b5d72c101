"""A process-runtime container's mount namespace, made by the agent before the container runs.

The launcher used to unshare it and run `mount` for each step (a fresh /sys, the pod's /etc files, each
volume, a read-only /): five programs for a pod with its own network, 2-5 ms each under load, almost all
of it starting the program. Here a thread of the agent of its own makes the namespace with mount(2):

    [join the pod's netns: a sysfs shows the interfaces of the namespace that mounts it]
    unshare the mount namespace, / made private (recursively) -> fresh /sys (with the node's cgroup tree)
      -> bind each volume (read-only ones remounted so) -> [/ read-only]

The namespace stays open as a file descriptor of the agent; the launcher's nsenter joins it through
/proc/<agent>/fd/<fd>, and the agent closes it once the container has joined (or is gone). The thread ends
with the call, so no thread of the agent stays in another namespace.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass

from nodeagent import mounts

JOIN_TIMEOUT_SECONDS = 5.0
CGROUP_TREE = "/sys/fs/cgroup"
# What a read-only remount keeps of the mount's own flags, as `mount -o remount,bind,ro` does (statvfs's
# ST_* flags have the values of the MS_* ones): nosuid, nodev, noexec, synchronous, mandlock, noatime,
# nodiratime, relatime.
KEPT_FLAGS = 2 | 4 | 8 | 16 | 64 | 1024 | 2048 | 4096


@dataclass(frozen=True, slots=True)
class Bind:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class MountPlan:
    """What the container's mount namespace has beyond the node's. `sysfs`: an empty directory for a fresh
    sysfs of `netns`, moved over /sys (None: the node's /sys)."""

    binds: tuple[Bind, ...]
    read_only_root: bool
    netns: str | None = None
    sysfs: str | None = None


class MountNamespace:
    """A prepared namespace, open until close(); `path` is what the launcher's nsenter joins."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.path = f"/proc/{os.getpid()}/fd/{fd}"
        self._identity = _identity(os.fstat(fd))

    def joined_by(self, pid: int) -> bool | None:
        """True once process `pid` is in this namespace; None if it is gone."""
        try:
            return _identity(os.stat(f"/proc/{pid}/ns/mnt")) == self._identity
        except FileNotFoundError:
            return None

    async def close_once_joined(self, pid: int) -> None:
        """Close it once `pid` has joined, is gone, or JOIN_TIMEOUT_SECONDS passed (its nsenter then fails)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_TIMEOUT_SECONDS
        try:
            while self.joined_by(pid) is False and loop.time() < deadline:
                await asyncio.sleep(0.001)
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def make(plan: MountPlan) -> MountNamespace:
    """The namespace `plan` describes; OSError if a step fails, and nothing of it is left (blocking: in a
    worker thread)."""
    return MountNamespace(mounts.in_own_thread(functools.partial(_make, plan), "mount namespace"))


def _make(plan: MountPlan) -> int:
    """In a thread of its own: make the namespace, return an open descriptor of it (blocking)."""
    if plan.netns is not None:
        fd = os.open(plan.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            mounts.setns(fd, mounts.CLONE_NEWNET)
        finally:
            os.close(fd)
    mounts.unshare(mounts.CLONE_NEWNS)
    mounts.mount(None, "/", None, mounts.MS_REC | mounts.MS_PRIVATE, None)
    if plan.sysfs is not None:
        mounts.mount(b"sysfs", plan.sysfs, b"sysfs", 0, None)
        mounts.mount(CGROUP_TREE.encode(), os.path.join(plan.sysfs, "fs/cgroup"), None,
                     mounts.MS_BIND | mounts.MS_REC, None)
        mounts.mount(os.fsencode(plan.sysfs), "/sys", None, mounts.MS_MOVE, None)
    for bind in plan.binds:
        mounts.mount(os.fsencode(bind.source), bind.target, None, mounts.MS_BIND, None)
        if bind.read_only:
            _remount_read_only(bind.target)
    if plan.read_only_root:
        _remount_read_only("/")
    return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def _remount_read_only(target: str) -> None:
    kept = os.statvfs(target).f_flag & KEPT_FLAGS
    mounts.mount(None, target, None, mounts.MS_REMOUNT | mounts.MS_BIND | mounts.MS_RDONLY | kept, None)
