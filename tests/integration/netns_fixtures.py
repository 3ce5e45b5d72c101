"""Network namespaces for the pod network tests: a "node", a host outside it, and pods on the node.

    outside netns              node netns (the agent's view of the node)          pod netns
    ext0 192.0.2.2/24 ---veth--- ext0 192.0.2.1/24    nodeagent0 10.88.0.1 ---veth--- eth0 10.88.0.x

Everything lives in namespaces the test creates (192.0.2.0/24 is TEST-NET-1, and no route leads out of
them), so no interface, route or nft rule of the machine is touched and no packet leaves. ip_forward is
set inside the node namespace only. Every namespace, pod namespaces included, is removed afterwards,
whatever the test did; servers started in a namespace are ended by their PID.

Commands here may use `ip` and `nsenter`: only the component under test must not use `ip`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodeagent.network.model import netns_name
from nodeagent.network.pods import PodNetworks

NODE_IP = "192.0.2.1"
OUTSIDE_IP = "192.0.2.2"
PREFIX = "natest-"

# One connection (TCP) or datagram (UDP), answered with "<tag> <peer address>"; "ready" once bound.
SERVER = r"""
import socket, sys
protocol, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
server = socket.socket(socket.AF_INET, kind)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
if kind == socket.SOCK_STREAM:
    server.listen(16)
print("ready", flush=True)
while True:
    if kind == socket.SOCK_STREAM:
        connection, peer = server.accept()
        connection.recv(100)
        connection.sendall(f"{tag} {peer[0]}".encode())
        connection.close()
    else:
        data, peer = server.recvfrom(100)
        server.sendto(f"{tag} {peer[0]}".encode(), peer)
"""

CLIENT = r"""
import socket, sys
protocol, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
client = socket.socket(socket.AF_INET, kind)
client.settimeout(3)
client.connect((host, port))
client.send(b"hello")
print(client.recv(100).decode())
"""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def in_netns(path: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nsenter", f"--net={path}", "--", *argv, check=check)


def links_in(path: str) -> list[str]:
    return [link["ifname"] for link in json.loads(in_netns(path, "ip", "-j", "link", "show").stdout)]


def addresses_in(path: str) -> list[str]:
    return [info["local"] for link in json.loads(in_netns(path, "ip", "-j", "addr", "show").stdout)
            for info in link.get("addr_info", [])]


def nft_tables_in(path: str) -> list[str]:
    listing = json.loads(in_netns(path, "nft", "-j", "list", "tables").stdout)
    return [f"{item['table']['family']} {item['table']['name']}" for item in listing["nftables"] if "table" in item]


def nft_ruleset_in(path: str) -> str:
    return in_netns(path, "nft", "list", "ruleset").stdout


def netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


@dataclass
class Node:
    """The node and the host outside it; pods are tracked by UID so their namespaces are always removed."""

    name: str
    outside_name: str
    state_dir: Path
    uids: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def outside(self) -> str:
        return f"/run/netns/{self.outside_name}"

    def new_uid(self) -> str:
        uid = secrets.token_hex(16)
        self.uids.append(uid)
        return uid

    def networks(self, **options: str) -> PodNetworks:
        """A PodNetworks of this node, as an agent (re)started would build it."""
        return PodNetworks(state_dir=str(self.state_dir), node_netns=self.path, **options)

    def serve(self, netns: str, protocol: str, port: int, tag: str) -> None:
        """A server in `netns` on `port`, answering "<tag> <peer address>"; returns once it listens."""
        process = subprocess.Popen(["nsenter", f"--net={netns}", "--", sys.executable, "-c", SERVER, protocol,
                                    str(port), tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == "ready", f"server in {netns} did not start: {line} {process.stderr.read() if process.stderr else ''}"

    def ask(self, netns: str, protocol: str, host: str, port: int) -> str:
        """What the server at host:port answers a client in `netns` ("<tag> <address it saw>"), or the error."""
        for attempt in range(3):  # UDP has no retransmission: a first datagram may meet an unresolved neighbour
            result = in_netns(netns, sys.executable, "-c", CLIENT, protocol, host, str(port), check=False)
            if result.returncode == 0 or protocol == "TCP" or attempt == 2:
                break
            time.sleep(0.2)
        return result.stdout.strip() if result.returncode == 0 else f"error: {result.stderr.strip()[-200:]}"

    def clean_up(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                server.kill()
            server.wait()
            for stream in (server.stdout, server.stderr):
                if stream is not None:
                    stream.close()
        existing = netns_names()
        for name in [self.name, self.outside_name, *(netns_name(uid) for uid in self.uids)]:
            if name in existing:
                run("ip", "netns", "delete", name, check=False)


@contextmanager
def created_node(state_dir: Path, *, ip_forward: bool = True) -> Iterator[Node]:
    """A node (and the host outside it) for one test, removed afterwards with every pod namespace."""
    node = create_node(state_dir, ip_forward=ip_forward)
    try:
        yield node
    finally:
        node.clean_up()


def create_node(state_dir: Path, *, ip_forward: bool = True) -> Node:
    """A node (and the host outside it); the caller calls its clean_up()."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    node = Node(f"{PREFIX}{secrets.token_hex(4)}", f"{PREFIX}{secrets.token_hex(4)}", state_dir)
    try:
        run("ip", "netns", "add", node.name)
        run("ip", "netns", "add", node.outside_name)
        in_netns(node.path, "ip", "link", "set", "lo", "up")
        in_netns(node.outside, "ip", "link", "set", "lo", "up")
        in_netns(node.path, "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext0", "netns",
                 node.outside_name)
        in_netns(node.path, "ip", "addr", "add", f"{NODE_IP}/24", "dev", "ext0")
        in_netns(node.outside, "ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "ext0")
        in_netns(node.path, "ip", "link", "set", "ext0", "up")
        in_netns(node.outside, "ip", "link", "set", "ext0", "up")
        in_netns(node.path, "sysctl", "-qw", f"net.ipv4.ip_forward={1 if ip_forward else 0}")
    except BaseException:
        node.clean_up()
        raise
    return node
