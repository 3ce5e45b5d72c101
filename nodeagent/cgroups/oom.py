"""Notice OOM kills in a cgroup as they happen: eventfd on v1, inotify on v2's memory.events.

The kernel's counters (memory.oom_control / memory.events `oom_kill`) decide whether a container
was OOM-killed; these watches only make the agent hear about it within milliseconds.

On v2 every watch is one of a single inotify instance (MemoryEventsWatches): fs.inotify.max_user_instances
(128 by default) is shared by all of root's processes (systemd, udev, ...), and an instance per container
would take them all at ~120 containers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Protocol

from nodeagent.cgroups import files
from nodeagent.errors import CgroupError
from nodeagent.inotify import IN_IGNORED, IN_MODIFY, Inotify

log = logging.getLogger(__name__)


class OOMWatch(Protocol):
    """Calls its `notify()` on the event loop each time the kernel signals the cgroup; close() to stop."""

    def close(self) -> None: ...


class EventfdWatch:
    """v1: an eventfd the kernel signals, read by the event loop."""

    def __init__(self, fd: int, notify: Callable[[], None], keep_open: list[int]) -> None:
        self._fd = fd
        self._keep_open = keep_open
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._notify()

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        for fd in [self._fd, *self._keep_open]:
            os.close(fd)
        self._fd = -1


def watch_v1(memory_directory: str, notify: Callable[[], None]) -> EventfdWatch:
    """Register an eventfd for memory.oom_control through cgroup.event_control."""
    event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        control_fd = os.open(os.path.join(memory_directory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(event_fd)
        raise CgroupError(f"watching OOM in {memory_directory}: {exc.strerror}") from exc
    try:
        files.write_file(memory_directory, "cgroup.event_control", f"{event_fd} {control_fd}")
    except CgroupError:
        os.close(event_fd)
        os.close(control_fd)
        raise
    return EventfdWatch(event_fd, notify, keep_open=[control_fd])


class MemoryEventsWatches:
    """v2: inotify IN_MODIFY on each cgroup's memory.events (the kernel touches it on every memory event), all
    in one inotify instance read by the event loop. A driver holds one."""

    def __init__(self) -> None:
        self._inotify: Inotify | None = None
        self._notify: dict[int, Callable[[], None]] = {}  # by watch descriptor

    def watch(self, directory: str, notify: Callable[[], None]) -> OOMWatch:
        if self._inotify is None:
            try:
                self._inotify = Inotify()
            except OSError as exc:
                raise CgroupError(exc.strerror or str(exc)) from exc
            asyncio.get_running_loop().add_reader(self._inotify.fd, self._readable)
        try:
            wd = self._inotify.add(os.path.join(directory, "memory.events"), IN_MODIFY)
        except OSError as exc:
            raise CgroupError(exc.strerror or str(exc)) from exc
        self._notify[wd] = notify
        return _MemoryEventsWatch(self, wd)

    def _readable(self) -> None:
        assert self._inotify is not None
        for wd, mask in self._inotify.read():
            if mask & IN_IGNORED:  # its cgroup went, and the kernel ended the watch with it
                self._notify.pop(wd, None)
            elif (notify := self._notify.get(wd)) is not None:
                notify()

    def _close(self, wd: int) -> None:
        if self._notify.pop(wd, None) is not None and self._inotify is not None:
            self._inotify.remove(wd)


class _MemoryEventsWatch:
    def __init__(self, watches: MemoryEventsWatches, wd: int) -> None:
        self._watches = watches
        self._wd = wd

    def close(self) -> None:
        self._watches._close(self._wd)
