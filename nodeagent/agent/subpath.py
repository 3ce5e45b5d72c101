"""subPath mounts that cannot leave their volume: the kubelet's answer to CVE-2017-1002101.

A container may leave symbolic links in a volume (`ln -s / /shared/escape`); a runtime handed
`<volume>/<subPath>` follows them when it mounts, to anywhere on the node. So, as the kubelet's
pkg/volume/util/subpath does: the path is resolved once (a link that stays inside the volume is fine),
checked to be inside the volume, then opened component by component from the volume's directory with
O_PATH | O_NOFOLLOW, where a symbolic link met now (swapped in meanwhile) is refused. The opened file is
bind-mounted, through /proc/self/fd/N, on

    <pod dir>/volume-subpaths/<volume>/<container>/<index of the volumeMount>

and the runtime gets that path, which nothing a container does can redirect any more. A missing subPath
is made first, the same way: the existing part resolved and checked, each new directory made with mkdirat
under its opened parent. Each start of the container mounts afresh; the mounts go with the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

from nodeagent import mounts
from nodeagent.errors import NodeAgentError

SUBPATHS = "volume-subpaths"
OPEN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class SubPathError(NodeAgentError):
    """A subPath that cannot be made or mounted safely; `making`: it failed while creating it."""

    def __init__(self, message: str, *, making: bool = False) -> None:
        super().__init__(message)
        self.making = making


def target_path(pod_dir: str, volume: str, container: str, index: int) -> str:
    return os.path.join(pod_dir, SUBPATHS, volume, container, str(index))


async def bind(volume_path: str, sub_path: str, target: str) -> None:
    """Mount `sub_path` of the volume on `target` afresh (what an earlier start mounted there goes first),
    made if missing; SubPathError if it leaves the volume."""
    await asyncio.to_thread(_bind, volume_path, sub_path, target)


async def unmount_under(directory: str) -> None:
    """Unmount everything mounted at or below `directory`, deepest (then latest) first; SubPathError if
    anything stays mounted."""
    await asyncio.to_thread(_unmount_all, directory)


def _mounted_under(directory: str) -> list[str]:
    """The mount points at or below `directory`, in the order they were mounted. mountinfo names them by
    their real path: so is `directory` looked up (a state directory under a symbolic link is no blind spot)."""
    top = os.path.realpath(directory).rstrip("/")
    return [point for point in _mount_points() if point == top or point.startswith(top + "/")]


# -- in a thread ------------------------------------------------------------------------------------

def _bind(volume_path: str, sub_path: str, target: str) -> None:
    _unmount_all(target)
    base = os.path.realpath(volume_path)
    wanted = os.path.join(base, sub_path)
    if not os.path.exists(wanted):  # as the kubelet: made (safely) if missing, with the volume's mode
        _make_dirs(base, wanted, stat.S_IMODE(os.stat(base).st_mode))
    resolved = os.path.realpath(wanted)
    if not _within(resolved, base):
        raise SubPathError(f"subpath {resolved!r} not within volume path {base!r}")
    fd = _open_under(base, resolved)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        _prepare_target(target, is_dir=is_dir)
        try:
            mounts.mount(f"/proc/self/fd/{fd}".encode(), target, None, mounts.MS_BIND, None)
        except OSError as exc:
            raise SubPathError(f"error mounting {resolved}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _make_dirs(base: str, wanted: str, mode: int) -> None:
    """doSafeMakeDir: the existing part resolved and checked, each missing directory made under its opened
    parent, never through a symbolic link."""
    existing = wanted
    missing: list[str] = []
    while not os.path.lexists(existing):
        existing, name = os.path.split(existing)
        missing.insert(0, name)
    resolved = os.path.realpath(existing)
    if not _within(resolved, base):
        raise SubPathError(f"path {resolved!r} is outside of allowed base {base!r}", making=True)
    fd = _open_under(base, resolved, making=True)
    try:
        for name in missing:
            with contextlib.suppress(FileExistsError):  # made meanwhile: opened without following, as all
                os.mkdir(name, mode, dir_fd=fd)
            child = os.open(name, OPEN_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise SubPathError(f"making {wanted}: {name} is not a directory", making=True)
            os.chmod(f"/proc/self/fd/{fd}", mode)  # not narrowed by the agent's umask
    except OSError as exc:
        raise SubPathError(f"making {wanted}: {exc.strerror}", making=True) from None
    finally:
        os.close(fd)


def _open_under(base: str, path: str, *, making: bool = False) -> int:
    """doSafeOpen: `path` (symlink-free, inside `base`) opened one component at a time with O_NOFOLLOW."""
    relative = os.path.relpath(path, base)
    fd = os.open(base, OPEN_FLAGS | os.O_DIRECTORY)
    current = base
    try:
        for name in [] if relative == "." else relative.split("/"):
            current = os.path.join(current, name)
            child = os.open(name, OPEN_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SubPathError(f"unexpected symlink found {current}", making=making)
    except OSError as exc:
        os.close(fd)
        raise SubPathError(f"cannot open {current}: {exc.strerror}", making=making) from None
    except SubPathError:
        os.close(fd)
        raise
    return fd


def _within(path: str, base: str) -> bool:
    return os.path.commonpath([path, base]) == base


def _prepare_target(target: str, *, is_dir: bool) -> None:
    """The mount point: a directory for a directory, an empty file for anything else (as the kubelet)."""
    os.makedirs(os.path.dirname(target), mode=0o750, exist_ok=True)
    if os.path.isdir(target) and not os.path.islink(target):
        if is_dir:
            return
        os.rmdir(target)
    elif os.path.lexists(target):
        if not is_dir:
            return
        os.unlink(target)
    if is_dir:
        os.mkdir(target, 0o750)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640))


def _unmount_all(directory: str) -> None:
    points = _mounted_under(directory)
    for point in sorted(reversed(points), key=lambda p: -p.count("/")):  # deepest first, then latest first
        _unmount(point)
    left = _mounted_under(directory)
    if left:
        raise SubPathError(f"still mounted under {directory}: {', '.join(left)}")


def _unmount(target: str) -> None:
    try:
        mounts.unmount(target)
    except OSError as exc:
        raise SubPathError(f"unmounting {target}: {exc.strerror}") from None


def _mount_points() -> list[str]:
    """Every mount point of the agent's mount namespace, in mount order (mountinfo's 5th field, unescaped)."""
    with open("/proc/self/mountinfo", "rb") as handle:
        lines = handle.read().splitlines()
    return [_unescape(line.split(b" ")[4]) for line in lines if line.count(b" ") >= 4]


def _unescape(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo octal."""
    out, index = bytearray(), 0
    while index < len(field):
        if field[index:index + 1] == b"\\" and field[index + 1:index + 4].isdigit():
            out.append(int(field[index + 1:index + 4], 8))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return os.fsdecode(bytes(out))
