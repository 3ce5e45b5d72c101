"""The nodeagent nft table as JSON commands, and reading rules back from `nft -j list table`."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from nodeagent.network.model import HostPort, uid_key
from nodeagent.network.nftrules import (
    BASE_COMMENT,
    ListedRule,
    delete_commands,
    parse_listing,
    pod_commands,
    pod_comment,
    table_commands,
)


def rule_of(command: dict[str, object]) -> dict[str, object]:
    return command["add"]["rule"]  # type: ignore[index, no-any-return]


def test_the_table_masquerades_pod_egress_but_not_pod_to_pod() -> None:
    commands = table_commands(IPv4Network("10.88.0.0/16"))
    assert commands[0] == {"add": {"table": {"family": "ip", "name": "nodeagent"}}}
    chains = [c["add"]["chain"] for c in commands if "chain" in c["add"]]
    assert [(c["name"], c["hook"], c["prio"]) for c in chains] == [
        ("prerouting", "prerouting", -100), ("output", "output", -100), ("postrouting", "postrouting", 100)]
    egress, hairpin = (rule_of(c) for c in commands if "rule" in c["add"])
    prefix = {"prefix": {"addr": "10.88.0.0", "len": 16}}
    assert egress["expr"] == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": prefix}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": prefix}},
        {"masquerade": None},
    ]
    assert {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}} in hairpin["expr"]  # type: ignore[operator]
    assert egress["comment"] == hairpin["comment"] == BASE_COMMENT


def test_a_host_port_is_forwarded_from_other_hosts_and_from_the_node() -> None:
    commands = pod_commands("uid-1", namespace="ns", name="web", ip=IPv4Address("10.88.0.7"),
                            host_ports=[HostPort(80, 8080, "UDP")])
    prerouting, output = (rule_of(c) for c in commands)
    local = {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}
    dport = {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 8080}}
    dnat = {"dnat": {"addr": "10.88.0.7", "port": 80}}
    assert (prerouting["chain"], prerouting["expr"]) == ("prerouting", [local, dport, dnat])
    not_loopback = {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                              "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}
    assert (output["chain"], output["expr"]) == ("output", [not_loopback, local, dport, dnat])
    assert prerouting["comment"] == output["comment"] == f"nodeagent pod {uid_key('uid-1')} ns/web"


def test_a_host_port_on_one_address_matches_that_address() -> None:
    commands = pod_commands("uid-1", namespace="ns", name="web", ip=IPv4Address("10.88.0.7"),
                            host_ports=[HostPort(80, 8080, "TCP", "192.0.2.1")])
    daddr = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.1"}}
    assert all(rule_of(c)["expr"][0] == daddr for c in commands)  # type: ignore[index]


def test_comments_fit_nft_and_name_the_pod_by_uid_key() -> None:
    comment = pod_comment("uid-1", namespace="n" * 63, name="é" * 200)
    assert len(comment.encode()) <= 128
    assert ListedRule("output", 3, comment).owner == uid_key("uid-1")
    assert ListedRule("postrouting", 4, BASE_COMMENT).owner is None
    assert ListedRule("postrouting", 4, BASE_COMMENT).is_base
    assert ListedRule("output", 5, None).owner is None
    assert ListedRule("output", 6, "someone else's").owner is None


def test_rules_are_read_back_from_a_listing() -> None:
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "ip", "name": "nodeagent", "handle": 1}},
        {"chain": {"family": "ip", "table": "nodeagent", "name": "output", "handle": 2}},
        {"rule": {"family": "ip", "table": "nodeagent", "chain": "output", "handle": 7, "comment": "x", "expr": []}},
        {"rule": {"family": "ip", "table": "nodeagent", "chain": "postrouting", "handle": 9, "expr": []}},
    ]}
    rules = parse_listing(listing)
    assert rules == [ListedRule("output", 7, "x"), ListedRule("postrouting", 9, None)]
    assert delete_commands(rules[:1]) == [
        {"delete": {"rule": {"family": "ip", "table": "nodeagent", "chain": "output", "handle": 7}}}]
