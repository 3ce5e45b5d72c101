"""Issue 16's resources: hugetlb limits, hugepages admission, cpu "0", singleProcessOOMKill, critical by
priority, pod overhead and pod-level resources; and None as the only "unset" of a ResourceConfig."""

from pathlib import Path

import pytest

from nodeagent.agent.admission import Allocatable, admit
from nodeagent.api.manifest import load_manifest
from nodeagent.api.resources import QOSClass
from nodeagent.config import parse_config
from nodeagent.errors import ConfigError
from nodeagent.node import node_info, read_hugepages
from nodeagent.plan.pod import plan_pod
from nodeagent.plan.qos import HUGEPAGES_UNBOUNDED, plan_node_cgroups
from nodeagent.plan.resource_config import ResourceConfig, hugepage_unit_size, render_v1, render_v2
from nodeagent.plan.settings import CgroupDriverName, NodeInfo, PlanSettings, SwapBehavior
from tests.conftest import load_pod

GiB = 1 << 30
MiB = 1 << 20
TWO_MI = 2 * MiB
NODE = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, swap_bytes=4 * GiB,
                hugepages=((TWO_MI, 512 * MiB), (GiB, 0)), hugetlb_controller=True)
V1 = PlanSettings(cgroup_version=1, single_process_oom_kill=True)
V2 = PlanSettings(cgroup_version=2)


def pod_yaml(containers: str, extra: str = "") -> str:
    return f"kind: Pod\nmetadata: {{name: p, uid: u1}}\nspec:\n{extra}  containers:\n{containers}"


HUGE = pod_yaml("  - {name: a, image: x, resources: {limits: {hugepages-2Mi: 100Mi, memory: 200Mi, cpu: '1'}}}\n"
                "  - {name: b, image: x, resources: {requests: {cpu: 100m}}}\n")


@pytest.mark.parametrize(("size", "name"), [(2 * MiB, "2MB"), (GiB, "1GB"), (64 * 1024, "64KB"),
                                            (16 * GiB, "16GB"), (512 * MiB * 1024, "512GB")])
def test_hugepage_unit_size(size: int, name: str) -> None:
    assert hugepage_unit_size(size) == name


def test_hugetlb_v1_on_every_pod_and_container_cgroup_zero_for_sizes_not_requested() -> None:
    plan = plan_pod(load_pod(HUGE), NODE, V1)
    assert plan.pod is not None
    assert plan.pod.files["hugetlb.2MB.limit_in_bytes"] == str(100 * MiB)
    assert plan.pod.files["hugetlb.1GB.limit_in_bytes"] == "0"
    assert plan.container("a").files["hugetlb.2MB.limit_in_bytes"] == str(100 * MiB)
    assert plan.container("a").files["hugetlb.1GB.limit_in_bytes"] == "0"
    assert plan.container("b").files["hugetlb.2MB.limit_in_bytes"] == "0"
    assert plan.container("b").files["hugetlb.1GB.limit_in_bytes"] == "0"


def test_hugetlb_v2_files() -> None:
    plan = plan_pod(load_pod(HUGE), NODE, V2)
    assert plan.pod is not None
    assert {k: v for k, v in plan.pod.files.items() if k.startswith("hugetlb.")} == {
        "hugetlb.2MB.max": str(100 * MiB), "hugetlb.1GB.max": "0"}


def test_no_hugetlb_files_without_the_controller() -> None:
    node = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, hugepages=((TWO_MI, 512 * MiB),))
    plan = plan_pod(load_pod(HUGE), node, V1)
    assert plan.pod is not None
    assert not [name for c in (plan.pod, *plan.containers) for name in c.files if name.startswith("hugetlb.")]


