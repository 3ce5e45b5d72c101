"""The nftables table that nodeagent owns, as nft JSON commands: egress masquerade and hostPort DNAT.

Pure: builds commands and reads listings; nodeagent.network.nft runs them. The table, in nft syntax:

    table ip nodeagent {
        chain prerouting {   # from other hosts (and pods) to the node's addresses
            type nat hook prerouting priority dstnat; policy accept;
            fib daddr type local tcp dport 8080 dnat to 10.88.0.7:80 comment "nodeagent pod 5c1f0e2a9b7d ns/web"
        }
        chain output {       # from the node itself to its own addresses
            type nat hook output priority -100; policy accept;
            ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 dnat to 10.88.0.7:80 comment "..."
        }
        chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade comment "nodeagent masquerade"
            ip saddr 10.88.0.0/16 ip daddr 10.88.0.0/16 ct status dnat masquerade comment "nodeagent masquerade"
        }
    }

Each pod's rules carry the comment "nodeagent pod <uid key> <namespace>/<name>", so a pod's rules are
found (and removed) by its UID alone. The second masquerade rule is the hairpin: a pod reaching a
hostPort that leads to a pod must see the answer come back through the node, not straight from the pod.
Connections to 127.0.0.0/8 are not forwarded: that needs route_localnet, a sysctl nodeagent leaves alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from nodeagent.network.model import HostPort, uid_key

FAMILY = "ip"
TABLE = "nodeagent"
BASE_COMMENT = "nodeagent masquerade"
POD_COMMENT = "nodeagent pod "
MAX_COMMENT_BYTES = 128  # NFT_USERDATA_MAXLEN allows more, but nft refuses longer comments
CHAINS = {  # name: (hook, priority)
    "prerouting": ("prerouting", -100),
    "output": ("output", -100),
    "postrouting": ("postrouting", 100),
}
LOOPBACK = IPv4Network("127.0.0.0/8")

Command = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListedRule:
    """A rule of the table as `nft -j list table` shows it."""

    chain: str
    handle: int
    comment: str | None

    @property
    def is_base(self) -> bool:
        """One of the table's own rules (the masquerades), not a pod's."""
        return self.comment == BASE_COMMENT

    @property
    def owner(self) -> str | None:
        """The uid key of the pod the rule belongs to; None for the table's own rules (and foreign ones)."""
        if self.comment is None or not self.comment.startswith(POD_COMMENT):
            return None
        return self.comment.removeprefix(POD_COMMENT).split(" ", 1)[0]

    def __str__(self) -> str:
        return f"nft rule {FAMILY} {TABLE} {self.chain} handle {self.handle} ({self.comment})"


def pod_comment(uid: str, *, namespace: str, name: str) -> str:
    comment = f"{POD_COMMENT}{uid_key(uid)} {namespace}/{name}"
    return comment.encode()[:MAX_COMMENT_BYTES].decode(errors="ignore")


def table_commands(network: IPv4Network) -> list[Command]:
    """Add the table, its chains and its own rules (adding a table or chain that exists changes nothing)."""
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for chain, (hook, priority) in CHAINS.items():
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": chain, "type": "nat",
                                           "hook": hook, "prio": priority, "policy": "accept"}}})
    commands.append(_rule("postrouting", BASE_COMMENT, [
        _match("==", _field("ip", "saddr"), _prefix(network)),
        _match("!=", _field("ip", "daddr"), _prefix(network)),
        {"masquerade": None},
    ]))
    commands.append(_rule("postrouting", BASE_COMMENT, [
        _match("==", _field("ip", "saddr"), _prefix(network)),
        _match("==", _field("ip", "daddr"), _prefix(network)),
        _match("in", {"ct": {"key": "status"}}, "dnat"),
        {"masquerade": None},
    ]))
    return commands


def pod_commands(uid: str, *, namespace: str, name: str, ip: IPv4Address,
                 host_ports: Sequence[HostPort]) -> list[Command]:
    """Add the DNAT rules of the pod's hostPorts, from other hosts (prerouting) and from the node (output)."""
    comment = pod_comment(uid, namespace=namespace, name=name)
    commands: list[Command] = []
    for port in host_ports:
        protocol = port.protocol.lower()
        target = {"dnat": {"addr": str(ip), "port": port.container_port}}
        destination = _destination(port)
        dport = _match("==", _field(protocol, "dport"), port.host_port)
        commands.append(_rule("prerouting", comment, [destination, dport, target]))
        not_loopback = [] if port.bound_ip else [_match("!=", _field("ip", "daddr"), _prefix(LOOPBACK))]
        commands.append(_rule("output", comment, [*not_loopback, destination, dport, target]))
    return commands


def delete_commands(rules: Sequence[ListedRule]) -> list[Command]:
    return [{"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": rule.chain, "handle": rule.handle}}}
            for rule in rules]


def delete_table_command() -> Command:
    return {"delete": {"table": {"family": FAMILY, "name": TABLE}}}


def parse_listing(document: Mapping[str, Any]) -> list[ListedRule]:
    """The rules in the output of `nft -j list table ip nodeagent`."""
    rules = []
    for item in document.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if isinstance(rule, dict) and rule.get("table") == TABLE and rule.get("family") == FAMILY:
            rules.append(ListedRule(str(rule["chain"]), int(rule["handle"]), rule.get("comment")))
    return rules


def _destination(port: HostPort) -> Command:
    if port.bound_ip is not None:
        return _match("==", _field("ip", "daddr"), port.bound_ip)
    return _match("==", {"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _rule(chain: str, comment: str, expressions: list[Command]) -> Command:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "comment": comment,
                             "expr": expressions}}}


def _match(op: str, left: Command, right: object) -> Command:
    return {"match": {"op": op, "left": left, "right": right}}


def _field(protocol: str, field: str) -> Command:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(network: IPv4Network) -> Command:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}
