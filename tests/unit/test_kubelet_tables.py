"""The kubelet's own test tables, ported: each case named `<GoTest>/<case>`.

Source: kubernetes/kubernetes as stored in the reference index (the PodLevelResources-era files; the
index holds no tagged v1.34.x checkout, so the case names and numbers are those of these files):
  pkg/kubelet/qos/policy_test.go           TestGetContainerOOMScoreAdjust (its sidecar cases: test_kubelet_sidecar_tables.py)
  pkg/kubelet/cm/helpers_linux_test.go     TestMilliCPUToQuota, TestHugePageLimits, TestResourceConfigForPod
  pkg/apis/core/v1/helper/qos/qos_test.go  TestComputePodQOS
  pkg/kubelet/kuberuntime/kuberuntime_container_linux_test.go
                                           TestGetHugepageLimitsFromResources, TestGenerateLinuxContainerResources
The Go tests build pods in memory, without the API server's defaulting or validation; a static pod
is always defaulted and validated, so cases that rely on skipping either are listed in EXCLUDED.
"""

from __future__ import annotations

import pytest

from nodeagent.api.resources import QOSClass, pod_hugepages, pod_requests, qos_class
from nodeagent.plan import formulas
from nodeagent.plan.pod import oom_score_adj, plan_pod, pod_resources
from nodeagent.plan.resource_config import UNLIMITED, ResourceConfig
from nodeagent.plan.settings import NodeInfo, PlanSettings
from nodeagent.runtime.cri.mapping import linux_resources
from tests.conftest import load_pod

MiB = 1 << 20
STANDARD_MEMORY = 8_000_000_000
MEM_REQUEST = STANDARD_MEMORY // 8
MEM_LIMIT = 1000 + STANDARD_MEMORY // 8
POD_MEM_REQUEST = STANDARD_MEMORY // 4
POD_MEM_LIMIT = 1000 + STANDARD_MEMORY // 4

EXCLUDED = {
    "TestGetContainerOOMScoreAdjust/memory-limit-cpu-request":
        "built without API defaulting: a static pod's memory request defaults to its 10G limit, so it is "
        "not the request-less container the Go case scores",
    "TestGetContainerOOMScoreAdjust/guaranteed-pod-resources-equal-container-resources":
        "invalid as a manifest: the containers' cpu requests (10m) exceed the pod-level 5m, which the API "
        "server's validation refuses",
    "TestGetContainerOOMScoreAdjust/burstable-pod-resources-equal-container-requests":
        "invalid as a manifest: the containers' cpu requests (10m) exceed the pod-level 5m, which the API "
        "server's validation refuses",
    "TestComputePodQOS/burstable-with-pod-and-container-level-resources-2":
        "invalid as a manifest: pod-level cpu request 10m above its 5m limit, and the containers' memory "
        "requests (20Mi) above the pod-level 10Mi",
    "TestGetHugepageLimitsFromResources/Skip2MB":
        "\"hugepages-2MB\" is refused by validation (not a hugepage size), so no plan is made; the refusal "
        "is tested in test_hugepage_names_that_are_no_size_are_refused",
    "TestGetHugepageLimitsFromResources/Skip1GB": "as Skip2MB, with \"hugepages-1GB\"",
    "TestGetHugepageLimitsFromResources/Skip2MBand1GB": "as Skip2MB, with both names",
    "TestHugePageLimits/no valid hugepages":
        "\"2Mi\" is not a resource name a manifest may carry (validation refuses it before any plan)",
    "TestHugePageLimits/2Mi only":
        "128 bytes of 2Mi pages is refused by validation (not a whole number of pages); ported with "
        "whole pages as '2Mi only (whole pages)'",
    "TestHugePageLimits/2Mi and 4Mi":
        "the Go case also uses the names \"hugepages-2097152\" and \"4Mi\" and byte counts that are not "
        "whole pages, all refused by validation; ported as '2Mi and 4Mi (whole pages, valid names)'",
}


def pod(containers: list[str], extra: str = "", init: list[str] | None = None) -> str:
    def block(items: list[str]) -> str:
        return "".join(f"  - {{name: c{i}, image: x, resources: {{{r}}}}}\n" for i, r in enumerate(items))

    inits = f"  initContainers:\n{block(init).replace('name: c', 'name: i')}" if init else ""
    return f"kind: Pod\nmetadata: {{name: p, uid: u}}\nspec:\n{extra}{inits}  containers:\n{block(containers)}"


