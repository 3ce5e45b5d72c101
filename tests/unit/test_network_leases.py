"""The lease file: written atomically, read back exactly, and refused clearly when damaged."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from nodeagent.network.errors import LeaseFileError, NetworkError
from nodeagent.network.ipam import LeaseTable, allocate
from nodeagent.network.leases import leases_path, load_leases, save_leases
from nodeagent.network.model import HostPort

NETWORK = IPv4Network("10.88.0.0/16")


def sample() -> LeaseTable:
    table, _ = allocate(LeaseTable(NETWORK), uid="a", name="web", namespace="default",
                        host_ports=[HostPort(80, 8080, "TCP"), HostPort(53, 5353, "UDP", "192.0.2.1")])
    table, _ = allocate(table, uid="b", name="db", namespace="prod", host_ports=[])
    return table


def test_a_saved_table_loads_back_the_same(tmp_path: Path) -> None:
    path = leases_path(str(tmp_path))
    assert path == str(tmp_path / "network" / "leases.json")
    save_leases(path, sample())
    assert load_leases(path, NETWORK) == sample()
    assert not list((tmp_path / "network").glob("*.tmp"))


def test_no_file_is_an_empty_table(tmp_path: Path) -> None:
    assert load_leases(str(tmp_path / "leases.json"), NETWORK) == LeaseTable(NETWORK)


def write(tmp_path: Path, content: bytes | dict[str, object]) -> str:
    path = tmp_path / "leases.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


def valid() -> dict[str, object]:
    return {"version": 1, "podCIDR": "10.88.0.0/16", "last": "10.88.0.3",
            "leases": [{"uid": "a", "ip": "10.88.0.2", "name": "web", "namespace": "default", "hostPorts": []},
                       {"uid": "b", "ip": "10.88.0.3", "name": "db", "namespace": "default"}]}


def changed(**fields: object) -> dict[str, object]:
    return {**valid(), **fields}


def with_lease(index: int, **fields: object) -> dict[str, object]:
    leases = [dict(lease) for lease in valid()["leases"]]  # type: ignore[attr-defined]
    leases[index].update(fields)
    return changed(leases=leases)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"   \n", "the file is empty"),
    (b'{"version": 1, "podCIDR": "10.88.0.0/16", "lea', "not valid JSON"),
    (b"\x00\xff\xfe", "not valid JSON"),
    (b"[]", "(top level): Input should be a valid dictionary"),
    (changed(version=2), "version 2 is not known"),
    (changed(podCIDR="10.88.0.0/33"), "podCIDR"),
    (with_lease(1, ip="10.88.0.2"), "leases.1.ip: 10.88.0.2 is leased twice"),
    (with_lease(1, uid="a"), "leases.1.uid: a holds two leases"),
    (with_lease(0, ip="10.88.0.1"), "leases.0.ip: 10.88.0.1 is not a pod address of 10.88.0.0/16"),
    (with_lease(0, ip="10.99.0.1"), "leases.0.ip: 10.99.0.1 is not a pod address"),
    (with_lease(0, ip="10.88.0.300"), "leases.0.ip"),
    (with_lease(0, hostPorts=[{"hostPort": 1}]), "leases.0.hostPorts.0.containerPort: Field required"),
], ids=["empty", "blank", "cut mid-write", "garbage", "a list", "version", "bad cidr", "ip twice", "uid twice",
        "gateway leased", "outside the cidr", "not an address", "host port field missing"])
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, content: bytes | dict[str, object], message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(LeaseFileError) as caught:
        load_leases(path, NETWORK)
    assert message in str(caught.value)
    assert str(caught.value).startswith(path)
    assert "move the file aside" in str(caught.value)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "leases.json").mkdir()
    with pytest.raises(LeaseFileError, match="cannot read it"):
        load_leases(str(tmp_path / "leases.json"), NETWORK)


def test_another_pod_cidr_with_leases_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, valid())
    with pytest.raises(NetworkError, match=r"holds 2 lease.* of podCIDR 10.88.0.0/16, but podCIDR is now 10.99.0.0/16"):
        load_leases(path, IPv4Network("10.99.0.0/16"))


def test_another_pod_cidr_without_leases_is_taken(tmp_path: Path) -> None:
    path = write(tmp_path, changed(leases=[]))
    assert load_leases(path, IPv4Network("10.99.0.0/16")) == LeaseTable(IPv4Network("10.99.0.0/16"))


def test_the_file_keeps_the_last_address_for_round_robin(tmp_path: Path) -> None:
    path = write(tmp_path, valid())
    table = load_leases(path, NETWORK)
    assert table.last == IPv4Address("10.88.0.3")
    assert allocate(table, uid="c", name="c", namespace="d", host_ports=[])[1].ip == IPv4Address("10.88.0.4")
