"""Notice OOM kills in a cgroup as they happen: eventfd on v1, inotify on v2's memory.events.

The kernel's counters (memory.oom_control / memory.events `oom_kill`) decide whether a container
was OOM-killed; these watches only make the agent hear about it within milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from nodeagent.cgroups import files
from nodeagent.errors import CgroupError
from nodeagent.inotify import IN_MODIFY, Inotify

log = logging.getLogger(__name__)


class OOMWatch:
    """Calls `notify()` on the event loop each time the kernel signals the cgroup; close() to stop."""

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


def watch_v1(memory_directory: str, notify: Callable[[], None]) -> OOMWatch:
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
    return OOMWatch(event_fd, notify, keep_open=[control_fd])


def watch_v2(directory: str, notify: Callable[[], None]) -> OOMWatch:
    """inotify IN_MODIFY on memory.events, which the kernel touches on every memory event."""
    try:
        watch = Inotify()
    except OSError as exc:
        raise CgroupError(exc.strerror or str(exc)) from exc
    try:
        watch.add(os.path.join(directory, "memory.events"), IN_MODIFY)
    except OSError as exc:
        watch.close()
        raise CgroupError(exc.strerror or str(exc)) from exc
    return OOMWatch(watch.fd, notify, keep_open=[])

