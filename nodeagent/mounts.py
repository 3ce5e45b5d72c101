"""mount(2) and umount2(2) through libc, for the image store's overlays, the pods' subPath bind mounts and the
process runtime's mount namespaces; unshare(2) and setns(2), for the pods' network namespaces and those
mount namespaces (Python 3.11 has neither), with in_own_thread for the thread that changes namespace.

Each raises OSError with the kernel's errno; each caller words it for its own error type.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

MS_RDONLY = 1
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    if _libc.mount(source, os.fsencode(target), fstype, flags, data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (a new network namespace is the thread's alone)."""
    if _libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread (a mount namespace only for a thread that unshared CLONE_FS)."""
    if _libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def in_own_thread(function: Callable[[], T], name: str) -> T:
    """function() in a thread of its own, which may change its namespaces: the thread ends with the call, so no
    thread of the process is ever left in another namespace (blocking: call it from a worker thread)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def unmount(target: str) -> None:
    """Unmount `target`, lazily (MNT_DETACH) if it is busy; nothing if it is not a mount point (any more)."""
    for flags in (0, MNT_DETACH):
        if _libc.umount2(os.fsencode(target), flags) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOENT):
            return
        if code != errno.EBUSY:
            raise OSError(code, os.strerror(code), target)
    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), target)