def requirements(requests: str = "", limits: str = "") -> str:
    parts = ([f"requests: {{{requests}}}"] if requests else []) + ([f"limits: {{{limits}}}"] if limits else [])
    return ", ".join(parts)


POD_LEVEL_GUARANTEED = (f"  resources: {{requests: {{cpu: 5m, memory: '{POD_MEM_REQUEST}'}}, "
                        f"limits: {{cpu: 5m, memory: '{POD_MEM_REQUEST}'}}}}\n")
POD_LEVEL_BURSTABLE = (f"  resources: {{requests: {{cpu: 5m, memory: '{POD_MEM_REQUEST}'}}, "
                       f"limits: {{cpu: 5m, memory: '{POD_MEM_LIMIT}'}}}}\n")

# name -> (manifest, memory capacity, {container: (low, high)})
OOM_CASES: dict[str, tuple[str, int, dict[str, tuple[int, int]]]] = {
    "cpu-limit": (pod([requirements(limits="cpu: '10'")]), 4_000_000_000, {"c0": (999, 999)}),
    "zero-memory-limit": (pod([requirements(limits="memory: '0'")]), 7_230_457_451, {"c0": (1000, 1000)}),
    "no-request-limit": (pod([""]), 4_000_000_000, {"c0": (1000, 1000)}),
    "equal-request-limit-cpu-memory": (
        pod([requirements("memory: 10G, cpu: 5m", "cpu: 5m, memory: 10G")]), 123456789, {"c0": (-997, -997)}),
    "cpu-unlimited-memory-limited-with-requests": (
        pod([requirements(f"memory: '{STANDARD_MEMORY // 2}', cpu: 5m", "memory: 10G")]), STANDARD_MEMORY,
        {"c0": (495, 505)}),
    "request-no-limit": (pod([requirements(f"memory: '{STANDARD_MEMORY - 1}', cpu: 5m")]), STANDARD_MEMORY,
                         {"c0": (3, 3)}),
    "cluster-critical": (pod([""], "  priorityClassName: system-cluster-critical\n  priority: 2000000000\n"),
                         4_000_000_000, {"c0": (1000, 1000)}),
    "node-critical": (pod([""], "  priorityClassName: system-node-critical\n  priority: 2000001000\n"),
                      4_000_000_000, {"c0": (-997, -997)}),
    "burstable-unique-container-pod": (
        pod([requirements(f"memory: '{MEM_REQUEST}'", f"memory: '{MEM_LIMIT}'")]), STANDARD_MEMORY,
        {"c0": (875, 880)}),
    "burstable-mixed-unique-main-container-pod": (
        pod([requirements(f"memory: '{MEM_REQUEST}'", f"memory: '{MEM_LIMIT}'")],
            init=[requirements(f"memory: '{MEM_REQUEST}'", f"memory: '{MEM_LIMIT}'")]),
        STANDARD_MEMORY, {"i0": (875, 880), "c0": (875, 880)}),
    "guaranteed-pod-resources-no-container-resources": (
        pod(["", ""], POD_LEVEL_GUARANTEED), 4_000_000_000, {"c0": (-997, -997), "c1": (-997, -997)}),
    "guaranteed-pod-resources-unequal-container-requests": (
        pod([requirements(f"cpu: 3m, memory: '{MEM_REQUEST}'", f"cpu: 5m, memory: '{MEM_LIMIT}'"), ""],
            POD_LEVEL_GUARANTEED), 4_000_000_000, {"c0": (-997, -997), "c1": (-997, -997)}),
    "burstable-pod-resources-no-container-resources": (
        pod(["", ""], POD_LEVEL_BURSTABLE), 4_000_000_000, {"c0": (750, 750), "c1": (750, 750)}),
    "burstable-pod-resources-unequal-container-requests": (
        pod([requirements(f"cpu: 3m, memory: '{MEM_REQUEST}'", f"cpu: 5m, memory: '{MEM_REQUEST}'"), ""],
            POD_LEVEL_BURSTABLE), 4_000_000_000, {"c0": (625, 625), "c1": (875, 875)}),
}


@pytest.mark.parametrize("case", sorted(OOM_CASES), ids=lambda c: f"TestGetContainerOOMScoreAdjust/{c}")
def test_get_container_oom_score_adjust(case: str) -> None:
    manifest, capacity, expected = OOM_CASES[case]
    static_pod = load_pod(manifest)
    node = NodeInfo(cpu_millis=4000, memory_bytes=capacity)
    for container in static_pod.pod.all_containers():
        low, high = expected[container.name or ""]
        assert low <= oom_score_adj(static_pod, container, node) <= high, container.name


