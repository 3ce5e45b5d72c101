"""The translation, rule by rule: pod and container cgroups, paths, swap, MemoryQoS, oom_score_adj."""

import pytest

from nodeagent.plan.pod import plan_pod
from nodeagent.plan.qos import plan_node_cgroups
from nodeagent.plan.resource_config import render
from nodeagent.plan.settings import CgroupDriverName, NodeInfo, PlanSettings, SwapBehavior
from tests.conftest import example, load_pod

GiB = 1 << 30
MiB = 1 << 20
NODE = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, swap_bytes=4 * GiB)
V1 = PlanSettings(cgroup_version=1)
V2 = PlanSettings(cgroup_version=2)
SYSTEMD_V2 = PlanSettings(cgroup_version=2, cgroup_driver=CgroupDriverName.SYSTEMD)


def pod_with(containers: str, extra: str = "", meta: str = "{name: p, uid: 1234-5678}") -> str:
    return f"kind: Pod\nmetadata: {meta}\nspec:\n{extra}  containers:\n{containers}"


def test_guaranteed_v1() -> None:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, V1)
    assert plan.pod is not None
    assert plan.pod.path == f"/kubepods/pod{plan.uid}"
    assert plan.pod.files == {"cpu.shares": "716", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "70000",
                              "memory.limit_in_bytes": str(200 * MiB)}
    container = plan.container("qos-demo-ctr")
    assert container.path == f"/kubepods/pod{plan.uid}/qos-demo-ctr"
    assert container.files == {"cpu.shares": "716", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "70000",
                               "memory.limit_in_bytes": str(200 * MiB),
                               "memory.memsw.limit_in_bytes": str(200 * MiB)}
    assert container.oom_score_adj == -997


def test_guaranteed_v2() -> None:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, V2)
    assert plan.pod is not None
    assert plan.pod.files == {"cpu.weight": "28", "cpu.max": "70000 100000", "memory.max": str(200 * MiB)}
    assert plan.container("qos-demo-ctr").files == {
        "cpu.weight": "28", "cpu.max": "70000 100000", "memory.max": str(200 * MiB), "memory.swap.max": "0",
        "memory.oom.group": "1"}


def test_burstable_memory_only() -> None:
    plan = plan_pod(load_pod(example("memory-demo-2.yaml")), NODE, V1)
    assert plan.pod is not None
    assert plan.pod.path == f"/kubepods/burstable/pod{plan.uid}"
    # every container has a memory limit: the pod gets one; no cpu limit anywhere: no quota
    assert plan.pod.files == {"cpu.shares": "2", "memory.limit_in_bytes": str(100 * MiB)}
    container = plan.container("memory-demo-2-ctr")
    assert container.files == {"cpu.shares": "2", "cpu.cfs_period_us": "100000",
                               "memory.limit_in_bytes": str(100 * MiB),
                               "memory.memsw.limit_in_bytes": str(100 * MiB)}
    assert container.oom_score_adj == 1000 - 1000 * 50 * MiB // NODE.memory_bytes


def test_burstable_gets_pod_limits_only_when_every_container_has_them() -> None:
    text = pod_with("  - {name: a, image: x, resources: {requests: {cpu: 250m}, limits: {cpu: 500m, memory: 1Gi}}}\n"
                    "  - {name: b, image: x, resources: {limits: {memory: 1Gi}}}\n")
    plan = plan_pod(load_pod(text), NODE, V1)
    assert plan.pod is not None
    assert plan.pod.files == {"cpu.shares": "256", "memory.limit_in_bytes": str(2 * GiB)}
    assert plan.container("a").files["cpu.cfs_quota_us"] == "50000"
    assert plan.container("a").files["cpu.shares"] == "256"
    assert plan.container("b").files["cpu.shares"] == "2"


def test_besteffort_gets_shares_2_only() -> None:
    plan = plan_pod(load_pod(example("qos-besteffort.yaml")), NODE, V2)
    assert plan.pod is not None
    assert plan.pod.path == f"/kubepods/besteffort/pod{plan.uid}"
    assert plan.pod.files == {"cpu.weight": "1"}
    container = plan.container("qos-demo-3-ctr")
    assert container.files == {"cpu.weight": "1", "cpu.max": "max 100000", "memory.swap.max": "0",
                               "memory.oom.group": "1"}
    assert container.oom_score_adj == 1000


