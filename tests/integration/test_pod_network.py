"""Pod networks through the agent: the agent runs in a "node" namespace of the test's own (see the
harness), its pods get namespaces, addresses and hostPorts there, and nothing is left when they go."""

from __future__ import annotations

import json
import shlex
import signal
from typing import Any

from nodeagent.network.model import netns_name
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.netns_fixtures import CLIENT, NODE_IP, OUTSIDE_IP, SERVER, links_in, netns_names, nft_tables_in
from tests.integration.test_daemon import running

LEASES = "network/leases.json"


def server_pod(name: str, *, port: int = 8080, host_port: int | None = None, extra: str = "") -> str:
    """A pod whose server answers "<name> <the client's address>" (tests.integration.netns_fixtures)."""
    ports = f"ports: [{{containerPort: {port}, hostPort: {host_port}}}]" if host_port else ""
    return f"""
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: c
    image: x
    command: [python3, -c, {json.dumps(SERVER)}, TCP, '{port}', {name}]
    {ports}
{extra}"""


SEEN_UIDS: set[str] = set()  # every pod the tests saw: its namespace must go with it


def pod_ip(agent: AgentHarness, name: str) -> str:
    ip = wait_for(lambda: running(agent, name) and agent.pod(name)["status"].get("podIP"), what=f"{name}'s IP")
    SEEN_UIDS.add(agent.pod(name)["metadata"]["uid"])
    return str(ip)


def ask(agent: AgentHarness, where: str, host: str, port: int) -> str:
    """What the server at host:port answers a client in the namespace `where` (a path), once it listens."""
    assert agent.node is not None
    node = agent.node
    return wait_for(lambda: (answer := node.ask(where, "TCP", host, port)) and not answer.startswith("error")
                    and answer, what=f"an answer from {host}:{port}")


def run_in_pod(agent: AgentHarness, name: str, script: str) -> str:
    """Run a pod whose only container runs `script` once; its log."""
    agent.write(f"{name}.yaml", f"""
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: x
    command: [sh, -c, {json.dumps(script)}]
    env: [{{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
""")
    wait_for(lambda: "terminated" in agent.container_status(name, "c")["state"], what=f"{name} done")
    return agent.cli("logs", name).stdout


def leftovers(agent: AgentHarness) -> dict[str, Any]:
    assert agent.node is not None
    return {
        "veths": [link for link in links_in(agent.node.path) if link.startswith("na")],
        "pod namespaces": sorted({netns_name(uid) for uid in SEEN_UIDS} & netns_names()),  # only this test's
        "tables": [table for table in nft_tables_in(agent.node.path) if table == "ip nodeagent"],
        "leases": json.loads(leases.read_text())["leases"] if (leases := agent.state / LEASES).exists() else [],
    }


NOTHING: dict[str, list[Any]] = {"veths": [], "pod namespaces": [], "tables": [], "leases": []}


def test_pods_reach_each_other_and_the_node_reaches_them(agent: AgentHarness) -> None:
    agent.write("a.yaml", server_pod("a"))
    agent.write("b.yaml", server_pod("b"))
    a, b = pod_ip(agent, "a"), pod_ip(agent, "b")
    assert a != b and a.startswith("10.88.") and b.startswith("10.88.")
    assert agent.node is not None
    assert ask(agent, agent.node.path, a, 8080) == "a 10.88.0.1"  # from the node: the bridge's address
    script = f"python3 -c {shlex.quote(CLIENT)} TCP {b} 8080"
    assert run_in_pod(agent, "client", script) == f"b {pod_ip_of_finished(agent, 'client')}\n"  # no NAT
    wide = agent.cli("get", "pods", "-o", "wide").stdout
    row = next(line.split() for line in wide.splitlines() if line.startswith(f"a-{NODE}"))
    assert a in row


def pod_ip_of_finished(agent: AgentHarness, name: str) -> str:
    return str(agent.pod(name)["status"]["podIP"])


def test_a_pod_sees_its_own_network_only(agent: AgentHarness) -> None:
    log = run_in_pod(agent, "look", "ls /sys/class/net; echo --; cut -d: -f1 /proc/net/dev | tail -n +3; echo --; "
                                    "tail -n 1 /etc/hosts; echo --; echo $MY_IP; ls /sys/fs/cgroup >/dev/null && echo cg")
    ip = pod_ip_of_finished(agent, "look")
    interfaces, dev, hosts, env = (part.split() for part in log.split("--\n"))
    assert interfaces == ["eth0", "lo"]
    assert sorted(dev) == ["eth0", "lo"]
    assert hosts == [ip, f"look-{NODE}"]
    assert env == [ip, "cg"]  # the downward API's status.podIP; the node's cgroups still mounted


