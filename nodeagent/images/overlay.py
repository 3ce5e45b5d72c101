"""overlayfs for container root file systems: an image's layers read-only below a per-container upper.

    mount -t overlay overlay -o lowerdir=<top>:...:<lowest>,upperdir=<upper>,workdir=<work> <target>

Through mount(2) with ctypes, in a thread: no fork and exec of mount(8) on every container start (a few
milliseconds each) and the kernel's errno as it is. One exception: the options must fit in a page, so
when the layers' paths do not (from ~40 layers in a store under /var/lib), each lower directory gets a
short symbolic link in a scratch directory beside `work` and a `mount` process started there names
them relatively (`lowerdir=0:1:2...`), as containerd and containers/storage do with a chdir.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import tempfile
from collections.abc import Sequence

from nodeagent import mounts
from nodeagent.images.errors import MountError

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# A layer may be shared by many mounts, which overlayfs' inode index forbids: off where it exists.
_HAS_INDEX_OPTION = os.path.exists("/sys/module/overlay/parameters/index")


async def mount_rootfs(layers: Sequence[str], upper: str, work: str, target: str, *, read_only: bool = False) -> None:
    """Mount `layers` (lowest first, as Image.layers) under `upper` on `target`; `work` is overlayfs'
    scratch directory on the same file system as `upper`. `read_only` mounts the whole view read-only.
    Always `nodev`: a device node an image carries (or a container makes) opens nothing, neither for the
    agent reading the image's files nor in the container (runc gives it a /dev of its own)."""
    if not layers:
        raise MountError(f"mounting overlay on {target}: no layers")
    for path in (*layers, upper, work):
        if any(c in path for c in ",:\n") or not os.path.isabs(path):
            raise MountError(f"mounting overlay on {target}: {path!r} must be absolute, without ',' or ':'")
    lower = list(reversed(layers))  # overlayfs lists the top-most lower directory first
    options = overlay_options(lower, upper, work)
    flags = mounts.MS_NODEV | (mounts.MS_RDONLY if read_only else 0)
    if len(options) < PAGE_BYTES:
        await asyncio.to_thread(_mount, target, options, flags)
        return
    await _mount_through_links(lower, upper, work, target, read_only=read_only)


async def unmount(target: str) -> None:
    """Unmount `target`; lazily when it is busy, and nothing when it is not mounted (idempotent)."""
    await asyncio.to_thread(_unmount, target)


def overlay_options(lower: Sequence[str], upper: str, work: str) -> str:
    options = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    return options + ",index=off" if _HAS_INDEX_OPTION else options


def _mount(target: str, options: str, flags: int) -> None:
    try:
        mounts.mount(b"overlay", target, b"overlay", flags, options.encode())
    except OSError as exc:
        hint = " (the kernel log says why)" if exc.errno == errno.EINVAL else ""
        raise MountError(f"mounting overlay on {target}: {exc.strerror}{hint}") from None


async def _mount_through_links(lower: Sequence[str], upper: str, work: str, target: str, *, read_only: bool) -> None:
    """Mount with each lower directory named by a one-to-three character symbolic link, from a `mount`
    process started in the links' directory (overlayfs resolves the links when mounting; they go after)."""
    links = await asyncio.to_thread(tempfile.mkdtemp, prefix=".lower-", dir=os.path.dirname(work))
    try:
        for number, path in enumerate(lower):
            await asyncio.to_thread(os.symlink, path, os.path.join(links, str(number)))
        options = overlay_options([str(number) for number in range(len(lower))], upper, work)
        process = await asyncio.create_subprocess_exec(
            "mount", "-t", "overlay", "overlay", "-o", options + ",nodev" + (",ro" if read_only else ""), target,
            cwd=links,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await process.communicate()
    finally:
        await asyncio.to_thread(shutil.rmtree, links, True)
    if process.returncode != 0:
        raise MountError(f"mounting overlay on {target}: {stderr.decode(errors='replace').strip()}")


def _unmount(target: str) -> None:
    try:
        mounts.unmount(target)
    except OSError as exc:
        raise MountError(f"unmounting {target}: {exc.strerror}") from None
