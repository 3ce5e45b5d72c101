"""Reading and writing cgroup files, with errors that say which cgroup and file failed.

Blocking calls: the driver batches them into one asyncio.to_thread call per operation.
"""

from __future__ import annotations

import errno
import logging
import os

from nodeagent.errors import CgroupError, CgroupWriteError

log = logging.getLogger(__name__)


def write_file(directory: str, name: str, value: str) -> None:
    path = os.path.join(directory, name)
    log.debug("write %s = %s", path, value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupWriteError(directory, name, value, exc) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise CgroupWriteError(directory, name, value, exc) from exc
    finally:
        os.close(fd)


def read_file(directory: str, name: str) -> str:
    try:
        with open(os.path.join(directory, name)) as handle:
            return handle.read()
    except OSError as exc:
        raise CgroupError(f"reading {directory}/{name}: {exc.strerror or exc}") from exc


def read_int(directory: str, name: str) -> int:
    """An integer file; "max" reads as -1."""
    text = read_file(directory, name).strip()
    return -1 if text == "max" else int(text)


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A flat keyed file ("oom_kill 3" per line), as memory.events or memory.oom_control."""
    values: dict[str, int] = {}
    for line in read_file(directory, name).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def read_procs(directory: str) -> list[int]:
    """The cgroup's processes; none when it is gone, also while being read (ENODEV: removed meanwhile)."""
    try:
        with open(os.path.join(directory, "cgroup.procs")) as handle:
            return [int(line) for line in handle if line.strip()]
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return []
        raise CgroupError(f"reading {directory}/cgroup.procs: {exc.strerror or exc}") from exc


def make_dir(directory: str) -> bool:
    """Create a cgroup directory and its parents; True if this call created the last one."""
    try:
        os.makedirs(directory, exist_ok=False)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise CgroupError(f"creating {directory}: {exc.strerror or exc}") from exc


def remove_dir(directory: str) -> None:
    """Remove an empty cgroup; gone already is fine, busy is an error."""
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise CgroupError(f"removing {directory}: processes are still in it") from exc
        raise CgroupError(f"removing {directory}: {exc.strerror or exc}") from exc
