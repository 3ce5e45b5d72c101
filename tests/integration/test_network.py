"""The pod network on real namespaces: pods talk to each other, to the node and through hostPorts, and
nothing is left behind, after a tear-down or a crash. The "node" is a namespace of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.network import links
from nodeagent.network.errors import HostPortConflictError, LeaseFileError
from nodeagent.network.model import HostPort, PodNetwork, host_veth_name, netns_name
from nodeagent.network.namespaces import ip_forward_enabled
from nodeagent.network.pods import PodNetworks
from tests.integration.harness import wait_for
from tests.integration.netns_fixtures import (
    NODE_IP,
    OUTSIDE_IP,
    Node,
    addresses_in,
    created_node,
    in_netns,
    links_in,
    netns_names,
    nft_ruleset_in,
    nft_tables_in,
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with created_node(tmp_path / "state") as created:
        yield created


async def set_up(networks: PodNetworks, node: Node, name: str, *ports: HostPort) -> PodNetwork:
    return await networks.set_up(node.new_uid(), name=name, namespace="test", host_ports=ports)


def assert_nothing_left(node: Node, *uids: str) -> None:
    links = links_in(node.path)
    assert not [link for link in links if link.startswith("na") and link != "nodeagent0"], links
    assert not {netns_name(uid) for uid in uids} & netns_names()
    assert "ip nodeagent" not in nft_tables_in(node.path)


async def test_two_pods_talk_over_tcp_by_ip(node: Node) -> None:
    networks = node.networks()
    a = await set_up(networks, node, "a")
    b = await set_up(networks, node, "b")
    node.serve(b.netns, "TCP", 8080, "b")
    node.serve(a.netns, "TCP", 8080, "a")
    assert node.ask(a.netns, "TCP", b.ip, 8080) == f"b {a.ip}"  # pod to pod: no NAT
    assert node.ask(b.netns, "TCP", a.ip, 8080) == f"a {b.ip}"
    assert (a.gateway, a.prefix_len) == ("10.88.0.1", 16)
    assert a.ip != b.ip


async def test_the_node_reaches_a_pod(node: Node) -> None:
    pod = await set_up(node.networks(), node, "web")
    node.serve(pod.netns, "TCP", 80, "web")
    assert node.ask(node.path, "TCP", pod.ip, 80) == "web 10.88.0.1"  # from the bridge's address


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
async def test_host_port_from_the_node_address(node: Node, protocol: str) -> None:
    pod = await set_up(node.networks(), node, "web", HostPort(80, 8080, protocol))
    node.serve(pod.netns, protocol, 80, "web")
    # from another host to the node's address: prerouting DNAT, the client's address kept
    assert node.ask(node.outside, protocol, NODE_IP, 8080) == f"web {OUTSIDE_IP}"
    # from the node itself to its own address: output DNAT
    assert node.ask(node.path, protocol, NODE_IP, 8080) == f"web {NODE_IP}"
    # the other protocol is not forwarded
    other = "UDP" if protocol == "TCP" else "TCP"
    assert node.ask(node.outside, other, NODE_IP, 8080).startswith("error")


async def test_host_port_bound_to_one_node_address(node: Node) -> None:
    in_netns(node.path, "ip", "addr", "add", "192.0.2.3/24", "dev", "ext0")
    pod = await set_up(node.networks(), node, "web", HostPort(80, 8080, "TCP", "192.0.2.3"))
    node.serve(pod.netns, "TCP", 80, "web")
    assert node.ask(node.outside, "TCP", "192.0.2.3", 8080) == f"web {OUTSIDE_IP}"
    assert node.ask(node.outside, "TCP", NODE_IP, 8080).startswith("error")


async def test_a_pod_reaches_another_pod_through_a_host_port(node: Node) -> None:
    networks = node.networks()
    server = await set_up(networks, node, "server", HostPort(80, 8080, "TCP"))
    client = await set_up(networks, node, "client")
    node.serve(server.netns, "TCP", 80, "server")
    # hairpin: the answer must come back through the node, so the server sees the bridge's address
    assert node.ask(client.netns, "TCP", NODE_IP, 8080) == "server 10.88.0.1"


async def test_egress_is_masqueraded_to_the_node_address(node: Node) -> None:
    pod = await set_up(node.networks(), node, "client")
    node.serve(node.outside, "TCP", 9000, "outside")
    assert node.ask(pod.netns, "TCP", OUTSIDE_IP, 9000) == f"outside {NODE_IP}"


async def test_a_pod_sees_only_its_loopback_and_eth0(node: Node) -> None:
    pod = await set_up(node.networks(), node, "web")
    assert sorted(links_in(pod.netns)) == ["eth0", "lo"]
    assert NODE_IP not in addresses_in(pod.netns)
    assert pod.ip in addresses_in(pod.netns)
    assert "127.0.0.1" in addresses_in(pod.netns)  # loopback is up
    routes = in_netns(pod.netns, "ip", "route", "show", "default").stdout
    assert routes.startswith("default via 10.88.0.1 dev eth0"), routes


async def test_set_up_is_idempotent_and_repairs_a_half_made_pod(node: Node) -> None:
    networks = node.networks()
    uid = node.new_uid()
    first = await networks.set_up(uid, name="web", namespace="test", host_ports=[HostPort(80, 8080, "TCP")])
    again = await networks.set_up(uid, name="web", namespace="test", host_ports=[HostPort(80, 8080, "TCP")])
    restarted = await node.networks().set_up(uid, name="web", namespace="test",
                                             host_ports=[HostPort(80, 8080, "TCP")])
    assert first == again == restarted
    assert nft_ruleset_in(node.path).count("dnat to") == 2  # prerouting and output, not doubled
    in_netns(node.path, "ip", "link", "delete", host_veth_name(uid))  # the pod's eth0 goes with it
    repaired = await networks.set_up(uid, name="web", namespace="test", host_ports=[HostPort(80, 8080, "TCP")])
    assert repaired == first
    node.serve(repaired.netns, "TCP", 80, "web")
    assert node.ask(node.outside, "TCP", NODE_IP, 8080) == f"web {OUTSIDE_IP}"


async def test_a_pod_given_another_address_keeps_only_the_new_one(node: Node) -> None:
    networks = node.networks()
    await set_up(networks, node, "a")
    b = await set_up(networks, node, "b")
    (node.state_dir / "network" / "leases.json").unlink()  # lost: b's next lease starts from scratch
    again = await node.networks().set_up(b.uid, name="b", namespace="test", host_ports=[])
    assert again.ip != b.ip
    assert again.ip in addresses_in(b.netns) and b.ip not in addresses_in(b.netns)


async def test_tear_down_leaves_no_link_netns_lease_or_rule(node: Node) -> None:
    networks = node.networks()
    a = await set_up(networks, node, "a", HostPort(80, 8080, "TCP"))
    b = await set_up(networks, node, "b", HostPort(53, 5353, "UDP"))
    await networks.tear_down(a.uid)
    assert networks.lease(a.uid) is None
    assert host_veth_name(a.uid) not in links_in(node.path)
    assert netns_name(a.uid) not in netns_names()
    ruleset = nft_ruleset_in(node.path)
    assert "8080" not in ruleset and "5353" in ruleset  # only a's rules went
    await networks.tear_down(b.uid)
    await networks.tear_down(b.uid)  # again: nothing to do
    assert_nothing_left(node, a.uid, b.uid)
    assert node.networks().lease(b.uid) is None  # released on disk too
    assert "nodeagent0" in links_in(node.path)  # the bridge stays, until remove_all
    await networks.remove_all()
    assert "nodeagent0" not in links_in(node.path)


async def test_clean_up_after_a_crash_removes_unknown_pods_only(node: Node) -> None:
    crashed = node.networks()
    kept = await set_up(crashed, node, "kept", HostPort(80, 8080, "TCP"))
    gone = [await set_up(crashed, node, f"gone-{n}", HostPort(80, 9000 + n, "UDP")) for n in range(3)]
    del crashed  # the agent dies: nothing torn down
    restarted = node.networks()
    assert restarted.lease(kept.uid) == kept
    removed = await restarted.clean_up({kept.uid})
    for pod in gone:
        assert f"netns {pod.netns}" in removed
        assert f"link {host_veth_name(pod.uid)}" in removed
        assert any(line.startswith(f"lease {pod.ip} ") for line in removed)
        assert restarted.lease(pod.uid) is None
    assert sum(line.startswith("nft rule") for line in removed) == 6  # 3 pods x (prerouting + output)
    assert not {netns_name(pod.uid) for pod in gone} & netns_names()
    node.serve(kept.netns, "TCP", 80, "kept")  # the known pod is untouched
    assert node.ask(node.outside, "TCP", NODE_IP, 8080) == f"kept {OUTSIDE_IP}"
    removed = await node.networks().clean_up(set())
    assert f"netns {kept.netns}" in removed
    assert_nothing_left(node, kept.uid, *(pod.uid for pod in gone))


async def test_clean_up_removes_veths_and_rules_no_lease_accounts_for(node: Node) -> None:
    networks = node.networks()
    pod = await set_up(networks, node, "web", HostPort(80, 8080, "TCP"))
    other = await set_up(networks, node, "other")
    # as if the lease file had been restored from an older copy that knew only `other`
    (node.state_dir / "network" / "leases.json").write_text(
        (node.state_dir / "network" / "leases.json").read_text().replace(pod.uid, "someone-else"))
    restarted = node.networks()
    removed = await restarted.clean_up({other.uid, "someone-else"})
    assert f"link {host_veth_name(pod.uid)}" in removed
    assert sum(line.startswith("nft rule") for line in removed) == 2
    assert "8080" not in nft_ruleset_in(node.path)
    await restarted.remove_all()
    in_netns(node.path, "true")  # the node is still there
    assert_nothing_left(node, other.uid)


async def test_addresses_are_never_handed_out_twice_across_restarts(node: Node) -> None:
    live: dict[str, str] = {}  # uid -> ip
    handed_out: list[str] = []
    for round_ in range(5):
        networks = node.networks()  # a restarted agent: only the state directory is shared
        for uid, ip in live.items():
            assert networks.lease(uid) is not None and networks.lease(uid).ip == ip  # type: ignore[union-attr]
        for _ in range(10):
            pod = await set_up(networks, node, f"pod-{len(handed_out)}")
            assert pod.ip not in live.values()
            live[pod.uid] = pod.ip
            handed_out.append(pod.ip)
        for uid in list(live)[round_::3]:  # tear some down before the next restart
            await networks.tear_down(uid)
            del live[uid]
    assert len(handed_out) == 50
    assert len(set(handed_out)) == 50  # round-robin: not even a released address came back
    assert "10.88.0.1" not in handed_out
    survivor = next(iter(live))
    again = await node.networks().set_up(survivor, name="again", namespace="test", host_ports=[])
    assert again.ip == live[survivor]
    await node.networks().remove_all()
    assert_nothing_left(node, *node.uids)


@pytest.mark.parametrize("content", [b"", b'{"version": 1, "podCIDR": "10.88.0.0/16", "lea', b"\x00\xff garbage"],
                         ids=["truncated to nothing", "cut mid-write", "garbage"])
async def test_a_damaged_lease_file_is_a_clear_error(node: Node, content: bytes) -> None:
    networks = node.networks()
    pod = await set_up(networks, node, "web")
    path = node.state_dir / "network" / "leases.json"
    path.write_bytes(content)
    with pytest.raises(LeaseFileError, match=str(path)):
        node.networks()
    assert netns_name(pod.uid) in netns_names()  # nothing was removed on the way


async def test_a_host_port_taken_by_another_pod_is_refused(node: Node) -> None:
    networks = node.networks()
    await set_up(networks, node, "first", HostPort(80, 8080, "TCP"))
    uid = node.new_uid()
    with pytest.raises(HostPortConflictError, match="8080/TCP is published already by pod test/first"):
        await networks.set_up(uid, name="second", namespace="test", host_ports=[HostPort(81, 8080, "TCP")])
    assert networks.lease(uid) is None and netns_name(uid) not in netns_names()
    await set_up(networks, node, "udp", HostPort(80, 8080, "UDP"))  # another protocol is another port


async def test_ip_forward_off_warns_and_the_pod_still_reaches_the_node(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    with created_node(tmp_path / "state", ip_forward=False) as node:
        assert await ip_forward_enabled(node.path) is False
        pod = await set_up(node.networks(), node, "web")
        assert f"net.ipv4.ip_forward is 0 in {node.path}: pod test/web will not reach beyond the node" in caplog.text
        node.serve(pod.netns, "TCP", 80, "web")
        assert node.ask(node.path, "TCP", pod.ip, 80) == "web 10.88.0.1"  # over the bridge: no forwarding


async def test_a_failed_set_up_of_a_new_pod_is_undone(node: Node) -> None:
    in_netns(node.path, "ip", "link", "add", "notabridge", "type", "veth", "peer", "name", "notabridge-peer")
    networks = node.networks(bridge="notabridge")
    uid = node.new_uid()
    with pytest.raises(Exception, match=r"notabridge exists .* not a bridge"):
        await networks.set_up(uid, name="web", namespace="test", host_ports=[])
    assert networks.lease(uid) is None
    assert node.networks(bridge="notabridge").lease(uid) is None
    assert netns_name(uid) not in netns_names()



async def test_a_restarted_agent_resumes_a_living_network_and_rebuilds_a_lost_one(node: Node) -> None:
    pod = await set_up(node.networks(), node, "web")
    restarted = node.networks()
    assert restarted.resume(pod.uid) == pod  # no netlink, no nft: the namespace is still there
    in_netns(node.path, "ip", "netns", "delete", netns_name(pod.uid), check=False)
    assert restarted.resume(pod.uid) is None  # gone: the worker sets it up again
    again = await restarted.set_up(pod.uid, name="web", namespace="test", host_ports=[])
    assert again == pod
    node.serve(pod.netns, "TCP", 80, "web")
    assert node.ask(node.path, "TCP", pod.ip, 80) == "web 10.88.0.1"


async def test_a_lost_network_whose_old_veth_the_kernel_removes_meanwhile_is_rebuilt(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted namespace takes its veth pair along asynchronously (the kernel's cleanup_net): the agent can
    find the old host end and see it vanish before its own delete, which then fails with ENODEV."""
    pod = await set_up(node.networks(), node, "web")
    in_netns(node.path, "ip", "netns", "delete", netns_name(pod.uid), check=False)
    host_veth = host_veth_name(pod.uid)
    wait_for(lambda: host_veth not in links_in(node.path), what="the kernel removing the old veth")
    # a stand-in for an old host end that is still there when the agent looks
    in_netns(node.path, "ip", "link", "add", host_veth, "type", "veth", "peer", "name", "natest-peer")
    real_index = links._index

    async def vanishing_after_lookup(ipr: Any, name: str) -> int | None:
        index = await real_index(ipr, name)
        if name == host_veth and index is not None:
            in_netns(node.path, "ip", "link", "delete", host_veth)  # the kernel's cleanup wins the race
        return index

    monkeypatch.setattr(links, "_index", vanishing_after_lookup)
    again = await node.networks().set_up(pod.uid, name="web", namespace="test", host_ports=[])
    assert again == pod
    node.serve(pod.netns, "TCP", 80, "web")
    assert node.ask(node.path, "TCP", pod.ip, 80) == "web 10.88.0.1"


async def test_a_pod_namespace_is_new_and_every_thread_of_the_agent_stays_in_its_own(node: Node) -> None:
    """The namespace is made by a thread of its own (no forked child): that thread's namespace is mounted,
    and no thread of the agent is left in it or in any other."""
    def namespaces_of_threads() -> set[int]:
        return {os.stat(f"/proc/self/task/{tid}/ns/net").st_ino for tid in os.listdir("/proc/self/task")}

    own = os.stat("/proc/self/ns/net").st_ino
    assert namespaces_of_threads() == {own}
    pod = await set_up(node.networks(), node, "a")
    made = os.stat(pod.netns).st_ino
    assert made not in (own, os.stat(node.path).st_ino)
    assert namespaces_of_threads() == {own}
    assert sorted(links_in(pod.netns)) == ["eth0", "lo"]