def test_node_cgroups_hugetlb_allocatable_and_unbounded_qos() -> None:
    kubepods, burstable, besteffort = plan_node_cgroups([], NODE, V1)
    assert kubepods.files["hugetlb.2MB.limit_in_bytes"] == str(512 * MiB)
    assert kubepods.files["hugetlb.1GB.limit_in_bytes"] == "0"
    for qos in (burstable, besteffort):
        assert qos.files["hugetlb.2MB.limit_in_bytes"] == str(HUGEPAGES_UNBOUNDED)
        assert qos.files["hugetlb.1GB.limit_in_bytes"] == str(HUGEPAGES_UNBOUNDED)


def test_hugepages_admission_refuses_more_than_the_node_has() -> None:
    capacity = Allocatable(cpu_millis=4000, memory_bytes=8 * GiB, pods=110, hugepages=((TWO_MI, 64 * MiB),))
    rejection = admit(load_pod(HUGE), [], capacity)
    assert rejection is not None
    assert rejection.reason == "OutOfhugepages-2Mi"
    assert rejection.message == (f"Node didn't have enough resource: hugepages-2Mi, requested: {100 * MiB}, "
                                 f"used: 0, capacity: {64 * MiB}")


def test_hugepages_admission_counts_admitted_pods_and_sizes_the_node_lacks() -> None:
    capacity = Allocatable(cpu_millis=4000, memory_bytes=8 * GiB, pods=110, hugepages=((TWO_MI, 150 * MiB),))
    first = load_pod(HUGE)
    assert admit(first, [], capacity) is None
    rejection = admit(load_pod(HUGE.replace("name: p", "name: q")), [first], capacity)
    assert rejection is not None
    assert rejection.message.endswith(f"requested: {100 * MiB}, used: {100 * MiB}, capacity: {150 * MiB}")
    gig = pod_yaml("  - {name: a, image: x, resources: {limits: {hugepages-1Gi: 1Gi, memory: 1Gi}}}\n")
    rejection = admit(load_pod(gig), [], capacity)
    assert rejection is not None and rejection.reason == "OutOfhugepages-1Gi"
    assert rejection.message.endswith("capacity: 0")


def test_single_process_oom_kill_leaves_memory_oom_group_unset_on_v2() -> None:
    pod = load_pod(pod_yaml("  - {name: a, image: x}\n"))
    assert plan_pod(pod, NODE, V2).container("a").files["memory.oom.group"] == "1"
    single = PlanSettings(cgroup_version=2, single_process_oom_kill=True)
    assert "memory.oom.group" not in plan_pod(pod, NODE, single).container("a").files


@pytest.mark.parametrize(("version", "value", "expected"), [(1, None, True), (2, None, False), (2, True, True),
                                                              (2, False, False), (1, True, True)])
def test_single_process_oom_kill_defaults_by_cgroup_version(version: int, value: bool | None,
                                                            expected: bool) -> None:
    config, _ = parse_config({} if value is None else {"singleProcessOOMKill": value}, "test")
    settings = config.plan_settings(cgroup_version=version, cgroup_driver=CgroupDriverName.CGROUPFS)
    assert settings.single_process_oom_kill is expected


def test_single_process_oom_kill_false_is_refused_on_v1_in_the_kubelets_words() -> None:
    config, _ = parse_config({"singleProcessOOMKill": False}, "test")
    with pytest.raises(ConfigError, match="singleProcessOOMKill must not be explicitly set to false when "
                                          "using cgroup v1"):
        config.plan_settings(cgroup_version=1, cgroup_driver=CgroupDriverName.CGROUPFS)


@pytest.mark.parametrize(("extra", "swapped"), [
    ("", True),
    ("  priority: 2000000000\n", False),
    ("  priority: 1999999999\n", True),
    ("  priorityClassName: system-cluster-critical\n", False),
])
def test_a_pod_critical_by_priority_gets_no_swap(extra: str, swapped: bool) -> None:
    text = pod_yaml("  - {name: a, image: x, resources: {requests: {memory: 1Gi}, limits: {memory: 2Gi}}}\n", extra)
    settings = PlanSettings(cgroup_version=2, swap_behavior=SwapBehavior.LIMITED_SWAP)
    swap = plan_pod(load_pod(text), NODE, settings).container("a").files["memory.swap.max"]
    assert (swap != "0") is swapped