@pytest.mark.parametrize(("milli", "quota"), [(0, 0), (5, 1000), (9, 1000), (10, 1000), (200, 20000),
                                              (500, 50000), (1000, 100000), (1500, 150000)],
                         ids=lambda v: f"TestMilliCPUToQuota/{v}")
def test_milli_cpu_to_quota(milli: int, quota: int) -> None:
    assert formulas.milli_cpu_to_quota(milli, 100000) == quota


@pytest.mark.parametrize(("requests", "expected"), [
    ("hugepages-2Mi: 128Mi", {2 * MiB: 128 * MiB}),
    ("hugepages-2Mi: 128Mi, hugepages-4Mi: 512Mi", {2 * MiB: 128 * MiB, 4 * MiB: 512 * MiB}),
], ids=["TestHugePageLimits/2Mi only (whole pages)", "TestHugePageLimits/2Mi and 4Mi (whole pages, valid names)"])
def test_huge_page_limits(requests: str, expected: dict[int, int]) -> None:
    # hugepages need a limit equal to the request, and cpu or memory beside them, to be a valid manifest
    limits = requests + ", memory: 1Gi"
    static_pod = load_pod(pod([requirements(requests, limits)]))
    assert pod_hugepages(pod_requests(static_pod.pod)) == expected
    node = NodeInfo(cpu_millis=4000, memory_bytes=1 << 34, hugepages=tuple((s, 0) for s in sorted(expected)),
                    hugetlb_controller=True)
    config = pod_resources(static_pod, node, PlanSettings(cgroup_version=1))
    assert dict(config.hugepage_limits or ()) == expected


SHARES_100 = formulas.milli_cpu_to_shares(100)
SHARES_200 = formulas.milli_cpu_to_shares(200)
RESOURCE_CONFIG_CASES: dict[str, tuple[list[str], bool, ResourceConfig]] = {
    "besteffort": ([""], True, ResourceConfig(cpu_shares=formulas.MIN_SHARES)),
    "burstable-no-limits": ([requirements("cpu: 100m, memory: 100Mi")], True, ResourceConfig(cpu_shares=SHARES_100)),
    "burstable-with-limits": (
        [requirements("cpu: 100m, memory: 100Mi", "cpu: 200m, memory: 200Mi")], True,
        ResourceConfig(cpu_shares=SHARES_100, cpu_quota_us=20000, cpu_period_us=100000, memory_bytes=200 * MiB)),
    "burstable-with-limits-no-cpu-enforcement": (
        [requirements("cpu: 100m, memory: 100Mi", "cpu: 200m, memory: 200Mi")], False,
        ResourceConfig(cpu_shares=SHARES_100, cpu_quota_us=UNLIMITED, cpu_period_us=100000, memory_bytes=200 * MiB)),
    "burstable-partial-limits": (
        [requirements("cpu: 100m, memory: 100Mi", "cpu: 200m, memory: 200Mi"), requirements("cpu: 100m, memory: 100Mi")],
        True, ResourceConfig(cpu_shares=SHARES_200)),
    "guaranteed": (
        [requirements("cpu: 100m, memory: 100Mi", "cpu: 100m, memory: 100Mi")], True,
        ResourceConfig(cpu_shares=SHARES_100, cpu_quota_us=10000, cpu_period_us=100000, memory_bytes=100 * MiB)),
    "guaranteed-no-cpu-enforcement": (
        [requirements("cpu: 100m, memory: 100Mi", "cpu: 100m, memory: 100Mi")], False,
        ResourceConfig(cpu_shares=SHARES_100, cpu_quota_us=UNLIMITED, cpu_period_us=100000, memory_bytes=100 * MiB)),
}


@pytest.mark.parametrize("case", sorted(RESOURCE_CONFIG_CASES), ids=lambda c: f"TestResourceConfigForPod/{c}")
def test_resource_config_for_pod(case: str) -> None:
    containers, enforce, expected = RESOURCE_CONFIG_CASES[case]
    settings = PlanSettings(cgroup_version=1, cpu_cfs_quota=enforce)
    node = NodeInfo(cpu_millis=4000, memory_bytes=1 << 34)
    assert pod_resources(load_pod(pod(containers)), node, settings) == expected


