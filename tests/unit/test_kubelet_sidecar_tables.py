"""The kubelet's test cases with sidecars (init containers with restartPolicy: Always), ported: each case named
`<GoTest>/<case>` (see test_kubelet_tables.py for the sources).

  component-helpers/resource/helpers_test.go  TestPodResourceRequests (the restartable init container cases)
  pkg/kubelet/qos/policy_test.go              TestGetContainerOOMScoreAdjust (the sidecar cases)

Validation refuses sidecars until the lifecycle runs them (issue 16), so these pods are built in memory from the
API model, as the Go tests build theirs (no defaulting, no validation).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Pod
from nodeagent.api.resources import pod_limits, pod_requests, qos_class
from nodeagent.plan.pod import oom_score_adj
from nodeagent.plan.settings import NodeInfo
from tests.unit.test_kubelet_tables import MEM_LIMIT, MEM_REQUEST, POD_MEM_LIMIT, POD_MEM_REQUEST, STANDARD_MEMORY

ALWAYS = "Always"


def container(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
              restart_policy: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"name": name, "image": "x",
                              "resources": {"requests": requests or {}, "limits": limits or {}}}
    if restart_policy:
        out["restartPolicy"] = restart_policy
    return out


def in_memory(containers: list[dict[str, object]], init: list[dict[str, object]],
              pod_level: dict[str, dict[str, str]] | None = None) -> StaticPod:
    spec: dict[str, object] = {"containers": containers, "initContainers": init}
    if pod_level:
        spec["resources"] = pod_level
    pod = Pod.model_validate({"kind": "Pod", "metadata": {"name": "p", "uid": "u"}, "spec": spec})
    return StaticPod(pod=pod, source="file", origin="/m/p.yaml", config_hash="", qos=qos_class(pod))


def cpu(value: str) -> dict[str, str]:
    return {"cpu": value}


# TestPodResourceRequests: name -> (init containers, app containers, expected cpu)
REQUEST_CASES: dict[str, tuple[list[dict[str, object]], list[dict[str, object]], str]] = {
    "restartable init container": (
        [container("restartable-init-1", cpu("1"), restart_policy=ALWAYS)], [container("container-1", cpu("1"))],
        "2"),
    "multiple restartable init containers": (
        [container("init-1", cpu("5")), container("restartable-init-1", cpu("1"), restart_policy=ALWAYS),
         container("restartable-init-2", cpu("2"), restart_policy=ALWAYS),
         container("restartable-init-3", cpu("3"), restart_policy=ALWAYS)],
        [container("container-1", cpu("1"))], "7"),
    "multiple restartable and regular init containers": (
        [container("init-1", cpu("5")), container("restartable-init-1", cpu("1"), restart_policy=ALWAYS),
         container("restartable-init-2", cpu("2"), restart_policy=ALWAYS), container("init-2", cpu("5")),
         container("restartable-init-3", cpu("3"), restart_policy=ALWAYS)],
        [container("container-1", cpu("1"))], "8"),
    "restartable-init, init and regular": (
        [container("restartable-init-1", cpu("10"), restart_policy=ALWAYS), container("init-1", cpu("200"))],
        [container("container-1", cpu("100"))], "210"),
}


@pytest.mark.parametrize("case", sorted(REQUEST_CASES), ids=lambda c: f"TestPodResourceRequests/{c}")
def test_pod_resource_requests(case: str) -> None:
    init, containers, expected = REQUEST_CASES[case]
    assert pod_requests(in_memory(containers, init).pod)["cpu"] == Fraction(expected)


def test_pod_limits_count_sidecars_as_requests_do() -> None:
    """AggregateContainerLimits has the same shape: a sidecar's limit adds to the app containers' and to every
    init container's after it."""
    init = [container("init-1", limits=cpu("5")), container("sidecar-1", limits=cpu("1"), restart_policy=ALWAYS),
            container("init-2", limits=cpu("5"))]
    assert pod_limits(in_memory([container("app", limits=cpu("1"))], init).pod)["cpu"] == Fraction(6)


