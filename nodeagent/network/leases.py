"""The pod address leases on disk: <stateDir>/network/leases.json, read whole and written atomically.

    {"version": 1, "podCIDR": "10.88.0.0/16", "last": "10.88.0.7",
     "leases": [{"uid": "...", "ip": "10.88.0.7", "name": "web", "namespace": "default",
                 "hostPorts": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP", "hostIP": null}]}]}

Written as write, fsync, rename, fsync of the directory, so a crash leaves the old table or the new one.
A lease is written before anything is created for its pod: the file is the journal that clean_up reads
after a crash. A file that cannot be read is an error, never an empty table: an empty table would
hand out the addresses of running pods again.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Network

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nodeagent.durable import write_atomically
from nodeagent.network.errors import LeaseFileError, NetworkError
from nodeagent.network.ipam import Lease, LeaseTable, gateway
from nodeagent.network.model import HostPort

VERSION = 1
FILE = "leases.json"


class _HostPortModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    container_port: int = Field(alias="containerPort")
    host_port: int = Field(alias="hostPort")
    protocol: str
    host_ip: str | None = Field(default=None, alias="hostIP")


class _LeaseModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    uid: str = Field(min_length=1)
    ip: IPv4Address
    name: str
    namespace: str
    # pydantic copies a mutable default per model; default_factory=list would make it tokenize list's
    # signature at import (~30 ms compiling tokenize's patterns, the agent's first use of them)
    host_ports: list[_HostPortModel] = Field(default=[], alias="hostPorts")


class _FileModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    version: int
    pod_cidr: IPv4Network = Field(alias="podCIDR")
    last: IPv4Address | None = None
    leases: list[_LeaseModel]


def leases_path(state_dir: str) -> str:
    return os.path.join(state_dir, "network", FILE)


def load_leases(path: str, network: IPv4Network) -> LeaseTable:
    """The table in the file, or an empty one for `network` when there is no file yet.

    Raises LeaseFileError for a file that cannot be read or holds no valid table, NetworkError when it
    holds leases of another pod CIDR than `network`.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return LeaseTable(network)
    except OSError as exc:
        raise LeaseFileError(path, f"cannot read it: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise LeaseFileError(path, "the file is empty")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeaseFileError(path, f"not valid JSON ({exc})") from exc
    try:
        model = _FileModel.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise LeaseFileError(path, f"{where}: {first['msg']} ({exc.error_count()} problem(s))") from exc
    if model.version != VERSION:
        raise LeaseFileError(path, f"version {model.version} is not known to this nodeagent (it writes {VERSION})")
    table = _to_table(path, model)
    if table.network != network:
        if table.leases:
            raise NetworkError(f"{path} holds {len(table.leases)} lease(s) of podCIDR {table.network}, but "
                               f"podCIDR is now {network}: remove those pods before changing it")
        return LeaseTable(network)
    return table


def save_leases(path: str, table: LeaseTable) -> None:
    document = {
        "version": VERSION,
        "podCIDR": str(table.network),
        "last": None if table.last is None else str(table.last),
        "leases": [_lease_json(lease) for lease in table.leases],
    }
    write_atomically(path, (json.dumps(document, indent=1) + "\n").encode())


def _to_table(path: str, model: _FileModel) -> LeaseTable:
    leases: list[Lease] = []
    seen_uids: set[str] = set()
    seen_ips: set[IPv4Address] = set()
    for index, entry in enumerate(model.leases):
        where = f"leases.{index}"
        if entry.uid in seen_uids:
            raise LeaseFileError(path, f"{where}.uid: {entry.uid} holds two leases")
        if entry.ip in seen_ips:
            raise LeaseFileError(path, f"{where}.ip: {entry.ip} is leased twice")
        if entry.ip not in model.pod_cidr or entry.ip in (model.pod_cidr.network_address, gateway(model.pod_cidr),
                                                          model.pod_cidr.broadcast_address):
            raise LeaseFileError(path, f"{where}.ip: {entry.ip} is not a pod address of {model.pod_cidr}")
        seen_uids.add(entry.uid)
        seen_ips.add(entry.ip)
        ports = tuple(HostPort(p.container_port, p.host_port, p.protocol, p.host_ip) for p in entry.host_ports)
        leases.append(Lease(entry.uid, entry.ip, entry.name, entry.namespace, ports))
    return LeaseTable(model.pod_cidr, tuple(leases), model.last)


def _lease_json(lease: Lease) -> dict[str, object]:
    return {
        "uid": lease.uid, "ip": str(lease.ip), "name": lease.name, "namespace": lease.namespace,
        "hostPorts": [{"containerPort": p.container_port, "hostPort": p.host_port, "protocol": p.protocol,
                       "hostIP": p.host_ip} for p in lease.host_ports],
    }