def test_pod_requests_include_init_containers() -> None:
    # pod request = max(sum of app containers, largest init container), per resource
    text = pod_with("  - {name: a, image: x, resources: {limits: {cpu: 300m, memory: 100Mi}}}\n"
                    "  - {name: b, image: x, resources: {limits: {cpu: 300m, memory: 100Mi}}}\n",
                    extra="  initContainers:\n  - {name: i, image: x, resources: {limits: {cpu: '1', memory: 50Mi}}}\n")
    plan = plan_pod(load_pod(text), NODE, V1)
    assert plan.qos.value == "Guaranteed"
    assert plan.pod is not None
    assert plan.pod.files == {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000",
                              "memory.limit_in_bytes": str(200 * MiB)}
    assert [c.container for c in plan.containers] == ["i", "a", "b"]


def test_an_explicit_zero_cpu_request_gives_two_shares_not_the_limit() -> None:
    # kubelet calculateLinuxResources: only a missing request falls back to the limit; "0" is a request
    text = pod_with("  - {name: a, image: x, resources: {requests: {cpu: '0'}, limits: {cpu: '2'}}}\n")
    assert plan_pod(load_pod(text), NODE, V1).container("a").files["cpu.shares"] == "2"


def test_cpu_cfs_quota_off() -> None:
    settings = PlanSettings(cgroup_version=1, cpu_cfs_quota=False)
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, settings)
    assert plan.pod is not None
    assert plan.pod.files["cpu.cfs_quota_us"] == "-1"
    assert "cpu.cfs_quota_us" not in plan.container("qos-demo-ctr").files
    assert "cpu.cfs_period_us" not in plan.container("qos-demo-ctr").files
    v2 = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, PlanSettings(cgroup_version=2, cpu_cfs_quota=False))
    assert v2.pod is not None and v2.pod.files["cpu.max"] == "max 100000"
    assert "cpu.max" not in v2.container("qos-demo-ctr").files


def test_cpu_cfs_quota_period() -> None:
    settings = PlanSettings(cgroup_version=2, cpu_cfs_quota_period_us=50_000)
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, settings)
    assert plan.container("qos-demo-ctr").files["cpu.max"] == "35000 50000"


def test_pod_pids_limit() -> None:
    plan = plan_pod(load_pod(example("qos-besteffort.yaml")), NODE, PlanSettings(cgroup_version=1, pod_pids_limit=100))
    assert plan.pod is not None and plan.pod.files["pids.max"] == "100"
    assert "pids.max" not in plan.container("qos-demo-3-ctr").files


def test_systemd_paths() -> None:
    plan = plan_pod(load_pod(example("memory-demo-2.yaml")), NODE, SYSTEMD_V2)
    slice_path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{plan.uid}.slice"
    assert plan.pod is not None and plan.pod.path == slice_path
    assert plan.containers[0].path == f"{slice_path}/nodeagent-{plan.uid}-memory-demo-2-ctr.scope"


def test_systemd_uid_dashes_become_underscores() -> None:
    plan = plan_pod(load_pod(pod_with("  - {name: a, image: x}\n")), NODE, SYSTEMD_V2)
    assert plan.pod is not None
    assert plan.pod.path == "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice"


def test_guaranteed_systemd_path() -> None:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, SYSTEMD_V2)
    assert plan.pod is not None and plan.pod.path == f"/kubepods.slice/kubepods-pod{plan.uid}.slice"


@pytest.mark.parametrize(
    ("root", "driver", "expected"),
    [("/nodeagent-test", CgroupDriverName.CGROUPFS, "/nodeagent-test/kubepods/besteffort/pod1234-5678"),
     ("/a/b", CgroupDriverName.CGROUPFS, "/a/b/kubepods/besteffort/pod1234-5678"),
     ("/natest", CgroupDriverName.SYSTEMD,
      "/natest.slice/natest-kubepods.slice/natest-kubepods-besteffort.slice/natest-kubepods-besteffort-pod1234_5678.slice")],
)
def test_cgroup_root(root: str, driver: CgroupDriverName, expected: str) -> None:
    settings = PlanSettings(cgroup_version=1, cgroup_driver=driver, cgroup_root=root)
    plan = plan_pod(load_pod(pod_with("  - {name: a, image: x}\n")), NODE, settings)
    assert plan.pod is not None and plan.pod.path == expected


