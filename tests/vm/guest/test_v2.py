"""Pure cgroup v2 with systemd as PID 1: the real agent with the process runtime, under both drivers.

One agent per driver carries every test of this module (an agent's start costs ~20 s of emulated
CPU): both start together with the same settings (LimitedSwap with a 1 GiB swap file, failSwapOn
false, podPidsLimit 20) and the same pods, and the tests look at their pods one by one, in the
order written here; the restart test comes before the removal test, which removes every pod.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent.cgroups.detect import detect_layout, systemd_is_init
from tests.integration.harness import NODE, wait_for
from tests.vm.guest import manifests
from tests.vm.guest.node import (
    VMAgent,
    expected_properties,
    kernel_differences,
    keyed,
    meminfo,
    sample,
    show,
    start_all,
    swap_off,
    swap_on,
    unit_of,
    units,
)

DRIVERS = ["cgroupfs", "systemd"]
SETTINGS = {"failSwapOn": False, "memorySwap": {"swapBehavior": "LimitedSwap"}, "podPidsLimit": 20}
MANIFESTS = {"qos.yaml": manifests.QOS, "memory-demo-2.yaml": manifests.MEMORY_DEMO_2,
             "fork-bomb.yaml": manifests.FORK_BOMB, "swap.yaml": manifests.SWAP}
SLOW = 180.0  # seconds: emulated CPUs, two agents, a crash-looping pod


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VMAgent]]:
    layout = detect_layout()
    assert layout.version == 2, f"this module needs pure cgroup v2; the VM booted with {layout.name}"
    assert systemd_is_init(), "this module needs systemd as PID 1"
    swap_on("1G")
    created: dict[str, VMAgent] = {}
    try:
        for driver in DRIVERS:
            agent = VMAgent(tmp_path_factory.mktemp(driver), driver, SETTINGS)
            created[driver] = agent
            for name, text in MANIFESTS.items():
                agent.write(name, text)
        start_all(list(created.values()))
        yield created
    finally:
        for agent in created.values():
            agent.clean_up()
        swap_off()


def path_of(agent: VMAgent, pod: str, namespace: str, container: str | None) -> str:
    return agent.cgroup_path(pod, container, namespace)


@pytest.mark.parametrize("driver", DRIVERS)
def test_memory_demo_2_is_oom_killed_and_crash_loops(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]

    def backing_off() -> dict[str, Any] | None:
        status = agent.status("memory-demo-2", "mem-example", "memory-demo-2-ctr")
        return status if status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" else None

    status = wait_for(backing_off, timeout=SLOW, what="CrashLoopBackOff", interval=0.5)
    last = status["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    kills = [e for e in agent.events() if e["reason"] == "OOMKilling"]
    assert kills and "Killed process stress (pid " in kills[0]["message"], kills
    first = status["restartCount"]
    assert first >= 1
    wait_for(lambda: agent.status("memory-demo-2", "mem-example", "memory-demo-2-ctr")["restartCount"] > first,
             timeout=SLOW, what="another restart after the back-off", interval=0.5)
    plan = agent.pod_plan("memory-demo-2.yaml", f"memory-demo-2-{NODE}")
    pod_cgroup = plan["cgroups"][0]
    assert pod_cgroup["files"]["memory.max"] == str(100 * manifests.MiB)
    assert agent.kernel(pod_cgroup["path"], "memory.max") == str(100 * manifests.MiB)
    # the pod's cgroup counts every kill of its container's restarts
    assert keyed(agent.kernel(pod_cgroup["path"], "memory.events"))["oom_kill"] >= first + 1


@pytest.mark.parametrize("pod", ["guaranteed", "burstable", "besteffort"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_plan_values_are_in_the_kernel(agents: dict[str, VMAgent], driver: str, pod: str) -> None:
    agent = agents[driver]
    wait_for(lambda: agent.running(pod, "qos", "c"), timeout=SLOW, what=f"{pod} running", interval=0.5)
    plan = agent.pod_plan("qos.yaml", f"{pod}-{NODE}")
    assert plan["pod"]["qosClass"] == manifests.QOS_CLASSES[pod]
    assert (plan["cgroupVersion"], plan["cgroupDriver"]) == (2, driver)
    served = agent.client.get(f"/nodeagent/v1/namespaces/qos/pods/{pod}-{NODE}/cgroups")
    assert [c["path"] for c in served["cgroups"]] == [c["path"] for c in plan["cgroups"]]
    assert [c["files"] for c in served["cgroups"]] == [c["files"] for c in plan["cgroups"]]
    assert kernel_differences(agent, plan["cgroups"]) == []
    container = plan["cgroups"][-1]
    assert agent.status(pod, "qos", "c")["containerID"]
    assert len(agent.procs(container["path"])) == 1, "the container's one process, in its own cgroup"
    if driver == "systemd":  # the kubelet's slices, named from the cgroupRoot ("-" becomes "_")
        root = agent.root_slice.removesuffix(".slice")
        uid = plan["pod"]["uid"].replace("-", "_")
        qos = {"guaranteed": "", "burstable": "-burstable", "besteffort": "-besteffort"}[pod]
        parents = f"/{root}.slice/{root}-kubepods.slice" + (f"/{root}-kubepods{qos}.slice" if qos else "")
        assert [c["path"] for c in plan["cgroups"]] == [f"{parents}/{root}-kubepods{qos}-pod{uid}.slice",
                                                        f"{parents}/{root}-kubepods{qos}-pod{uid}.slice"
                                                        f"/nodeagent-{uid}-c.scope"]
        for cgroup in plan["cgroups"]:
            wanted = expected_properties(cgroup["files"])
            unit = unit_of(cgroup["path"])
            shown = show(unit, "ActiveState", "ControlGroup", *wanted)
            assert (shown["ActiveState"], shown["ControlGroup"]) == ("active", cgroup["path"]), unit
            assert {name: shown.get(name) for name in wanted} == wanted, unit


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_node_s_kubepods_and_qos_cgroups_have_the_kubelet_s_values(agents: dict[str, VMAgent],
                                                                        driver: str) -> None:
    agent = agents[driver]
    wait_for(lambda: agent.running("burstable", "qos", "c"), timeout=SLOW, what="burstable running", interval=0.5)
    if driver == "cgroupfs":
        kubepods = f"{agent.cgroup_root}/kubepods"
        burstable, besteffort = f"{kubepods}/burstable", f"{kubepods}/besteffort"
    else:
        stem = agent.root_slice.removesuffix(".slice")
        kubepods = f"/{agent.root_slice}/{stem}-kubepods.slice"
        burstable = f"{kubepods}/{stem}-kubepods-burstable.slice"
        besteffort = f"{kubepods}/{stem}-kubepods-besteffort.slice"

    def weight(milli_cpu: int) -> str:  # the kubelet's shares, then 1 + (shares-2)*9999/262142
        shares = max(2, milli_cpu * 1024 // 1000)
        return str(1 + (shares - 2) * 9999 // 262142)

    # kubepods: the node's allocatable (no reservations here); burstable: the Burstable pods' cpu
    # requests (the qos pod's 250m; memory-demo-2 and swap-burstable ask for none)
    expected: list[dict[str, Any]] = [
        {"path": kubepods, "files": {"cpu.weight": weight(1000 * (os.cpu_count() or 1)),
                                     "memory.max": str(meminfo()["MemTotal"])}},
        {"path": burstable, "files": {"cpu.weight": weight(250)}},
        {"path": besteffort, "files": {"cpu.weight": weight(0)}},
    ]
    assert kernel_differences(agent, expected) == []
    if driver == "systemd":  # systemd shows the bytes it was given, not the kernel's pages
        for cgroup in expected:
            wanted = expected_properties(cgroup["files"])
            shown = show(unit_of(cgroup["path"]), *wanted)
            assert {name: shown.get(name) for name in wanted} == wanted, cgroup["path"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_pids_limit_refuses_a_fork_bomb(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    wait_for(lambda: agent.running("fork-bomb", "pids", "c"), timeout=SLOW, what="fork-bomb running", interval=0.5)
    pod = path_of(agent, "fork-bomb", "pids", None)
    container = path_of(agent, "fork-bomb", "pids", "c")
    assert agent.kernel(pod, "pids.max") == "20"

    def refused() -> int:
        # Linux 6.1 counts a refused fork in the forking task's cgroup (the container's), newer
        # kernels also in the cgroup whose limit refused it (the pod's): either counts here.
        return keyed(agent.kernel(container, "pids.events"))["max"] + keyed(agent.kernel(pod, "pids.events"))["max"]

    wait_for(refused, timeout=SLOW, what="pids.events max > 0", interval=0.5)
    assert 15 <= int(agent.kernel(pod, "pids.current")) <= 20
    assert agent.process is not None and agent.process.poll() is None, "the agent survived"
    status = agent.status("fork-bomb", "pids", "c")
    assert "running" in status["state"] and status["restartCount"] == 0
    assert agent.cli_raw("/healthz").strip() == "ok"


@pytest.mark.parametrize("driver", DRIVERS)
def test_limited_swap_gives_a_burstable_container_swap_and_it_swaps(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    memory = meminfo()
    wanted = int(float(manifests.SWAP_REQUEST_BYTES) / float(memory["MemTotal"]) * float(memory["SwapTotal"]))
    assert wanted > 16 * manifests.MiB, "the VM's swap file is on"
    plan = agent.pod_plan("swap.yaml", f"swap-burstable-{NODE}")
    assert plan["pod"]["qosClass"] == "Burstable"
    container = plan["cgroups"][-1]
    assert container["files"]["memory.swap.max"] == str(wanted)
    assert container["files"]["memory.max"] == str(64 * manifests.MiB)
    wait_for(lambda: agent.running("swap-burstable", "swap", "c"), timeout=SLOW, what="running", interval=0.5)
    path = container["path"]
    assert agent.kernel(path, "memory.swap.max") == str(wanted // 4096 * 4096)  # the kernel keeps pages
    # 72 MiB held under a 64 MiB memory.max: what does not fit is in swap, and nothing is killed
    swapped = wait_for(lambda: int(agent.kernel(path, "memory.swap.current")) > 2 * manifests.MiB
                       and int(agent.kernel(path, "memory.swap.current")),
                       timeout=SLOW, what="memory.swap.current > 2 MiB", interval=0.5)
    assert swapped <= wanted
    assert int(agent.kernel(path, "memory.current")) <= 64 * manifests.MiB
    assert keyed(agent.kernel(path, "memory.events"))["oom_kill"] == 0
    status = agent.status("swap-burstable", "swap", "c")
    assert "running" in status["state"] and status["restartCount"] == 0
    if driver == "systemd":
        assert show(unit_of(path), "MemorySwapMax")["MemorySwapMax"] == str(wanted)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_guaranteed_container_gets_no_swap_and_is_oom_killed(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    plan = agent.pod_plan("swap.yaml", f"swap-guaranteed-{NODE}")
    assert plan["pod"]["qosClass"] == "Guaranteed"
    pod, container = plan["cgroups"][0], plan["cgroups"][-1]
    assert container["files"]["memory.swap.max"] == "0"
    seen: list[int] = []

    def ended() -> tuple[dict[str, Any], dict[str, Any]] | None:
        seen.append(int(agent.kernel(pod["path"], "memory.swap.current")))  # the pod's: all its containers
        status = agent.status("swap-guaranteed", "swap", "c")
        last = status.get("lastState", {}).get("terminated") or status["state"].get("terminated")
        return (status, last) if last else None

    # its latest end (it has been starting and ending since the agent started): OOMKilled, never swapping
    status, last = wait_for(ended, timeout=SLOW, what="swap-guaranteed's end", interval=0.25)
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137), last
    seen += sample(lambda: int(agent.kernel(pod["path"], "memory.swap.current")), seconds=3)
    assert len(seen) >= 5 and set(seen) == {0}, seen
    if driver == "systemd" and "running" in status["state"]:
        assert show(unit_of(container["path"]), "MemorySwapMax")["MemorySwapMax"] == "0"


def test_a_restarted_agent_under_systemd_adopts_its_containers_and_their_scopes(
        agents: dict[str, VMAgent]) -> None:
    agent = agents["systemd"]
    pods = ["guaranteed", "burstable", "besteffort"]
    for pod in pods:
        wait_for(functools.partial(agent.running, pod, "qos", "c"), timeout=SLOW, what=f"{pod} running", interval=0.5)
    before = {}
    for pod in pods:
        status = agent.status(pod, "qos", "c")
        scope = agent.cgroup_path(pod, "c", "qos")
        before[pod] = (status["containerID"], status["restartCount"], agent.procs(scope),
                       show(unit_of(scope), "InvocationID", "ActiveState", "ControlGroup"))
    agent.restart(signal.SIGKILL)
    for pod in pods:
        wait_for(functools.partial(agent.running, pod, "qos", "c"), timeout=SLOW, what=f"{pod} adopted", interval=0.5)
        status = agent.status(pod, "qos", "c")
        scope = agent.cgroup_path(pod, "c", "qos")
        after = (status["containerID"], status["restartCount"], agent.procs(scope),
                 show(unit_of(scope), "InvocationID", "ActiveState", "ControlGroup"))
        assert after == before[pod], pod  # same container, same process, the same (never restarted) scope
    # the new agent manages what it adopted: a removed pod's scope and slice go
    burstable = agent.pod_plan("qos.yaml", f"burstable-{NODE}")
    agent.write("qos.yaml", manifests.QOS.split("---\n")[0])  # guaranteed only
    wait_for(lambda: {p["metadata"]["name"] for p in agent.pods() if p["metadata"]["namespace"] == "qos"}
             == {f"guaranteed-{NODE}"}, timeout=SLOW, what="burstable and besteffort removed", interval=0.5)
    for cgroup in burstable["cgroups"]:
        assert units(unit_of(cgroup["path"])) == [], cgroup["path"]
        assert not agent.cgroups.exists(cgroup["path"]), cgroup["path"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_removing_the_pods_leaves_no_units_and_no_cgroups(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    uids = {p["metadata"]["uid"] for p in agent.pods()}
    assert len(uids) >= 5
    for name in MANIFESTS:
        agent.remove(name)
    wait_for(lambda: agent.pods() == [], timeout=SLOW, what="every pod gone", interval=0.5)
    mount = agent.cgroups.hierarchy.mount  # type: ignore[union-attr]
    top = agent.cgroup_root if driver == "cgroupfs" else f"/{agent.root_slice}"
    left = [os.path.relpath(d, mount) for d, _, _ in os.walk(f"{mount}{top}")]
    assert not [d for d in left if any(uid in d or uid.replace("-", "_") in d for uid in uids)], left
    # the kubelet keeps the node's kubepods and QoS cgroups; below them nothing is left
    assert len(left) == 4, left
    if driver == "systemd":
        stem = agent.root_slice.removesuffix(".slice")
        assert units(f"{stem}-*") == sorted([f"{stem}-kubepods.slice", f"{stem}-kubepods-besteffort.slice",
                                             f"{stem}-kubepods-burstable.slice"])
        assert units("nodeagent-*.scope") == []
        assert units("kubepods*") == []