def test_overhead_is_added_to_the_pod_cgroup_limits_only_where_there_are_limits() -> None:
    text = pod_yaml("  - {name: a, image: x, resources: {requests: {cpu: 100m, memory: 100Mi}, "
                    "limits: {memory: 200Mi}}}\n", "  overhead: {cpu: 250m, memory: 120Mi}\n")
    plan = plan_pod(load_pod(text), NODE, V1)
    assert plan.pod is not None
    assert plan.pod.files["cpu.shares"] == str(350 * 1024 // 1000)
    assert plan.pod.files["memory.limit_in_bytes"] == str(320 * MiB)
    assert "cpu.cfs_quota_us" not in plan.pod.files
    assert plan.container("a").files["memory.limit_in_bytes"] == str(200 * MiB)  # containers: no overhead


def test_overhead_counts_in_admission() -> None:
    text = pod_yaml("  - {name: a, image: x, resources: {requests: {memory: 100Mi}}}\n",
                    "  overhead: {memory: 1Gi}\n")
    rejection = admit(load_pod(text), [], Allocatable(cpu_millis=1000, memory_bytes=GiB, pods=110))
    assert rejection is not None and f"requested: {GiB + 100 * MiB}" in rejection.message


POD_LEVEL = pod_yaml("  - {name: a, image: x}\n  - {name: b, image: x}\n",
                     "  resources: {limits: {cpu: '1', memory: 256Mi}}\n")


def test_pod_level_limits_only_make_a_guaranteed_pod_limited_in_its_cgroup() -> None:
    pod = load_pod(POD_LEVEL)
    assert pod.qos is QOSClass.GUARANTEED  # pod-level requests default to the limits
    for settings, memory_file, cpu_file, cpu_value in (
            (V1, "memory.limit_in_bytes", "cpu.cfs_quota_us", "100000"),
            (V2, "memory.max", "cpu.max", "100000 100000")):
        plan = plan_pod(pod, NODE, settings)
        assert plan.pod is not None
        assert plan.pod.files[memory_file] == str(256 * MiB)
        assert plan.pod.files[cpu_file] == cpu_value


def test_pod_level_requests_decide_shares_and_qos() -> None:
    text = pod_yaml("  - {name: a, image: x, resources: {requests: {cpu: 100m}}}\n",
                    "  resources: {requests: {cpu: 500m}, limits: {memory: 1Gi}}\n")
    pod = load_pod(text)
    assert pod.qos is QOSClass.BURSTABLE
    plan = plan_pod(pod, NODE, V1)
    assert plan.pod is not None
    assert plan.pod.files["cpu.shares"] == "512"
    assert plan.pod.files["memory.limit_in_bytes"] == str(GiB)  # declared at pod level
    assert "cpu.cfs_quota_us" not in plan.pod.files


def errors_of(text: str) -> list[str]:
    result = load_manifest(text.encode(), origin="/m/test.yaml", source="file", node_name="n")
    return [str(p.error) for p in result.problems]


@pytest.mark.parametrize(("extra", "containers", "message"), [
    ("  resources: {limits: {hugepages-2Mi: 2Mi}}\n", "  - {name: a, image: x}\n",
     'spec.resources.limits.hugepages-2Mi: Unsupported value: "hugepages-2Mi": supported values: "cpu", "memory"'),
    ("  resources: {requests: {cpu: 100m}}\n",
     "  - {name: a, image: x, resources: {requests: {cpu: 200m}}}\n",
     'spec.resources.requests.cpu: Invalid value: "100m": must be greater than or equal to aggregate container '
     'requests of 200m'),
    ("  resources: {limits: {memory: 100Mi}}\n",
     "  - {name: a, image: x, resources: {limits: {memory: 200Mi}}}\n",
     'spec.containers[0].resources.limits.memory: Invalid value: "200Mi": must be less than or equal to pod '
     'limits of 100Mi'),
    ("", "  - {name: a, image: x, resources: {limits: {hugepages-2Mi: 3Mi, memory: 1Gi}}}\n",
     'spec.containers[0].resources.limits.hugepages-2Mi: Invalid value: "3Mi": 3Mi is not positive integer '
     'multiple of hugepages-2Mi'),
    ("", "  - {name: a, image: x, resources: {limits: {hugepages-2Mi: 2Mi}}}\n",
     "spec.containers[0].resources: Forbidden: HugePages require cpu or memory"),
    ("", "  - {name: a, image: x, resources: {requests: {hugepages-2Mi: 2Mi, memory: 1Gi}}}\n",
     "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"),
    ("", "  - {name: a, image: x, resources: {requests: {hugepages-2Mi: 2Mi}, limits: {hugepages-2Mi: 4Mi, "
         "memory: 1Gi}}}\n",
     'spec.containers[0].resources.requests: Invalid value: "2Mi": must be equal to hugepages-2Mi limit of 4Mi'),
    ("  overhead: {cpu: '-1'}\n", "  - {name: a, image: x}\n",
     'spec.overhead.limits.cpu: Invalid value: "-1": must be greater than or equal to 0'),
])
def test_resource_validation_in_the_api_servers_words(extra: str, containers: str, message: str) -> None:
    assert message in errors_of(pod_yaml(containers, extra))


def test_valid_pod_level_resources_and_overhead_give_no_error() -> None:
    assert errors_of(POD_LEVEL) == []
    assert errors_of(HUGE) == []


def test_none_is_the_only_unset() -> None:
    assert render_v1(ResourceConfig()) == {}
    assert render_v2(ResourceConfig()) == {}
    zeros = ResourceConfig(cpu_quota_us=0, memory_bytes=0, pids_max=0, memory_min_bytes=0)
    assert render_v1(zeros) == {"cpu.cfs_quota_us": "0", "memory.limit_in_bytes": "0", "pids.max": "0"}
    assert render_v2(zeros) == {"cpu.max": "0", "memory.max": "0", "memory.min": "0", "pids.max": "0"}


def test_node_hugepages_read_from_sysfs_shape(tmp_path: Path) -> None:
    for name, pages in (("hugepages-2048kB", "512\n"), ("hugepages-1048576kB", "2\n"), ("not-hugepages", "9")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "nr_hugepages").write_text(pages)
    assert read_hugepages(str(tmp_path)) == ((TWO_MI, 512 * TWO_MI), (GiB, 2 * GiB))
    assert read_hugepages(str(tmp_path / "missing")) == ()


def test_allocatable_hugepages_are_capacity_less_reservations() -> None:
    config, _ = parse_config({"systemReserved": {"hugepages-2Mi": "64Mi"}, "kubeReserved": {"hugepages-2Mi": "32Mi"}},
                             "test")
    info = node_info(4000, 16 * GiB, 0, config, hugepages=((TWO_MI, 512 * MiB), (GiB, GiB)))
    assert info.hugepages == ((TWO_MI, 416 * MiB), (GiB, GiB))


def test_a_12e_memory_limit_is_kept_exact_but_reads_as_zero_as_the_kubelet_reads_it() -> None:
    # Value() of int64Amount{12, 18} overflows to 0: the kubelet writes no memory limit and admits the pod
    text = pod_yaml("  - {name: a, image: x, resources: {limits: {memory: 12E, cpu: '1'}}}\n")
    pod = load_pod(text)
    assert pod.qos is QOSClass.GUARANTEED
    plan = plan_pod(pod, NODE, V1)
    assert plan.pod is not None
    assert "memory.limit_in_bytes" not in plan.pod.files
    assert "memory.limit_in_bytes" not in plan.container("a").files
    assert admit(pod, [], Allocatable(cpu_millis=4000, memory_bytes=GiB, pods=110)) is None
    bigger = pod_yaml("  - {name: a, image: x, resources: {requests: {memory: 12E}, limits: {memory: 10E}}}\n")
    assert any("must be less than or equal to memory limit of 10E" in e for e in errors_of(bigger))
