"""The node's device nodes as OCI `linux.devices`, for a privileged container (containerd's WithDevices of
HostDevices, runc's devices.HostDevices): every character and block device under /dev, with its owner and
mode, but not the directories a container gets of its own (pts, shm, mqueue, fd) or the console.

    host_devices() -> [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644, ...}]
"""

from __future__ import annotations

import os
import stat
from typing import Any

SKIPPED_DIRECTORIES = frozenset(("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"))
SKIPPED_FILES = frozenset(("console",))
MAX_DEVICES = 10_000  # a bound on the walk; a node has hundreds


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Blocking (it walks /dev): run it in a thread."""
    found: list[dict[str, Any]] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRECTORIES]
        for name in sorted(files):
            if name in SKIPPED_FILES and directory == root:
                continue
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue  # gone since the listing
            kind = "c" if stat.S_ISCHR(info.st_mode) else "b" if stat.S_ISBLK(info.st_mode) else None
            if kind is None:
                continue  # symlinks, sockets, regular files
            found.append({"path": path, "type": kind, "major": os.major(info.st_rdev), "minor": os.minor(info.st_rdev),
                          "fileMode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid})
            if len(found) >= MAX_DEVICES:
                return found
    return found
