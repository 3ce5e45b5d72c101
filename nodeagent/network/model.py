"""What the pod network hands out, and the kernel names it gives a pod's objects.

Pure: no netlink, no files. Names derive from the UID alone, so a restarted agent finds what an
earlier one created:

    netns_name("3e30337f...") -> "nodeagent-5c1f0e2a9b7d"   (/run/netns/nodeagent-5c1f0e2a9b7d)
    host_veth_name(...)       -> "na5c1f0e2a9b7d"           (15 bytes at most: IFNAMSIZ - 1)
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

NETNS_DIR = "/run/netns"
NETNS_PREFIX = "nodeagent-"
VETH_PREFIX = "na"
POD_INTERFACE = "eth0"
PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True, slots=True)
class HostPort:
    """A container port published on the node: `ports[].hostPort` of a pod without hostNetwork.

    host_ip None (or "0.0.0.0") means every address of the node.
    """

    container_port: int
    host_port: int
    protocol: str
    host_ip: str | None = None

    def problems(self) -> list[str]:
        """What makes this port unusable, worded for an error message (empty: usable)."""
        found = []
        for field, value in (("containerPort", self.container_port), ("hostPort", self.host_port)):
            if not 1 <= value <= 65535:
                found.append(f"{field} {value} must be between 1 and 65535")
        if self.protocol not in PROTOCOLS:
            found.append(f"protocol {self.protocol!r} is not supported (only TCP and UDP)")
        if self.host_ip not in (None, "", "0.0.0.0"):
            try:
                if ipaddress.IPv4Address(self.host_ip).is_loopback:
                    found.append(f"hostIP {self.host_ip} is a loopback address, which cannot be forwarded to a pod")
            except ValueError:
                found.append(f"hostIP {self.host_ip!r} is not an IPv4 address")
        return found

    @property
    def bound_ip(self) -> str | None:
        """The one node address this port is published on, None for all of them."""
        return None if self.host_ip in (None, "", "0.0.0.0") else self.host_ip

    def overlaps(self, other: HostPort) -> bool:
        """Both publish the same protocol and port on at least one common node address."""
        if (self.protocol, self.host_port) != (other.protocol, other.host_port):
            return False
        return self.bound_ip is None or other.bound_ip is None or self.bound_ip == other.bound_ip

    def __str__(self) -> str:
        return f"{self.bound_ip or '0.0.0.0'}:{self.host_port}/{self.protocol} -> {self.container_port}"


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """A pod's network as its containers see it: join `netns`, where eth0 has `ip`/`prefix_len`."""

    uid: str
    netns: str
    ip: str
    gateway: str
    prefix_len: int


def uid_key(uid: str) -> str:
    """12 hex digits standing for the UID in kernel names: valid for any UID, and never chosen by a manifest."""
    return hashlib.blake2b(uid.encode(), digest_size=6).hexdigest()


def netns_name(uid: str) -> str:
    return NETNS_PREFIX + uid_key(uid)


def netns_path(uid: str) -> str:
    return f"{NETNS_DIR}/{netns_name(uid)}"


def host_veth_name(uid: str) -> str:
    return VETH_PREFIX + uid_key(uid)
