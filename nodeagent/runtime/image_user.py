"""An image's USER as numbers, from the image's own /etc/passwd and /etc/group, as containerd resolves it.

    resolve_user("<rootfs>", "nginx")       -> "101:101"
    resolve_user("<rootfs>", "1000")        -> "1000:<its passwd group, else 0>"
    resolve_user("<rootfs>", "app:staff")   -> "<app's uid>:<staff's gid>"

The image controls these files, so they are read as hostile input: resolved by the kernel inside the
mounted root (openat2 RESOLVE_IN_ROOT: a symbolic link to /etc/shadow or /dev/zero names the image's
own file of that name, never the node's), opened non-blocking (a FIFO cannot hang the reading thread),
read only when a regular file, and at most MAX_FILE_BYTES of it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from nodeagent.errors import RuntimeStartError

MAX_FILE_BYTES = 4 << 20  # far above any real passwd or group file
_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def resolve_user(rootfs: str, user: str) -> str:
    """"uid:gid" for an image's USER ("" stays ""); RuntimeStartError for a name the image does not define,
    or for a passwd or group file that is not a readable regular file."""
    if not user:
        return ""
    name, _, group = user.partition(":")
    passwd = _entries(rootfs, "passwd")
    if name.isdigit():
        uid = int(name)
        gid = next((int(entry[3]) for entry in passwd if entry[2] == name and entry[3].isdigit()), 0)
    else:
        found = next((entry for entry in passwd if entry[0] == name and entry[2].isdigit() and entry[3].isdigit()),
                     None)
        if found is None:
            raise RuntimeStartError("CreateContainerError",
                                    f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(found[2]), int(found[3])
    if group.isdigit():
        gid = int(group)
    elif group:
        entry = next((e for e in _entries(rootfs, "group") if e[0] == group and e[2].isdigit()), None)
        if entry is None:
            raise RuntimeStartError("CreateContainerError",
                                    f"unable to find group {group}: no matching entries in group file")
        gid = int(entry[2])
    return f"{uid}:{gid}"


def _entries(rootfs: str, name: str) -> list[list[str]]:
    """The colon-separated lines of the image's /etc/<name> with at least four fields; none if it is missing."""
    data = _read_image_file(rootfs, f"etc/{name}")
    if data is None:
        return []
    lines = data.decode(errors="replace").splitlines()
    return [fields for line in lines if len(fields := line.split(":")) >= 4]


def _read_image_file(rootfs: str, path: str, *, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """The content of the regular file `path` of the image mounted at `rootfs`, resolved inside it; None
    when it does not exist. RuntimeStartError when it is anything but a regular file of at most `limit`
    bytes."""
    shown = "/" + path
    try:
        fd = _open_in_root(rootfs, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise _unreadable(shown, exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _unreadable(shown, "not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _unreadable(shown, f"larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise _unreadable(shown, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def _open_in_root(root: str, path: str, flags: int) -> int:
    """openat2(2) of `path` below `root` with RESOLVE_IN_ROOT: `..` and absolute symbolic links stop at
    `root`, as if it were the file system's root."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return int(fd)
    finally:
        os.close(root_fd)


def _unreadable(path: str, why: str) -> RuntimeStartError:
    return RuntimeStartError("CreateContainerError", f"cannot read {path} in the image: {why}")