def test_a_host_network_pod_shares_the_node_network(agent: AgentHarness) -> None:
    agent.write("host.yaml", server_pod("host", port=8089, extra="  hostNetwork: true\n"))
    assert pod_ip(agent, "host") == NODE_IP  # the node's address: the source of its route out
    assert agent.node is not None
    assert ask(agent, agent.node.path, "127.0.0.1", 8089) == "host 127.0.0.1"
    assert agent.pod("host")["metadata"]["uid"] in SEEN_UIDS
    assert not leftovers(agent)["pod namespaces"]


def test_host_port_from_the_node_address_and_from_outside(agent: AgentHarness) -> None:
    agent.write("web.yaml", server_pod("web", port=80, host_port=8080))
    pod_ip(agent, "web")
    assert agent.node is not None
    assert ask(agent, agent.node.outside, NODE_IP, 8080) == f"web {OUTSIDE_IP}"
    assert ask(agent, agent.node.path, NODE_IP, 8080) == f"web {NODE_IP}"


def test_a_host_port_taken_by_another_pod_is_reported(agent: AgentHarness) -> None:
    agent.write("first.yaml", server_pod("first", host_port=8080))
    pod_ip(agent, "first")
    agent.write("second.yaml", server_pod("second", host_port=8080))
    event = wait_for(lambda: next((e for e in agent.events() if e["reason"] == "FailedCreatePodSandBox"), None),
                     what="the conflict reported")
    assert "8080/TCP is published already by pod default/first" in event["message"]
    assert agent.pod("second")["status"]["phase"] == "Pending"
    agent.remove("first.yaml")  # the port is free again: the second pod gets it
    assert pod_ip(agent, "second")


def test_removal_leaves_nothing(agent: AgentHarness) -> None:
    agent.write("web.yaml", server_pod("web", host_port=8080))
    pod_ip(agent, "web")
    assert leftovers(agent)["tables"] == ["ip nodeagent"]
    agent.remove("web.yaml")
    wait_for(lambda: not agent.pods(), what="the pod gone")
    assert leftovers(agent) == NOTHING


def test_after_a_crash_pods_keep_their_addresses_and_the_gone_are_cleaned_up(agent: AgentHarness) -> None:
    for name in ("keep", "leave"):
        agent.write(f"{name}.yaml", server_pod(name, host_port=8080 if name == "leave" else None))
    before = {name: pod_ip(agent, name) for name in ("keep", "leave")}
    agent.stop(signal.SIGKILL)
    agent.remove("leave.yaml")
    agent.start()
    wait_for(lambda: [p["metadata"]["name"] for p in agent.pods()] == [f"keep-{NODE}"], what="leave stopped")
    assert pod_ip(agent, "keep") == before["keep"]
    assert agent.node is not None
    assert ask(agent, agent.node.path, before["keep"], 8080) == "keep 10.88.0.1"  # still its network
    left = leftovers(agent)
    assert len(left["veths"]) == len(left["pod namespaces"]) == len(left["leases"]) == 1
    assert left["tables"] == ["ip nodeagent"]
    agent.remove("keep.yaml")
    wait_for(lambda: not agent.pods(), what="keep stopped")
    assert leftovers(agent) == NOTHING


def test_addresses_are_never_handed_out_twice_across_restarts(agent: AgentHarness) -> None:
    seen: dict[str, str] = {}
    for round_ in range(3):
        names = [f"p{round_}-{i}" for i in range(4)]
        for name in names:
            agent.write(f"{name}.yaml", server_pod(name))
        live = {name: pod_ip(agent, name) for name in names}
        assert len(set(live.values())) == len(live)
        assert not set(live.values()) & set(seen.values())  # released addresses come back as late as possible
        seen.update(live)
        agent.remove(f"{names[0]}.yaml")  # one goes, the others stay across the restart
        agent.stop(signal.SIGKILL)
        agent.start()
        for name in names[1:]:
            assert pod_ip(agent, name) == seen[name]
