"""inotify(7) through libc, for what the agent watches itself: a cgroup's memory.events, quiet logs, the manifest
directory. Read by the event loop, or polled, without a thread.
"""

from __future__ import annotations

import ctypes
import os
import struct

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000  # events were lost (wd -1)
IN_IGNORED = 0x00008000  # the watch went (its file deleted, unmounted, or the watch removed)
IN_ONLYDIR = 0x01000000  # watch the path only if it is a directory
IN_ISDIR = 0x40000000  # the event's subject is a directory
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
        return [(wd, mask) for wd, mask, _ in self.read_named()]

    def read_named(self) -> list[tuple[int, int, str]]:
        """The events queued now, as (watch descriptor, mask, name: the file's in a watched directory, else "")."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)  # whole events only
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = os.fsdecode(data[start:start + length].rstrip(b"\0"))
                events.append((wd, mask, name))
                offset = start + length

    def remove(self, wd: int) -> None:
        """Stop a watch; one the kernel ended already (its file deleted: IN_IGNORED) is fine."""
        _libc.inotify_rm_watch(self.fd, wd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
