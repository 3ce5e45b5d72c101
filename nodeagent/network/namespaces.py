"""Named network namespaces (/run/netns/<name>, as `ip netns` keeps them), created and removed with pyroute2.

A named namespace is a bind mount of a namespace file over an empty file in /run/netns; it lives
until unmounted, whatever runs in it. It is made in a thread of its own, which unshares its network
namespace and has pyroute2 bind-mount it (/proc/thread-self/ns/net) the way `ip netns add` does, then
ends: no process is forked for it (pyroute2's own create forks one, ~10 ms), no other thread changes
namespace, and the event loop never waits. pyroute2 is imported where it is used (see
nodeagent.network.links).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from nodeagent import mounts
from nodeagent.network.errors import NetworkError
from nodeagent.network.model import NETNS_DIR

log = logging.getLogger(__name__)

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
T = TypeVar("T")


def _pyroute2_netns() -> Any:
    from pyroute2 import netns

    return netns


def resolve_netns(netns: str) -> str:
    """A namespace path: a bare name is one of /run/netns, as `ip netns` names them."""
    return netns if "/" in netns else f"{NETNS_DIR}/{netns}"


def netns_exists(path: str) -> bool:
    """A namespace is mounted at `path` (an empty file left by a creation cut short does not count): the file
    is on another device (nsfs) than its directory. Two lstat calls: os.path.ismount resolves the whole path,
    ~0.4 ms a pod, on the loop, when a restart takes a thousand pods back."""
    try:
        return os.lstat(path).st_dev != os.lstat(os.path.dirname(path)).st_dev
    except OSError:
        return False


async def create_netns(name: str) -> bool:
    """Create /run/netns/<name>; False when it exists already. A creation cut short is finished."""
    path = resolve_netns(name)
    if netns_exists(path):
        return False
    if os.path.lexists(path):
        log.info("removing %s: an empty file left by a creation cut short", path)
        os.unlink(path)
    try:
        await asyncio.to_thread(mounts.in_own_thread, functools.partial(_create_here, path), "netns")
    except OSError as exc:
        raise NetworkError(f"creating the network namespace {path}: {exc.strerror or exc}") from exc
    return True


async def remove_netns(name: str) -> bool:
    """Unmount and remove /run/netns/<name>; False when there was none. Processes in it keep it alive."""
    path = resolve_netns(name)
    if not os.path.lexists(path):
        return False
    try:
        await asyncio.to_thread(_pyroute2_netns().remove, path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise NetworkError(f"removing the network namespace {path}: {exc.strerror or exc}") from exc
    return True


async def ip_forward_enabled(netns: str | None) -> bool:
    """net.ipv4.ip_forward in `netns` (a name or path; None: the agent's own namespace)."""
    def read() -> bool:
        with open(IP_FORWARD) as handle:
            return handle.read().strip() != "0"
    try:
        if netns is None:
            return await asyncio.to_thread(read)
        return await asyncio.to_thread(call_in_netns, resolve_netns(netns), read)
    except OSError as exc:
        where = "the agent's network namespace" if netns is None else netns
        raise NetworkError(f"reading {IP_FORWARD} in {where}: {exc.strerror or exc}") from exc


def _create_here(path: str) -> None:
    """A new network namespace for this thread, mounted at `path` (blocking: in a thread of its own)."""
    mounts.unshare(mounts.CLONE_NEWNET)
    _pyroute2_netns().attach(path, "thread-self")


def call_in_netns(path: str, function: Callable[[], T]) -> T:
    """function() in a thread of its own that joined the namespace at `path` (setns moves one thread only)."""
    def joined() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _pyroute2_netns().setns(fd, flags=0)
        finally:
            os.close(fd)
        return function()

    return mounts.in_own_thread(joined, name=f"netns {path}")