def rl(cpu: str, memory: str) -> str:
    return ", ".join(part for part in (f"cpu: '{cpu}'" if cpu else "", f"memory: '{memory}'" if memory else "")
                     if part)


def reqs(requests: tuple[str, str], limits: tuple[str, str]) -> str:
    return requirements(rl(*requests), rl(*limits))


def pod_level(requests: tuple[str, str], limits: tuple[str, str]) -> str:
    return f"  resources: {{{reqs(requests, limits)}}}\n"


NONE = ("", "")
QOS_CASES: dict[str, tuple[str, QOSClass]] = {
    "guaranteed": (pod([reqs(("100m", "100Mi"), ("100m", "100Mi"))]), QOSClass.GUARANTEED),
    "guaranteed-guaranteed": (pod([reqs(("100m", "100Mi"), ("100m", "100Mi"))] * 2), QOSClass.GUARANTEED),
    "best-effort-best-effort": (pod(["", ""]), QOSClass.BESTEFFORT),
    "best-effort": (pod([""]), QOSClass.BESTEFFORT),
    "best-effort-burstable": (pod(["", reqs(("1", ""), ("2", ""))]), QOSClass.BURSTABLE),
    "best-effort-guaranteed": (pod(["", reqs(("10m", "100Mi"), ("10m", "100Mi"))]), QOSClass.BURSTABLE),
    "burstable-cpu-guaranteed-memory": (pod([reqs(("", "100Mi"), ("", "100Mi"))]), QOSClass.BURSTABLE),
    "burstable-no-limits": (pod([reqs(("100m", "100Mi"), NONE)]), QOSClass.BURSTABLE),
    "burstable-guaranteed": (pod([reqs(("1", "100Mi"), ("2", "100Mi")), reqs(("100m", "100Mi"), ("100m", "100Mi"))]),
                             QOSClass.BURSTABLE),
    "burstable-unbounded-but-requests-match-limits": (
        pod([reqs(("100m", "100Mi"), ("200m", "200Mi")), reqs(("100m", "100Mi"), NONE)]), QOSClass.BURSTABLE),
    "burstable-1": (pod([reqs(("10m", "100Mi"), ("100m", "200Mi"))]), QOSClass.BURSTABLE),
    "burstable-2": (pod([reqs(("0", "0"), ("100m", "200Mi"))]), QOSClass.BURSTABLE),
    "best-effort-hugepages": (
        pod([requirements("cpu: '0', memory: '0', hugepages-2Mi: 1Gi", "cpu: '0', memory: '0', hugepages-2Mi: 1Gi")]),
        QOSClass.BESTEFFORT),
    "init-container": (pod([""], init=[reqs(("10m", "100Mi"), ("100m", "200Mi"))]), QOSClass.BURSTABLE),
    "guaranteed-with-pod-level-resources": (
        pod([""], pod_level(("10m", "100Mi"), ("10m", "100Mi"))), QOSClass.GUARANTEED),
    "guaranteed-with-pod-and-container-level-resources": (
        pod([reqs(("3m", "10Mi"), ("5m", "20Mi"))], pod_level(("10m", "100Mi"), ("10m", "100Mi"))),
        QOSClass.GUARANTEED),
    "burstable-with-pod-level-resources": (
        pod([""], pod_level(("10m", "10Mi"), ("20m", "50Mi"))), QOSClass.BURSTABLE),
    "burstable-with-pod-and-container-level-resources": (
        pod([reqs(("5m", "10Mi"), ("5m", "10Mi"))], pod_level(("10m", "10Mi"), ("20m", "50Mi"))), QOSClass.BURSTABLE),
    "burstable-with-pod-and-container-level-requests": (
        pod([reqs(("5m", "10Mi"), NONE)], pod_level(("10m", "10Mi"), NONE)), QOSClass.BURSTABLE),
}


@pytest.mark.parametrize("case", sorted(QOS_CASES), ids=lambda c: f"TestComputePodQOS/{c}")
def test_compute_pod_qos(case: str) -> None:
    manifest, expected = QOS_CASES[case]
    static_pod = load_pod(manifest)
    assert qos_class(static_pod.pod) is expected
    assert static_pod.qos is expected


GiB = 1 << 30
HUGE_NODE = NodeInfo(cpu_millis=4000, memory_bytes=1 << 36, hugepages=((2 * MiB, 0), (GiB, 0)),
                     hugetlb_controller=True)
