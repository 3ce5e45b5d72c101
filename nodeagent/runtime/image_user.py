"""An image's USER as numbers, from the image's own /etc/passwd and /etc/group, as containerd resolves it.

    resolve_user("<rootfs>", "nginx")       -> "101:101"
    resolve_user("<rootfs>", "1000")        -> "1000:<its passwd group, else 0>"
    resolve_user("<rootfs>", "app:staff")   -> "<app's uid>:<staff's gid>"

The files are read inside the mounted root without following a symbolic link at /etc or at the file, so
an image cannot make the agent read the node's own files.
"""

from __future__ import annotations

import errno
import os

from nodeagent.errors import RuntimeStartError


def resolve_user(rootfs: str, user: str) -> str:
    """"uid:gid" for an image's USER ("" stays ""); RuntimeStartError for a name the image does not define."""
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
    """The colon-separated lines of <rootfs>/etc/<name> with at least four fields; none if it is missing."""
    etc = os.path.join(rootfs, "etc")
    if os.path.islink(etc):
        return []
    try:
        fd = os.open(os.path.join(etc, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return []
        raise
    with os.fdopen(fd, errors="replace") as handle:
        return [fields for line in handle if len(fields := line.rstrip("\n").split(":")) >= 4]
