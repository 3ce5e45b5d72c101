"""inotify(7) through libc, for the few files the agent watches itself (a cgroup's memory.events, quiet logs).

The file source uses watchdog, which watches directories with a thread of its own; these watches are on
single files and are read by the event loop, or polled, without a thread.
"""

from __future__ import annotations

import ctypes
import os
import struct

IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000  # events were lost (wd -1)
IN_ONESHOT = 0x80000000  # the watch goes after its first event

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    """An inotify instance: non-blocking, closed on exec."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.fd: int = fd

    def add(self, path: str, mask: int) -> int:
        """The watch descriptor of `path` (the same for the same file); OSError (ENOENT, ENOSPC) if impossible."""
        wd: int = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"watching {path}: {os.strerror(error)}")
        return wd

    def read(self) -> list[tuple[int, int]]:
        """The events queued now, as (watch descriptor, mask), without blocking."""
        events: list[tuple[int, int]] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)  # whole events only
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                events.append((wd, mask))
                offset += _EVENT.size + length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
