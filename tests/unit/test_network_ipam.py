"""Pod address allocation and hostPort bookkeeping: pure, no namespaces."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from nodeagent.network.errors import AddressesExhaustedError, HostPortConflictError, NetworkError
from nodeagent.network.ipam import Lease, LeaseTable, allocate, gateway, parse_pod_cidr, release
from nodeagent.network.model import HostPort

NETWORK = IPv4Network("10.88.0.0/16")


def give(table: LeaseTable, uid: str, *ports: HostPort) -> tuple[LeaseTable, IPv4Address]:
    table, lease = allocate(table, uid=uid, name=uid, namespace="default", host_ports=ports)
    return table, lease.ip


def test_the_first_pod_gets_the_address_after_the_gateway() -> None:
    table, ip = give(LeaseTable(NETWORK), "a")
    assert gateway(NETWORK) == IPv4Address("10.88.0.1")
    assert ip == IPv4Address("10.88.0.2")
    assert table.get("a") is not None and table.last == ip


def test_the_same_uid_keeps_its_address() -> None:
    table, first = give(LeaseTable(NETWORK), "a")
    table, _ = give(table, "b")
    table, again = give(table, "a", HostPort(80, 8080, "TCP"))
    assert again == first
    assert len(table.leases) == 2
    assert table.get("a").host_ports == (HostPort(80, 8080, "TCP"),)  # type: ignore[union-attr]


def test_released_addresses_come_back_last() -> None:
    table = LeaseTable(NETWORK)
    table, a = give(table, "a")
    table, b = give(table, "b")
    table = release(table, "a")
    table, c = give(table, "c")
    assert (a, b, c) == (IPv4Address("10.88.0.2"), IPv4Address("10.88.0.3"), IPv4Address("10.88.0.4"))
    assert release(table, "nobody") == table


def test_allocation_wraps_around_and_never_hands_out_a_leased_address() -> None:
    network = IPv4Network("10.0.0.0/29")  # .2 to .6 for pods
    table = LeaseTable(network)
    handed = []
    for uid in "abcde":
        table, ip = give(table, uid)
        handed.append(str(ip))
    assert handed == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(AddressesExhaustedError, match="all 5 pod addresses are leased"):
        give(table, "f")
    table = release(release(table, "d"), "b")
    table, ip = give(table, "f")
    assert ip == IPv4Address("10.0.0.3")  # after .6 the search wraps to .2 (taken), then .3
    table, ip = give(table, "g")
    assert ip == IPv4Address("10.0.0.5")


def test_a_last_address_outside_the_network_restarts_at_the_beginning() -> None:
    table = LeaseTable(NETWORK, last=IPv4Address("192.168.0.9"))
    assert give(table, "a")[1] == IPv4Address("10.88.0.2")


def test_a_slash_30_holds_one_pod() -> None:
    table, ip = give(LeaseTable(IPv4Network("10.0.0.0/30")), "a")
    assert ip == IPv4Address("10.0.0.2")
    with pytest.raises(AddressesExhaustedError):
        give(table, "b")


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.88.0.0/31", "at most /30"),
    ("10.88.0.1/16", "has host bits set"),
    ("fd00::/64", "only IPv4"),
    ("banana", "does not appear to be an IPv4 or IPv6 network"),
], ids=["too small", "host bits", "ipv6", "not a network"])
def test_unusable_pod_cidrs(cidr: str, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        parse_pod_cidr(cidr)


@pytest.mark.parametrize(("held", "wanted", "conflict"), [
    (HostPort(80, 8080, "TCP"), HostPort(81, 8080, "TCP"), True),
    (HostPort(80, 8080, "TCP"), HostPort(80, 8080, "UDP"), False),
    (HostPort(80, 8080, "TCP"), HostPort(80, 8081, "TCP"), False),
    (HostPort(80, 8080, "TCP", "192.0.2.1"), HostPort(80, 8080, "TCP", "192.0.2.2"), False),
    (HostPort(80, 8080, "TCP", "192.0.2.1"), HostPort(80, 8080, "TCP"), True),
    (HostPort(80, 8080, "TCP", "0.0.0.0"), HostPort(80, 8080, "TCP", "192.0.2.2"), True),
], ids=["same port", "other protocol", "other port", "other addresses", "specific vs all", "0.0.0.0 is all"])
def test_host_port_conflicts_between_pods(held: HostPort, wanted: HostPort, conflict: bool) -> None:
    table, _ = give(LeaseTable(NETWORK), "a", held)
    if conflict:
        with pytest.raises(HostPortConflictError, match="published already by pod default/a"):
            give(table, "b", wanted)
    else:
        give(table, "b", wanted)
    give(table, "a", wanted)  # a pod never conflicts with itself


def test_a_pod_cannot_publish_one_port_twice() -> None:
    with pytest.raises(HostPortConflictError, match="published twice"):
        give(LeaseTable(NETWORK), "a", HostPort(80, 8080, "TCP"), HostPort(81, 8080, "TCP"))


@pytest.mark.parametrize(("port", "message"), [
    (HostPort(80, 0, "TCP"), "hostPort 0 must be between 1 and 65535"),
    (HostPort(70000, 80, "TCP"), "containerPort 70000 must be between 1 and 65535"),
    (HostPort(80, 8080, "SCTP"), "protocol 'SCTP' is not supported"),
    (HostPort(80, 8080, "TCP", "fd00::1"), "hostIP 'fd00::1' is not an IPv4 address"),
    (HostPort(80, 8080, "TCP", "127.0.0.1"), "hostIP 127.0.0.1 is a loopback address"),
], ids=["host port 0", "container port too big", "sctp", "ipv6 host ip", "loopback host ip"])
def test_unusable_host_ports(port: HostPort, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        give(LeaseTable(NETWORK), "a", port)


def test_get_finds_each_lease_and_the_first_of_a_uid() -> None:
    first, second, other = (Lease("a", IPv4Address("192.168.0.2"), "p", "ns"),
                            Lease("a", IPv4Address("192.168.0.3"), "p", "ns"), Lease("b", IPv4Address("192.168.0.4"), "q", "ns"))
    table = LeaseTable(NETWORK, (first, second, other))
    assert table.get("a") is first and table.get("b") is other and table.get("c") is None
    assert replace(table, leases=(other,)).get("a") is None
