"""cgroup v1 (systemd's hybrid layout) with systemd as PID 1: the agent's systemd driver on v1.

One agent (systemd driver, the kubelet's default NoSwap, no swap) carries the module's tests; the
removal test comes last.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent.cgroups.detect import detect_layout, systemd_is_init
from tests.integration.harness import NODE, wait_for
from tests.vm.guest import manifests
from tests.vm.guest.node import VMAgent, kernel_differences, show, start_all, unit_of, units, v1_properties

MANIFESTS = {"qos.yaml": manifests.QOS, "memory-demo-2.yaml": manifests.MEMORY_DEMO_2}
SLOW = 180.0


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMAgent]:
    layout = detect_layout()
    assert layout.version == 1, f"this module needs cgroup v1; the VM booted with {layout.name}"
    assert systemd_is_init(), "this module needs systemd as PID 1"
    assert "memory" in layout.v1_mounts and "cpu" in layout.v1_mounts, layout
    created = VMAgent(tmp_path_factory.mktemp("systemd-v1"), "systemd", {})
    try:
        for name, text in MANIFESTS.items():
            created.write(name, text)
        start_all([created])
        yield created
    finally:
        created.clean_up()


@pytest.mark.parametrize("pod", ["guaranteed", "burstable", "besteffort"])
def test_the_systemd_driver_s_values_are_in_the_v1_files(agent: VMAgent, pod: str) -> None:
    wait_for(lambda: agent.running(pod, "qos", "c"), timeout=SLOW, what=f"{pod} running", interval=0.5)
    plan = agent.pod_plan("qos.yaml", f"{pod}-{NODE}")
    assert (plan["cgroupVersion"], plan["cgroupDriver"]) == (1, "systemd")
    assert plan["pod"]["qosClass"] == manifests.QOS_CLASSES[pod]
    served = agent.client.get(f"/nodeagent/v1/namespaces/qos/pods/{pod}-{NODE}/cgroups")
    assert [c["path"] for c in served["cgroups"]] == [c["path"] for c in plan["cgroups"]]
    assert kernel_differences(agent, plan["cgroups"]) == []
    container = plan["cgroups"][-1]
    if pod != "besteffort":  # NoSwap on v1: memory+swap = memory, written beside systemd
        assert container["files"]["memory.memsw.limit_in_bytes"] == container["files"]["memory.limit_in_bytes"]
    assert len(agent.procs(container["path"])) == 1
    for cgroup in plan["cgroups"]:
        wanted = v1_properties(cgroup["files"])
        unit = unit_of(cgroup["path"])
        shown = show(unit, "ActiveState", "ControlGroup", *wanted)
        assert (shown["ActiveState"], shown["ControlGroup"]) == ("active", cgroup["path"]), unit
        assert {name: shown.get(name) for name in wanted} == wanted, unit


def test_memory_demo_2_is_oom_killed_on_v1(agent: VMAgent) -> None:
    def backing_off() -> dict[str, Any] | None:
        status = agent.status("memory-demo-2", "mem-example", "memory-demo-2-ctr")
        return status if status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" else None

    status = wait_for(backing_off, timeout=SLOW, what="CrashLoopBackOff", interval=0.5)
    last = status["lastState"]["terminated"]
    # v1 has no memory.oom.group: the kernel kills stress's worker, the agent kills the rest when its
    # eventfd fires; if stress's parent exits first (exit 1) the reason must still be OOMKilled
    assert last["reason"] == "OOMKilled", last
    assert last["exitCode"] in (137, 1), last
    assert status["restartCount"] >= 1
    kills = [e for e in agent.events() if e["reason"] == "OOMKilling"]
    assert kills and "Killed process stress (pid " in kills[0]["message"], kills
    # v1's oom_kill counter is the victim's cgroup's own (the scope, gone with it): the limit is what is left
    pod = agent.pod_plan("memory-demo-2.yaml", f"memory-demo-2-{NODE}")["cgroups"][0]["path"]
    assert agent.kernel(pod, "memory.limit_in_bytes") == str(100 * manifests.MiB)


def test_removing_the_pods_leaves_no_units_and_no_cgroups_on_v1(agent: VMAgent) -> None:
    uids = {p["metadata"]["uid"] for p in agent.pods()}
    assert len(uids) == 4
    for name in MANIFESTS:
        agent.remove(name)
    wait_for(lambda: agent.pods() == [], timeout=SLOW, what="every pod gone", interval=0.5)
    stem = agent.root_slice.removesuffix(".slice")
    assert units(f"{stem}-*") == sorted([f"{stem}-kubepods.slice", f"{stem}-kubepods-besteffort.slice",
                                         f"{stem}-kubepods-burstable.slice"])
    assert units("nodeagent-*.scope") == []
    layout = detect_layout()
    for controller in ("memory", "cpu", "pids"):
        mount = layout.v1_mounts[controller]
        left = [os.path.relpath(d, mount) for d, _, _ in os.walk(f"{mount}/{agent.root_slice}")]
        assert not [d for d in left if any(uid in d for uid in uids)], (controller, left)