def memory(requests: int, limits: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
    return {"memory": str(requests)}, ({"memory": str(limits)} if limits is not None else {})


SAMPLE = memory(MEM_REQUEST, MEM_LIMIT)
POD_LEVEL_BURSTABLE = {"requests": {"cpu": "5m", "memory": str(POD_MEM_REQUEST)},
                       "limits": {"cpu": "5m", "memory": str(POD_MEM_LIMIT)}}
# the Go pods' containers ask for more cpu than their pod-level 5m, which validation refuses: 15m here (cpu
# plays no part in oom_score_adj)
POD_LEVEL_BURSTABLE_VALID_CPU = {"requests": {"cpu": "15m", "memory": str(POD_MEM_REQUEST)},
                                 "limits": {"cpu": "15m", "memory": str(POD_MEM_LIMIT)}}


def with_cpu(resources: tuple[dict[str, str], dict[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    requests, limits = resources
    return {**requests, "cpu": "5m"}, {**limits, "cpu": "5m"}


# TestGetContainerOOMScoreAdjust: name -> (pod, memory capacity, {container: (low, high)})
OOM_CASES: dict[str, tuple[StaticPod, int, dict[str, tuple[int, int]]]] = {
    "burstable-mixed-multi-container-small-sidecar-pod": (
        in_memory([container("main-1", *SAMPLE)],
                  [container("init-container", *SAMPLE),
                   container("sidecar-small-container", *memory(STANDARD_MEMORY // 20, MEM_LIMIT), ALWAYS)]),
        STANDARD_MEMORY, {"init-container": (875, 880), "sidecar-small-container": (875, 875), "main-1": (875, 875)}),
    "burstable-mixed-multi-container-sample-request-pod": (
        in_memory([container("main-1", *SAMPLE)],
                  [container("init-container", *SAMPLE), container("sidecar-container", *SAMPLE, ALWAYS)]),
        STANDARD_MEMORY, {"init-container": (875, 880), "sidecar-container": (875, 875), "main-1": (875, 875)}),
    "burstable-mixed-multi-container-big-sidecar-container-pod": (
        in_memory([container("main-1", *SAMPLE)],
                  [container("init-container", *SAMPLE),
                   container("sidecar-big-container", *memory(STANDARD_MEMORY // 2, MEM_LIMIT), ALWAYS)]),
        STANDARD_MEMORY, {"init-container": (875, 880), "sidecar-big-container": (500, 500), "main-1": (875, 875)}),
    "burstable-pod-resources-no-container-resources-with-sidecar": (
        in_memory([container("no-request-limit")], [container("no-request-limit-sidecar", restart_policy=ALWAYS)],
                  POD_LEVEL_BURSTABLE),
        4_000_000_000, {"no-request-limit": (750, 750), "no-request-limit-sidecar": (750, 750)}),
    "burstable-pod-resources-equal-container-requests-with-sidecar (valid cpu)": (
        in_memory([container("burstable-container", *with_cpu(SAMPLE))],
                  [container("burstable-sidecar", *with_cpu(SAMPLE), ALWAYS)], POD_LEVEL_BURSTABLE_VALID_CPU),
        4_000_000_000, {"burstable-container": (750, 750), "burstable-sidecar": (750, 750)}),
    "burstable-pod-resources-unequal-container-requests-with-sidecar (valid cpu)": (
        in_memory([container("burstable-container-1", *with_cpu(memory(1_000_000_000, POD_MEM_LIMIT))),
                   container("burstable-container-2", *with_cpu(memory(500_000_000, POD_MEM_LIMIT)))],
                  [container("burstable-sidecar", *with_cpu(memory(200_000_000, POD_MEM_LIMIT)), ALWAYS)],
                  POD_LEVEL_BURSTABLE_VALID_CPU),
        4_000_000_000,
        {"burstable-container-1": (725, 725), "burstable-container-2": (850, 850), "burstable-sidecar": (850, 850)}),
}


@pytest.mark.parametrize("case", sorted(OOM_CASES), ids=lambda c: f"TestGetContainerOOMScoreAdjust/{c}")
def test_get_container_oom_score_adjust_with_sidecars(case: str) -> None:
    static_pod, capacity, expected = OOM_CASES[case]
    node = NodeInfo(cpu_millis=4000, memory_bytes=capacity)
    for each in static_pod.pod.all_containers():
        low, high = expected[each.valid_name]
        assert low <= oom_score_adj(static_pod, each, node) <= high, each.name
