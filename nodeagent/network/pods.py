"""Pod networks on one node: set up, torn down, and found again after a crash.

    set_up(uid)     lease (saved first) -> bridge -> netns -> veth, address, route -> nft rules
    tear_down(uid)  nft rules -> veth -> netns -> lease (released last) [-> the table, with the last pod]
    clean_up(known) tear_down of every leased pod not known, then leftovers no lease accounts for

The lease file is the journal: a lease is saved before anything is made for its pod and released only
after everything is gone, so whatever a crash leaves behind is found from it. Pod namespaces live in
/run/netns, which every agent and test on the machine shares: only namespaces named by a lease are
ever removed. Inside the node's namespace the bridge's veths and the nodeagent table are this agent's.
One lock serialises all changes: the lease table, the bridge and the nft table are shared by all pods.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from ipaddress import IPv4Interface

from nodeagent.network import ipam, links, namespaces
from nodeagent.network.errors import NetworkError
from nodeagent.network.ipam import Lease, LeaseTable
from nodeagent.network.leases import leases_path, load_leases, save_leases
from nodeagent.network.model import VETH_PREFIX, HostPort, PodNetwork, host_veth_name, netns_name, netns_path, uid_key
from nodeagent.network.nft import Nft
from nodeagent.network.nftrules import (
    FAMILY,
    TABLE,
    delete_commands,
    delete_table_command,
    pod_commands,
    table_commands,
)

log = logging.getLogger(__name__)

UNDO_TIMEOUT_S = 30.0
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")  # IFNAMSIZ - 1 bytes, and what the kernel refuses in a name
_OUR_VETH = re.compile(rf"^{VETH_PREFIX}[0-9a-f]{{12}}$")


class PodNetworks:
    """The pod networks of one agent: one per agent, shared by every pod worker."""

    def __init__(self, *, state_dir: str, bridge: str = "nodeagent0", pod_cidr: str = "10.88.0.0/16",
                 node_netns: str | None = None) -> None:
        if not _IFNAME.match(bridge) or bridge in (".", ".."):
            raise NetworkError(f"bridge {bridge!r}: not a valid interface name (1 to 15 bytes, no '/', ':' "
                               "or white space)")
        self.bridge = bridge
        self.network = ipam.parse_pod_cidr(pod_cidr)
        self._gateway = str(ipam.gateway(self.network))  # read for every container spec of a pod with its network
        self.node_netns = None if node_netns is None else namespaces.resolve_netns(node_netns)
        self.leases_path = leases_path(state_dir)
        self._table = load_leases(self.leases_path, self.network)
        self._nft = Nft(self.node_netns)
        self._lock = asyncio.Lock()
        # What this agent made already: a new pod then costs one netlink round, not a check of each.
        self._bridge_ready = False
        self._table_ready = False

    @property
    def _where(self) -> str:
        return self.node_netns or "the agent's network namespace"

    def resume(self, uid: str) -> PodNetwork | None:
        """The network of a pod taken back after an agent restart, when its namespace is still there: no
        netlink or nft, so that taking a hundred pods back costs nothing. None: set it up again."""
        lease = self._table.get(uid)
        if lease is None or not namespaces.netns_exists(netns_path(uid)):
            return None
        return self._pod_network(lease)

    def lease(self, uid: str) -> PodNetwork | None:
        """The pod's network as leased (set up, or being set up or torn down); None without a lease."""
        lease = self._table.get(uid)
        return None if lease is None else self._pod_network(lease)

    async def set_up(self, uid: str, *, name: str, namespace: str, host_ports: Sequence[HostPort]) -> PodNetwork:
        """The pod's namespace, connected to the bridge, with its address and hostPorts; again the same.

        A pod that had no lease and fails half way is undone; one that had a lease (a pod taken back
        after a restart) keeps what it has, so its running containers keep their network.
        """
        async with self._lock:
            if not await namespaces.ip_forward_enabled(self.node_netns):
                # Not a reason to refuse: pods still reach each other and the node over the bridge.
                log.warning("net.ipv4.ip_forward is 0 in %s: pod %s/%s will not reach beyond the node nor be "
                            "reached on its hostPorts from other hosts; nodeagent does not change it: "
                            "sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/ to keep it",
                            self._where, namespace, name)
            new = self._table.get(uid) is None
            table, lease = ipam.allocate(self._table, uid=uid, name=name, namespace=namespace,
                                         host_ports=host_ports)
            await self._save(table)
            try:
                await self._build(lease, new=new)
            except BaseException:
                self._bridge_ready = self._table_ready = False  # check everything again next time
                if new:
                    await self._undo(uid)
                raise
            network = self._pod_network(lease)
            log.info("pod=%s/%s uid=%s network set up: ip=%s netns=%s hostPorts=[%s]", namespace, name, uid,
                     network.ip, network.netns, ", ".join(str(port) for port in host_ports))
            return network

    async def tear_down(self, uid: str) -> None:
        """Remove the pod's rules, veth, namespace and lease (and the table with the last pod); again nothing."""
        async with self._lock:
            removed = await self._tear_down(uid)
        if removed:
            log.info("uid=%s network torn down: %s", uid, "; ".join(removed))

    async def clean_up(self, known_uids: set[str]) -> list[str]:
        """After a crash: remove everything of pods not in `known_uids`; what was removed, one line each."""
        async with self._lock:
            removed: list[str] = []
            for lease in self._table.leases:
                if lease.uid not in known_uids:
                    removed += await self._tear_down(lease.uid)
            removed += await self._remove_strays()
        for line in removed:
            log.info("clean-up removed %s", line)
        return removed

    async def remove_all(self) -> list[str]:
        """Remove every pod network, the nodeagent table and the bridge; what was removed, one line each."""
        async with self._lock:
            removed: list[str] = []
            for lease in self._table.leases:
                removed += await self._tear_down(lease.uid)
            removed += await self._remove_strays()
            if await links.delete_link(self.node_netns, self.bridge):
                removed.append(f"bridge {self.bridge}")
            self._bridge_ready = False
        for line in removed:
            log.info("removed %s", line)
        return removed

    async def _build(self, lease: Lease, *, new: bool) -> None:
        gateway = ipam.gateway(self.network)
        prefix_len = self.network.prefixlen
        if not self._bridge_ready:
            await links.ensure_bridge(self.node_netns, self.bridge, IPv4Interface(f"{gateway}/{prefix_len}"))
            self._bridge_ready = True
        await namespaces.create_netns(netns_name(lease.uid))
        await links.plumb_pod(self.node_netns, netns_path(lease.uid), bridge=self.bridge,
                              host_veth=host_veth_name(lease.uid), address=IPv4Interface(f"{lease.ip}/{prefix_len}"),
                              gateway=gateway)
        if new and not lease.host_ports and self._table_ready:
            return  # no rules of its own, none from before, and the table with the masquerade is there
        # The pod's old rules go and its new ones come in the same transaction: never a moment without them.
        listed = await self._nft.list_rules() or []
        mine = [rule for rule in listed if rule.is_base or rule.owner == uid_key(lease.uid)]
        await self._nft.apply([*table_commands(self.network), *delete_commands(mine),
                               *pod_commands(lease.uid, namespace=lease.namespace, name=lease.name, ip=lease.ip,
                                             host_ports=lease.host_ports)],
                              what=f"hostPorts of pod {lease.namespace}/{lease.name}")
        self._table_ready = True

    async def _undo(self, uid: str) -> None:
        """Remove what a failed set_up made; a failure here is logged, the set_up's own error is the one raised."""
        try:
            async with asyncio.timeout(UNDO_TIMEOUT_S):
                await self._tear_down(uid)
        except Exception as exc:
            log.warning("uid=%s undoing a failed network set-up: %s (clean_up will retry)", uid, exc)

    async def _tear_down(self, uid: str) -> list[str]:
        removed: list[str] = []
        lease = self._table.get(uid)
        listed = await self._nft.list_rules()
        if listed is not None:
            mine = [rule for rule in listed if rule.owner == uid_key(uid)]
            last = not ipam.release(self._table, uid).leases
            await self._nft.apply([delete_table_command()] if last else delete_commands(mine),
                                  what=f"removing the rules of pod uid {uid}")
            removed += [str(rule) for rule in mine]
            if last:
                self._table_ready = False
                removed.append(f"nft table {self._nft_table_name} (no pod left)")
        if await links.delete_link(self.node_netns, host_veth_name(uid)):
            removed.append(f"link {host_veth_name(uid)}")
        if await namespaces.remove_netns(netns_name(uid)):
            removed.append(f"netns {netns_path(uid)}")
        if lease is not None:
            await self._save(ipam.release(self._table, uid))
            removed.append(f"lease {lease.ip} (pod {lease.namespace}/{lease.name}, uid {uid})")
        return removed

    async def _remove_strays(self) -> list[str]:
        """Veths on the bridge and nft rules that no lease accounts for; the table when no pod is left."""
        removed: list[str] = []
        keys = {uid_key(lease.uid) for lease in self._table.leases}
        for port in await links.bridge_ports(self.node_netns, self.bridge):
            if _OUR_VETH.match(port) and port.removeprefix(VETH_PREFIX) not in keys \
                    and await links.delete_link(self.node_netns, port):
                removed.append(f"link {port}")
        listed = await self._nft.list_rules()
        if listed is None:
            return removed
        if not self._table.leases:
            await self._nft.apply([delete_table_command()], what="removing the table")
            self._table_ready = False
            return [*removed, f"nft table {self._nft_table_name} (no pod left)"]
        strays = [rule for rule in listed if rule.owner is not None and rule.owner not in keys]
        await self._nft.apply(delete_commands(strays), what="removing rules of pods without a lease")
        return removed + [str(rule) for rule in strays]

    async def _save(self, table: LeaseTable) -> None:
        """The table, saved then used; a save that fails (a full stateDir) is a NetworkError: the pod's set-up
        or teardown fails, is said and is tried again, and the agent lives on."""
        try:
            await asyncio.to_thread(save_leases, self.leases_path, table)
        except OSError as exc:
            raise NetworkError(f"saving the address leases in {self.leases_path}: {exc.strerror}") from exc
        self._table = table

    def _pod_network(self, lease: Lease) -> PodNetwork:
        return PodNetwork(uid=lease.uid, netns=netns_path(lease.uid), ip=str(lease.ip),
                          gateway=self._gateway, prefix_len=self.network.prefixlen)

    @property
    def _nft_table_name(self) -> str:
        return f"{FAMILY} {TABLE} in {self._where}"