def test_cgroups_per_qos_off_flattens() -> None:
    settings = PlanSettings(cgroup_version=1, cgroup_root="/flat", cgroups_per_qos=False)
    plan = plan_pod(load_pod(pod_with("  - {name: a, image: x}\n")), NODE, settings)
    assert plan.pod is None
    assert plan.containers[0].path == "/flat/pod1234-5678-a"


@pytest.mark.parametrize("version", [1, 2])
def test_no_swap(version: int) -> None:
    settings = PlanSettings(cgroup_version=version, swap_behavior=SwapBehavior.NO_SWAP)
    files = plan_pod(load_pod(example("memory-demo.yaml")), NODE, settings).containers[0].files
    if version == 1:
        assert files["memory.memsw.limit_in_bytes"] == files["memory.limit_in_bytes"] == str(200 * MiB)
    else:
        assert files["memory.swap.max"] == "0"


def test_limited_swap_for_burstable_with_request_below_limit() -> None:
    expected_swap = int(100 * MiB / NODE.memory_bytes * NODE.swap_bytes)
    v2 = PlanSettings(cgroup_version=2, swap_behavior=SwapBehavior.LIMITED_SWAP)
    assert plan_pod(load_pod(example("memory-demo.yaml")), NODE, v2).containers[0].files["memory.swap.max"] == str(expected_swap)
    v1 = PlanSettings(cgroup_version=1, swap_behavior=SwapBehavior.LIMITED_SWAP)
    files = plan_pod(load_pod(example("memory-demo.yaml")), NODE, v1).containers[0].files
    assert files["memory.memsw.limit_in_bytes"] == str(200 * MiB + expected_swap)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("qos-guaranteed.yaml", "Guaranteed"), ("qos-besteffort.yaml", "BestEffort")],
)
def test_limited_swap_never_for_other_classes(name: str, reason: str) -> None:
    settings = PlanSettings(cgroup_version=2, swap_behavior=SwapBehavior.LIMITED_SWAP)
    assert plan_pod(load_pod(example(name)), NODE, settings).containers[0].files["memory.swap.max"] == "0", reason


def test_limited_swap_not_when_request_equals_limit_or_no_memory() -> None:
    text = pod_with("  - {name: a, image: x, resources: {limits: {memory: 1Gi}, requests: {cpu: 100m}}}\n"
                    "  - {name: b, image: x, resources: {requests: {cpu: 100m}}}\n"
                    "  - {name: c, image: x, resources: {requests: {memory: 1Gi}}}\n")
    plan = plan_pod(load_pod(text), NODE, PlanSettings(cgroup_version=2, swap_behavior=SwapBehavior.LIMITED_SWAP))
    assert plan.container("a").files["memory.swap.max"] == "0"
    assert plan.container("b").files["memory.swap.max"] == "0"
    assert plan.container("c").files["memory.swap.max"] == str(GiB // 4)
    v1 = plan_pod(load_pod(text), NODE, PlanSettings(cgroup_version=1, swap_behavior=SwapBehavior.LIMITED_SWAP))
    assert v1.container("c").files["memory.memsw.limit_in_bytes"] == "-1"  # no limit: unlimited


@pytest.mark.parametrize("priority_class", ["system-node-critical", "system-cluster-critical"])
def test_critical_pods_never_swap(priority_class: str) -> None:
    text = example("memory-demo.yaml").decode().replace("spec:\n", f"spec:\n  priorityClassName: {priority_class}\n")
    settings = PlanSettings(cgroup_version=2, swap_behavior=SwapBehavior.LIMITED_SWAP)
    assert plan_pod(load_pod(text), NODE, settings).containers[0].files["memory.swap.max"] == "0"


def test_node_critical_pods_get_guaranteed_oom_score() -> None:
    text = example("memory-demo.yaml").decode().replace("spec:\n", "spec:\n  priorityClassName: system-node-critical\n")
    assert plan_pod(load_pod(text), NODE, V1).containers[0].oom_score_adj == -997


def test_memory_qos() -> None:
    settings = PlanSettings(cgroup_version=2, memory_qos=True)
    plan = plan_pod(load_pod(example("memory-demo.yaml")), NODE, settings)
    assert plan.pod is not None and plan.pod.files["memory.min"] == str(100 * MiB)
    files = plan.containers[0].files
    assert files["memory.min"] == str(100 * MiB)
    assert files["memory.high"] == str(190 * MiB)


def test_memory_qos_without_limit_uses_allocatable() -> None:
    node = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, allocatable_memory_bytes=10 * GiB)
    text = pod_with("  - {name: a, image: x, resources: {requests: {memory: 1Gi}}}\n")
    files = plan_pod(load_pod(text), node, PlanSettings(cgroup_version=2, memory_qos=True)).containers[0].files
    expected = int((GiB + (10 * GiB - GiB) * 0.9) // 4096) * 4096
    assert files["memory.high"] == str(expected)


def test_memory_qos_never_throttles_guaranteed_and_needs_v2() -> None:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, PlanSettings(cgroup_version=2, memory_qos=True))
    assert "memory.high" not in plan.containers[0].files
    assert plan.containers[0].files["memory.min"] == str(200 * MiB)
    v1 = plan_pod(load_pod(example("memory-demo.yaml")), NODE, PlanSettings(cgroup_version=1, memory_qos=True))
    assert not any(name.startswith("memory.min") for name in v1.containers[0].files)


