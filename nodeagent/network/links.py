"""The pod's link to the node: bridge, veth pair, address and default route, through pyroute2's asyncio netlink.

    node netns:  nodeagent0 (bridge, 10.88.0.1/16) --- na5c1f0e2a9b7d (veth, a port of the bridge)
                                                             |
    pod netns:   lo (up)                                   eth0 (10.88.0.7/16, default via 10.88.0.1)

Every function is idempotent: what exists already and is right is kept, what is half made (one end
of a veth pair) is removed and made again. `node` is the node's namespace path, None for the agent's
own. Netlink errors become NetlinkOperationError naming the link and the namespace.

pyroute2 is imported where it is used: importing it takes ~0.3 s, which an agent should pay only once
it touches a pod network, not on every start.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from nodeagent.network.errors import NetlinkOperationError, NetworkError
from nodeagent.network.model import POD_INTERFACE
from nodeagent.network.namespaces import call_in_netns

LOOPBACK_INDEX = 1  # the kernel's LOOPBACK_IFINDEX: lo is the first link of every network namespace


@asynccontextmanager
async def _netlink(netns: str | None, what: str) -> AsyncIterator[Any]:
    """An rtnetlink socket in `netns` (never creating it), with errors translated for `what`.

    A socket belongs to the namespace of the thread that opened it: it is opened in a thread that joined
    `netns` (pyroute2's own netns= forks a child for it, in the event loop's thread).
    """
    from pyroute2 import AsyncIPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    where = f"{what} in {netns or 'the agent network namespace'}"
    try:
        fileno = None if netns is None else await asyncio.to_thread(call_in_netns, netns, _rtnetlink_fd)
        async with AsyncIPRoute(fileno=fileno) as ipr:
            yield ipr
    except (NetlinkError, OSError) as exc:
        raise NetlinkOperationError(where, exc) from exc


def _rtnetlink_fd() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE).detach()


async def _index(ipr: Any, name: str) -> int | None:
    found: list[int] = await ipr.link_lookup(ifname=name)
    return found[0] if found else None


async def _kind(ipr: Any, index: int) -> str | None:
    links = await ipr.link("get", index=index)
    kind: str | None = links[0].get(("linkinfo", "kind"))
    return kind


async def _add_address(ipr: Any, index: int, address: IPv4Interface, *, only: bool = False) -> None:
    """Add the address to the link; with `only`, remove its other IPv4 addresses (an earlier lease's)."""
    from pyroute2.netlink.exceptions import NetlinkError

    if only:
        async for found in await ipr.addr("dump", index=index, family=socket.AF_INET):
            other = IPv4Interface(f"{found.get('address')}/{found['prefixlen']}")
            if other != address:
                await ipr.addr("del", index=index, address=str(other.ip), prefixlen=other.network.prefixlen)
    try:
        await ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def ensure_bridge(node: str | None, bridge: str, address: IPv4Interface) -> None:
    """The bridge exists, holds the gateway address and is up."""
    from pyroute2.netlink.exceptions import NetlinkError

    async with _netlink(node, f"setting up bridge {bridge}") as ipr:
        index = await _index(ipr, bridge)
        if index is None:
            try:
                await ipr.link("add", ifname=bridge, kind="bridge")
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # made meanwhile by someone else: fine if it is a bridge
                    raise
            index = await _index(ipr, bridge)
            assert index is not None  # just created
        if (kind := await _kind(ipr, index)) != "bridge":
            raise NetworkError(f"{bridge} exists in {node or 'the agent network namespace'} and is a "
                               f"{kind or 'plain'} link, not a bridge: choose another bridge name")
        await _add_address(ipr, index, address)
        await ipr.link("set", index=index, state="up")


async def plumb_pod(node: str | None, pod: str, *, bridge: str, host_veth: str, address: IPv4Interface,
                    gateway: IPv4Address) -> None:
    """A veth pair from the bridge to the pod's eth0, the pod's address and default route, lo and eth0 up.

    `pod` is the pod's namespace path; the bridge exists (ensure_bridge). A new pair is made a port of the
    bridge and up in the same request, and its eth0 has no address to clear: 9 netlink round trips.
    """
    async with _netlink(node, f"connecting {host_veth} to {bridge}") as node_ipr, \
            _netlink(pod, f"setting up {POD_INTERFACE}") as pod_ipr:
        host_index = await _index(node_ipr, host_veth)
        pod_index = await _index(pod_ipr, POD_INTERFACE)
        bridge_index = await _index(node_ipr, bridge)
        if bridge_index is None:
            raise NetworkError(f"bridge {bridge} vanished while connecting {host_veth} to it")
        made = host_index is None or pod_index is None
        if host_index is not None and pod_index is not None:
            await node_ipr.link("set", index=host_index, master=bridge_index, state="up")
        else:
            if host_index is not None:
                await _delete(node_ipr, host_index)
            if pod_index is not None:
                await _delete(pod_ipr, pod_index)
            # The pod end is made in the pod's namespace directly, so "eth0" never meets the node's eth0.
            await node_ipr.link("add", ifname=host_veth, kind="veth", master=bridge_index, state="up",
                                peer={"ifname": POD_INTERFACE, "net_ns_fd": pod})
            pod_index = await _index(pod_ipr, POD_INTERFACE)
            assert pod_index is not None  # just created
        await pod_ipr.link("set", index=LOOPBACK_INDEX, state="up")
        await _add_address(pod_ipr, pod_index, address, only=not made)
        await pod_ipr.link("set", index=pod_index, state="up")
        await pod_ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=pod_index)


async def delete_link(node: str | None, name: str) -> bool:
    """Delete the link `name` (a veth takes its peer along); False when there was none."""
    async with _netlink(node, f"deleting {name}") as ipr:
        index = await _index(ipr, name)
        return index is not None and await _delete(ipr, index)


async def _delete(ipr: Any, index: int) -> bool:
    """Delete the link `index`; False when it went meanwhile.

    A deleted pod namespace takes its veth pair along asynchronously (the kernel's cleanup_net), so a link
    just listed can be gone by the time it is deleted.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        await ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise
    return True


async def bridge_ports(node: str | None, bridge: str) -> list[str]:
    """The names of the links attached to the bridge (none when there is no bridge)."""
    async with _netlink(node, f"listing the ports of {bridge}") as ipr:
        index = await _index(ipr, bridge)
        if index is None:
            return []
        return [link.get("ifname") async for link in await ipr.link("dump", master=index)]
