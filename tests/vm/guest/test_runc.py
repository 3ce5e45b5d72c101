"""The runc runtime with systemd as PID 1: on pure cgroup v2 under both drivers, on v1 under systemd's
(v1 with cgroupfs is the host's integration tests').

An agent per driver (`nodeagent.runtime: runc`) pulls a busybox image from a real registry
on the VM's loopback; runc makes the container cgroups itself from the bundle's `cgroupsPath` (cgroupfs:
the plan's path; systemd: `slice:prefix:name`, a scope runc asks systemd for) and `linux.resources`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent.cgroups.detect import detect_layout, systemd_is_init
from tests.integration.harness import NODE, wait_for
from tests.integration.images import busybox_layer, push_image
from tests.integration.registry import Registry, running_registry
from tests.vm.guest.node import (
    VMAgent,
    expected_properties,
    kernel_differences,
    show,
    start_all,
    unit_of,
    units,
    v1_properties,
)

VERSION = detect_layout().version
DRIVERS = ["cgroupfs", "systemd"] if VERSION == 2 else ["systemd"]
SLOW = 180.0  # seconds: emulated CPUs, two agents


def _pod(name: str, image: str, command: str, resources: str) -> str:
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: runc}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {image}
    command: {command}
    resources: {resources}
"""


def manifests(image: str) -> dict[str, str]:
    return {
        "limits.yaml": _pod("limits", image, '[sleep, "3600"]',
                            "{requests: {cpu: 250m, memory: 32Mi}, limits: {cpu: 500m, memory: 96Mi}}"),
        # memory-demo-2's 150 MiB against a 100 MiB limit, from busybox: dd's one 150 MiB buffer (dd is no
        # applet link in the image: busybox runs it by name)
        "oom.yaml": _pod("oom", image, "[busybox, dd, if=/dev/zero, of=/dev/null, bs=150M, count=1]",
                         "{requests: {memory: 50Mi}, limits: {memory: 100Mi}}"),
    }


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VMAgent]]:
    assert systemd_is_init(), "this module needs systemd as PID 1"
    created: dict[str, VMAgent] = {}
    with running_registry(tmp_path_factory.mktemp("registry")) as registry:
        image = push_image(registry, "vm/busybox", "1.0", [busybox_layer()]).reference
        try:
            for driver in DRIVERS:
                created[driver] = runc_agent(tmp_path_factory, driver, registry)
                for name, text in manifests(image).items():
                    created[driver].write(name, text)
            start_all(list(created.values()))
            yield created
        finally:
            for agent in created.values():
                agent.clean_up()


def runc_agent(tmp_path_factory: pytest.TempPathFactory, driver: str, registry: Registry) -> VMAgent:
    # the registry is on the VM's loopback, where the agents run (VMAgent.spawn: no node namespace)
    return VMAgent(tmp_path_factory.mktemp(f"runc-{driver}"), driver,
                   {"nodeagent": {"runtime": "runc", "insecureRegistries": [registry.host]}})


@pytest.mark.parametrize("driver", DRIVERS)
def test_runc_containers_get_the_plan_s_values(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    status = wait_for(lambda: agent.running("limits", "runc", "c"), timeout=SLOW, what="limits running",
                      interval=0.5)
    assert status["containerID"].startswith("runc://")
    plan = agent.pod_plan("limits.yaml", f"limits-{NODE}")
    assert (plan["cgroupVersion"], plan["cgroupDriver"]) == (VERSION, driver)
    assert kernel_differences(agent, plan["cgroups"]) == []
    container = next(c for c in plan["cgroups"] if c["level"] == "container")
    pids = agent.procs(container["path"])
    assert pids, "runc put the container's process in the plan's cgroup"
    if driver == "systemd":  # runc's scope, under the pod's slice, with the values as properties
        properties = (expected_properties if VERSION == 2 else v1_properties)(container["files"])
        assert show(unit_of(container["path"]), *properties) == properties


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_runc_container_over_its_limit_is_oom_killed(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]

    def ended() -> dict[str, Any] | None:
        status = agent.status("oom", "runc", "c")
        found: dict[str, Any] | None = status.get("lastState", {}).get("terminated") or status["state"].get("terminated")
        return found

    terminated = wait_for(ended, timeout=SLOW, what="the oom container's end", interval=0.5)
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137), terminated


@pytest.mark.parametrize("driver", DRIVERS)
def test_removing_runc_pods_leaves_no_units_and_no_cgroups(agents: dict[str, VMAgent], driver: str) -> None:
    agent = agents[driver]
    plans = [agent.pod_plan(name, f"{name.removesuffix('.yaml')}-{NODE}") for name in ("limits.yaml", "oom.yaml")]
    for name in ("limits.yaml", "oom.yaml"):
        agent.remove(name)
    wait_for(lambda: agent.pods() == [], timeout=SLOW, what="every pod gone", interval=0.5)
    for plan in plans:
        for cgroup in plan["cgroups"]:
            assert not agent.cgroups.exists(cgroup["path"]), cgroup["path"]
            if driver == "systemd":
                assert units(unit_of(cgroup["path"])) == [], cgroup["path"]