HUGEPAGE_CASES = {
    "Success2MB": ("hugepages-2Mi: 2Mi", {"2MB": 2097152, "1GB": 0}),
    "Success1GB": ("hugepages-1Gi: 2Gi", {"2MB": 0, "1GB": 2147483648}),
    "Success2MBand1GB": ("cpu: '0', hugepages-2Mi: 2Mi, hugepages-1Gi: 2Gi", {"2MB": 2097152, "1GB": 2147483648}),
}


@pytest.mark.parametrize("case", sorted(HUGEPAGE_CASES), ids=lambda c: f"TestGetHugepageLimitsFromResources/{c}")
def test_get_hugepage_limits_from_resources(case: str) -> None:
    limits, expected = HUGEPAGE_CASES[case]
    # a manifest needs cpu or memory beside hugepages (Success1GB/2MB in Go have neither)
    limits += "" if "cpu" in limits else ", memory: 1Gi"
    plan = plan_pod(load_pod(pod([requirements(limits=limits)])), HUGE_NODE, PlanSettings(cgroup_version=1))
    resources = linux_resources(plan.container("c0").resources, None, 1)
    assert {h.page_size: h.limit for h in resources.hugepage_limits} == expected


@pytest.mark.parametrize("name", ["hugepages-2MB", "hugepages-1GB"])
def test_hugepage_names_that_are_no_size_are_refused(name: str) -> None:
    from nodeagent.api.manifest import load_manifest

    text = pod([requirements(limits=f"{name}: 2Mi, memory: 1Gi")])
    result = load_manifest(text.encode(), origin="/m/p.yaml", source="file", node_name="n")
    assert f"2Mi is not positive integer multiple of {name}" in " ".join(str(p) for p in result.problems)


# (limits, requests, singleProcessOOMKill, cgroup version) -> (shares, memory limit, oom_score_adj, unified)
LINUX_RESOURCES_CASES = {
    "cgroup1:requests & limits, cpu & memory, guaranteed qos": (
        ("250m", "500Mi"), ("250m", "500Mi"), True, 1, (256, 524288000, -997, {})),
    "cgroup1:requests & limits, cpu & memory, burstable qos": (
        ("500m", "750Mi"), ("250m", "500Mi"), True, 1, (256, 786432000, 970, {})),
    "cgroup1:best-effort qos": (NONE, NONE, True, 1, (2, 0, 1000, {})),
    "cgroup2:requests & limits, cpu & memory, guaranteed qos": (
        ("250m", "500Mi"), ("250m", "500Mi"), False, 2, (256, 524288000, -997, {"memory.oom.group": "1"})),
    "cgroup2:requests & limits, cpu & memory, burstable qos": (
        ("500m", "750Mi"), ("250m", "500Mi"), False, 2, (256, 786432000, 970, {"memory.oom.group": "1"})),
    "cgroup2:best-effort qos": (NONE, NONE, False, 2, (2, 0, 1000, {"memory.oom.group": "1"})),
}


@pytest.mark.parametrize("case", sorted(LINUX_RESOURCES_CASES), ids=lambda c: f"TestGenerateLinuxContainerResources/{c}")
def test_generate_linux_container_resources(case: str) -> None:
    """The Go test's node has no swap controller and no CFS quota; swap settings are compared apart
    (v1 memsw, v2 memory.swap.max are the swap tests' business), CFS quota is off as there."""
    limits, requests, single, version, (shares, memory, oom, unified) = LINUX_RESOURCES_CASES[case]
    settings = PlanSettings(cgroup_version=version, cpu_cfs_quota=False, single_process_oom_kill=single)
    node = NodeInfo(cpu_millis=4000, memory_bytes=17179860387)
    plan = plan_pod(load_pod(pod([reqs(requests, limits)])), node, settings)
    container = plan.container("c0")
    resources = linux_resources(container.resources, container.oom_score_adj, version)
    assert (resources.cpu_shares, resources.memory_limit_in_bytes, resources.oom_score_adj) == (shares, memory, oom)
    assert {k: v for k, v in resources.unified.items() if k != "memory.swap.max"} == unified


def test_excluded_cases_name_real_go_cases_and_give_a_reason() -> None:
    for name, reason in EXCLUDED.items():
        test, _, case = name.partition("/")
        assert test.startswith("Test") and case and len(reason) > 20
        assert case not in {*OOM_CASES, *RESOURCE_CONFIG_CASES, *QOS_CASES, *HUGEPAGE_CASES}, name