def test_json_shape_follows_the_contract() -> None:
    plan = plan_pod(load_pod(example("memory-demo-2.yaml")), NODE, SYSTEMD_V2)
    data = plan.to_json()
    assert data["pod"] == {"name": "memory-demo-2-node1", "namespace": "mem-example", "uid": plan.uid,
                           "qosClass": "Burstable"}
    assert (data["cgroupVersion"], data["cgroupDriver"]) == (2, "systemd")
    cgroups = data["cgroups"]
    assert isinstance(cgroups, list)
    assert [c["level"] for c in cgroups] == ["pod", "container"]
    assert cgroups[1]["container"] == "memory-demo-2-ctr"
    assert "oomScoreAdj" in cgroups[1] and "oomScoreAdj" not in cgroups[0]


@pytest.mark.parametrize("settings", [V1, V2, SYSTEMD_V2], ids=["v1", "v2", "systemd-v2"])
def test_every_plan_carries_the_values_its_files_say(settings: PlanSettings) -> None:
    """The systemd driver and OCI runtimes read `resources`, cgroupfs the files: they must agree."""
    pods = [load_pod(example(name)) for name in ("qos-guaranteed.yaml", "qos-burstable.yaml", "qos-besteffort.yaml")]
    plans = plan_node_cgroups(pods, NODE, settings)
    plans += [cgroup for pod in pods for plan in [plan_pod(pod, NODE, settings)]
              for cgroup in ([plan.pod] if plan.pod else []) + list(plan.containers)]
    assert len(plans) == 3 + 3 + 3
    for plan in plans:
        assert plan.files == render(plan.resources, settings.cgroup_version), plan.path
        assert plan.files, plan.path  # every one of them sets something


@pytest.mark.parametrize(("settings", "leaf"), [(V2, "_conmon"), (SYSTEMD_V2, "nodeagent-{uid_}-_conmon.scope")],
                         ids=["cgroupfs", "systemd"])
def test_the_monitors_get_a_leaf_of_their_own_below_the_pod(settings: PlanSettings, leaf: str) -> None:
    """cgroup v2 keeps processes out of a cgroup whose children use its controllers: conmon cannot sit in
    the pod cgroup itself, nor in a container's, whose limits it must not share."""
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, settings)
    assert plan.pod is not None and plan.monitor is not None
    assert plan.monitor.path == plan.pod.path + "/" + leaf.format(uid_=plan.uid.replace("-", "_"))
    assert plan.monitor.files == {}
    assert plan.monitor.path not in {container.path for container in plan.containers}


def test_without_pod_cgroups_there_is_no_monitor_leaf() -> None:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, PlanSettings(cgroup_version=2,
                                                                                   cgroups_per_qos=False))
    assert (plan.pod, plan.monitor) == (None, None)
