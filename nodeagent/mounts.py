"""mount(2) and umount2(2) through libc, for the image store's overlays and the pods' subPath bind mounts;
unshare(2), for the pods' network namespaces (Python 3.11 has no os.unshare).

Each raises OSError with the kernel's errno; each caller words it for its own error type.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

MS_RDONLY = 1
MS_NODEV = 4
MS_BIND = 4096
MNT_DETACH = 2
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def mount(source: bytes, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    if _libc.mount(source, os.fsencode(target), fstype, flags, data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (a new network namespace is the thread's alone)."""
    if _libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


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
