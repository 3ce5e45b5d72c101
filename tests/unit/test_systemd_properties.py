"""The systemd driver's translation of a plan into unit properties: the same values the cgroupfs driver
writes to files (the VM suite checks both against the kernel; this checks them against each other)."""

import pytest

from nodeagent.cgroups.systemd import INFINITY, files_systemd_cannot_set, unit_properties
from nodeagent.plan.pod import CgroupPlan, plan_pod
from nodeagent.plan.qos import plan_node_cgroups
from nodeagent.plan.resource_config import UNLIMITED, ResourceConfig, render
from nodeagent.plan.settings import CgroupDriverName, NodeInfo, PlanSettings
from tests.conftest import example, load_pod

GiB = 1 << 30
NODE = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, swap_bytes=0)
EXAMPLES = ("qos-guaranteed.yaml", "qos-burstable.yaml", "qos-besteffort.yaml", "memory-demo-2.yaml")


def every_plan(version: int) -> list[CgroupPlan]:
    settings = PlanSettings(cgroup_version=version, cgroup_driver=CgroupDriverName.SYSTEMD, pod_pids_limit=100)
    pods = [load_pod(example(name)) for name in EXAMPLES]
    plans = plan_node_cgroups(pods, NODE, settings)
    for pod in pods:
        plan = plan_pod(pod, NODE, settings)
        plans += [*([plan.pod] if plan.pod else []), *plan.containers]
    return plans


def as_number(value: str) -> int:
    return INFINITY if value == "max" else int(value)


@pytest.mark.parametrize("plan", every_plan(2), ids=lambda plan: plan.path)
def test_v2_properties_say_what_the_files_say(plan: CgroupPlan) -> None:
    properties = {name: variant.value for name, variant in unit_properties(plan.resources, 2)}
    files = plan.files
    assert properties["CPUWeight"] == int(files["cpu.weight"])
    if "memory.max" in files:
        assert properties["MemoryMax"] == as_number(files["memory.max"])
    else:
        assert "MemoryMax" not in properties
    if "pids.max" in files:
        assert properties["TasksMax"] == as_number(files["pids.max"])
    if "cpu.max" in files and not files["cpu.max"].startswith("max"):
        quota, period = map(int, files["cpu.max"].split())
        assert properties["CPUQuotaPerSecUSec"] == quota * 1_000_000 // period
        assert properties["CPUQuotaPeriodUSec"] == period
    else:
        assert "CPUQuotaPerSecUSec" not in properties
    if "memory.swap.max" in files:
        assert properties["MemorySwapMax"] == as_number(files["memory.swap.max"])
    assert "CPUShares" not in properties and "MemoryLimit" not in properties  # v1's names
    assert {"CPUAccounting", "MemoryAccounting", "TasksAccounting"} <= properties.keys()


@pytest.mark.parametrize("plan", every_plan(1), ids=lambda plan: plan.path)
def test_v1_properties_say_what_the_files_say(plan: CgroupPlan) -> None:
    properties = {name: variant.value for name, variant in unit_properties(plan.resources, 1)}
    files = plan.files
    assert properties["CPUShares"] == int(files["cpu.shares"])
    if "memory.limit_in_bytes" in files:
        assert properties["MemoryLimit"] == int(files["memory.limit_in_bytes"])
    assert "CPUWeight" not in properties and "MemoryMax" not in properties and "MemorySwapMax" not in properties


def test_what_no_property_carries_is_left_for_the_files() -> None:
    container = next(plan for plan in every_plan(2) if plan.level == "container")
    assert files_systemd_cannot_set(container.files, 2) == {"memory.oom.group": "1"}
    limited = [plan for plan in every_plan(1) if "memory.memsw.limit_in_bytes" in plan.files]
    assert limited
    for plan in limited:
        assert files_systemd_cannot_set(plan.files, 1) == {
            "memory.memsw.limit_in_bytes": plan.files["memory.memsw.limit_in_bytes"]}


def test_unlimited_is_systemd_s_infinity() -> None:
    properties = dict(unit_properties(ResourceConfig(memory_bytes=UNLIMITED, pids_max=UNLIMITED), 2))
    assert properties["MemoryMax"].value == INFINITY
    assert properties["TasksMax"].value == INFINITY


@pytest.mark.parametrize(("version", "name"), [(1, "hugetlb.2MB.limit_in_bytes"), (2, "hugetlb.2MB.max")])
def test_hugetlb_limits_have_no_property_and_go_to_the_files(version: int, name: str) -> None:
    config = ResourceConfig(cpu_shares=2, hugepage_limits=((2 << 20, 0),))
    assert files_systemd_cannot_set(render(config, version), version) == {name: "0"}
    assert not [key for key, _ in unit_properties(config, version) if "huge" in key.lower()]
