"""Files that survive a crash whole: write to a temporary file beside, fsync, rename, fsync the directory.

A crash leaves the old file or the new one, never half of one; concurrent writers never share a
temporary file. A file that already holds the same bytes (and mode) is left alone: a restart that
re-adopts every pod rewrites nothing, and pays no fsync per pod.

`sync=False` skips the fsyncs (1 ms here, tens on an SD card): the file is still whole after a crash of the
agent, but may be empty after a power cut. For files whose loss in a power cut loses nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile


def write_atomically(path: str, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    if _holds(path, data, mode):
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if sync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if not sync:
        return
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _holds(path: str, data: bytes, mode: int) -> bool:
    """Whether `path` is a regular file of exactly `data` with `mode` (it was written whole: it was renamed
    into place after its fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size != len(data) or stat.S_IMODE(status.st_mode) != mode:
            return False
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)
