"""Issue 16's resources for real, on the process runtime: pod-level limits in the kernel, hugetlb files,
hugepages admission."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.cgroups.detect import detect_layout
from nodeagent.node import has_hugetlb, read_hugepages
from nodeagent.plan.resource_config import hugepage_unit_size
from tests.integration.harness import AgentHarness, wait_for

MiB = 1 << 20

POD_LEVEL = """\
apiVersion: v1
kind: Pod
metadata: {name: pod-level}
spec:
  resources:
    limits: {cpu: 500m, memory: 64Mi}
  containers:
  - {name: a, image: x, command: [sleep, infinity]}
  - {name: b, image: x, command: [sleep, infinity]}
"""


def running(agent: AgentHarness, name: str) -> dict[str, Any] | None:
    pod = agent.pod(name)
    statuses = pod["status"].get("containerStatuses") or []
    return pod if statuses and all("running" in s["state"] for s in statuses) else None


def test_a_pod_with_only_pod_level_limits_is_limited_in_the_kernel(agent: AgentHarness) -> None:
    agent.write("pod-level.yaml", POD_LEVEL)
    pod = wait_for(lambda: running(agent, "pod-level"), what="running", timeout=30)
    assert pod["status"]["qosClass"] == "Guaranteed"
    path = agent.cgroup_path("pod-level")
    if agent.cgroups.version == 2:
        assert agent.kernel(path, "memory.max") == str(64 * MiB)
        assert agent.kernel(path, "cpu.max") == "50000 100000"
    else:
        assert agent.kernel(path, "memory.limit_in_bytes") == str(64 * MiB)
        assert agent.kernel(path, "cpu.cfs_quota_us") == "50000"
    # the containers themselves have no limit of their own: the pod's bounds them
    for container in ("a", "b"):
        assert agent.procs(agent.cgroup_path("pod-level", container))


def test_hugetlb_limits_are_written_on_the_pod_and_container_cgroups(agent: AgentHarness) -> None:
    sizes = [size for size, _ in read_hugepages()]
    if not sizes:
        pytest.skip("this kernel offers no hugepages (/sys/kernel/mm/hugepages is empty)")
    if not has_hugetlb(detect_layout()):
        pytest.skip("the hugetlb cgroup controller is not mounted (cgroup v1) or not offered (v2) here")
    agent.write("plain.yaml", POD_LEVEL.replace("pod-level", "plain"))
    wait_for(lambda: running(agent, "plain"), what="running", timeout=30)
    suffix = "max" if agent.cgroups.version == 2 else "limit_in_bytes"
    for container in (None, "a", "b"):
        path = agent.cgroup_path("plain", container)
        for size in sizes:
            assert agent.kernel(path, f"hugetlb.{hugepage_unit_size(size)}.{suffix}") == "0"


def test_a_pod_asking_for_more_hugepages_than_the_node_has_is_refused(agent: AgentHarness) -> None:
    have = dict(read_hugepages()).get(2 * MiB, 0)
    ask = have + 2 * MiB
    agent.write("huge.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: huge}}
spec:
  containers:
  - name: a
    image: x
    command: [sleep, infinity]
    resources:
      limits: {{hugepages-2Mi: "{ask}", memory: 64Mi}}
""")
    pod = wait_for(lambda: agent.pod("huge"), what="listed")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Pending", "OutOfhugepages-2Mi")
    assert pod["status"]["message"] == (f"Node didn't have enough resource: hugepages-2Mi, requested: {ask}, "
                                        f"used: 0, capacity: {have}")
