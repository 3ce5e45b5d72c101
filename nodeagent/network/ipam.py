"""Pod address allocation from the pod CIDR: which address (and hostPorts) each pod holds.

Pure: a LeaseTable in, a new LeaseTable out; nodeagent.network.leases keeps it on disk.

    10.88.0.0/16:  10.88.0.0 network | 10.88.0.1 gateway (the bridge) | 10.88.0.2 ... 10.88.255.254 pods
                   | 10.88.255.255 broadcast

A pod keeps its address for as long as it holds a lease (same UID, same address). New leases go
round-robin from the last one handed out, as CNI's host-local plugin does, so a released address is
reused as late as possible: a connection to a pod that went away does not reach its successor.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from nodeagent.network.errors import AddressesExhaustedError, HostPortConflictError, NetworkError
from nodeagent.network.model import HostPort

MAX_PREFIX_LEN = 30  # a /30 has two usable addresses: the gateway and one pod


@dataclass(frozen=True, slots=True)
class Lease:
    uid: str
    ip: IPv4Address
    name: str
    namespace: str
    host_ports: tuple[HostPort, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseTable:
    network: IPv4Network
    leases: tuple[Lease, ...] = ()
    last: IPv4Address | None = None  # handed out last; the next search starts after it

    _by_uid: dict[str, Lease] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # each pod's status asks for its lease: a scan per pod made listing 1,000 pods quadratic
        object.__setattr__(self, "_by_uid", {lease.uid: lease for lease in reversed(self.leases)})

    def get(self, uid: str) -> Lease | None:
        return self._by_uid.get(uid)


def parse_pod_cidr(cidr: str) -> IPv4Network:
    """The pod CIDR as a network, refused unless IPv4, host bits zero, and room for a gateway and a pod."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise NetworkError(f"podCIDR {cidr!r}: {exc}") from exc
    if not isinstance(network, IPv4Network):
        raise NetworkError(f"podCIDR {cidr!r}: only IPv4 pod networks are supported")
    if network.prefixlen > MAX_PREFIX_LEN:
        raise NetworkError(f"podCIDR {cidr!r}: the prefix must be at most /{MAX_PREFIX_LEN} "
                           "(room for the bridge address and one pod)")
    return network


def gateway(network: IPv4Network) -> IPv4Address:
    """The bridge's address: the first of the network, never leased."""
    return network.network_address + 1


def allocate(table: LeaseTable, *, uid: str, name: str, namespace: str,
             host_ports: Sequence[HostPort]) -> tuple[LeaseTable, Lease]:
    """The pod's lease (its existing one, with the hostPorts updated, or a new address) and the new table.

    Raises HostPortConflictError when a hostPort is published by another pod (or twice by this one),
    AddressesExhaustedError when no address is free.
    """
    _check_host_ports(table, uid, host_ports)
    existing = table.get(uid)
    if existing is not None:
        updated = replace(existing, name=name, namespace=namespace, host_ports=tuple(host_ports))
        leases = tuple(updated if lease.uid == uid else lease for lease in table.leases)
        return replace(table, leases=leases), updated
    address = _free_address(table)
    lease = Lease(uid, address, name, namespace, tuple(host_ports))
    return replace(table, leases=(*table.leases, lease), last=address), lease


def release(table: LeaseTable, uid: str) -> LeaseTable:
    """The table without the pod's lease (the same table when it holds none)."""
    return replace(table, leases=tuple(lease for lease in table.leases if lease.uid != uid))


def _free_address(table: LeaseTable) -> IPv4Address:
    first = int(gateway(table.network)) + 1
    last = int(table.network.broadcast_address) - 1
    size = last - first + 1
    used = {int(lease.ip) for lease in table.leases}
    previous = int(table.last) if table.last is not None and first <= int(table.last) <= last else last
    for step in range(1, size + 1):
        candidate = first + (previous - first + step) % size
        if candidate not in used:
            return IPv4Address(candidate)
    raise AddressesExhaustedError(f"podCIDR {table.network}: all {size} pod addresses are leased")


def _check_host_ports(table: LeaseTable, uid: str, host_ports: Sequence[HostPort]) -> None:
    problems = [f"{port}: {problem}" for port in host_ports for problem in port.problems()]
    if problems:
        raise NetworkError("hostPort: " + "; ".join(problems))
    for index, port in enumerate(host_ports):
        for other in host_ports[index + 1:]:
            if port.overlaps(other):
                raise HostPortConflictError(f"hostPort {port.host_port}/{port.protocol} is published twice "
                                            f"by the pod ({port}; {other})")
    for lease in table.leases:
        if lease.uid == uid:
            continue
        for port in host_ports:
            for other in lease.host_ports:
                if port.overlaps(other):
                    raise HostPortConflictError(
                        f"hostPort {port.host_port}/{port.protocol} is published already by pod "
                        f"{lease.namespace}/{lease.name} (uid {lease.uid}, {other})")
