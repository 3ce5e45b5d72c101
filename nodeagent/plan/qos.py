"""The node-level cgroups the kubelet keeps in line as pods come and go (qos_container_manager).

Pure: the active pods in, the plans for kubepods, kubepods/burstable and kubepods/besteffort out.

    kubepods            cpu.shares = shares(allocatable cpu), memory limit = allocatable memory,
                        hugetlb limits = the node's hugepages
    kubepods/burstable  cpu.shares = shares(sum of the cpu requests of Burstable pods), hugetlb unbounded
    kubepods/besteffort cpu.shares = 2, hugetlb unbounded
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.api.manifest import StaticPod
from nodeagent.api.resources import CPU, MEMORY, QOSClass, milli, pod_requests, whole
from nodeagent.plan import formulas, paths
from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import ResourceConfig, render
from nodeagent.plan.settings import NodeInfo, PlanSettings

HUGEPAGES_UNBOUNDED = 1 << 62  # the kubelet's "effectively unbounded" hugetlb limit of the QoS cgroups


def plan_node_cgroups(pods: Iterable[StaticPod], node: NodeInfo, settings: PlanSettings) -> list[CgroupPlan]:
    """Parents first; empty without per-QoS cgroups (cgroupsPerQOS: false)."""
    if not settings.cgroups_per_qos:
        return []
    burstable_cpu = burstable_memory = guaranteed_memory = 0
    for pod in pods:
        requests = pod_requests(pod.pod)
        if pod.qos is QOSClass.BURSTABLE:
            burstable_cpu += milli(requests, CPU)
            burstable_memory += whole(requests, MEMORY)
        elif pod.qos is QOSClass.GUARANTEED:
            guaranteed_memory += whole(requests, MEMORY)
    memory_qos = settings.memory_qos and settings.cgroup_version == 2
    sizes = node.hugepage_sizes
    unbounded = tuple((size, HUGEPAGES_UNBOUNDED) for size in sizes) or None  # setHugePagesUnbounded
    kubepods = ResourceConfig(
        cpu_shares=formulas.milli_cpu_to_shares(node.pod_cpu_millis if settings.enforce_node_allocatable
                                                else node.cpu_millis),
        memory_bytes=node.pod_memory_bytes if settings.enforce_node_allocatable else node.memory_bytes,
        memory_min_bytes=(guaranteed_memory + burstable_memory) or None if memory_qos else None,
        hugepage_limits=tuple((size, total) for size, total in node.hugepages if size in sizes) or None,
    )
    burstable = ResourceConfig(
        cpu_shares=formulas.milli_cpu_to_shares(burstable_cpu),
        memory_min_bytes=burstable_memory or None if memory_qos else None,
        hugepage_limits=unbounded,
    )
    besteffort = ResourceConfig(cpu_shares=formulas.MIN_SHARES, hugepage_limits=unbounded)
    version, driver = settings.cgroup_version, settings.cgroup_driver
    return [
        CgroupPlan("node", paths.spell(paths.node_name(settings), driver), render(kubepods, version),
                   resources=kubepods),
        CgroupPlan("qos", paths.spell(paths.qos_name(QOSClass.BURSTABLE, settings), driver),
                   render(burstable, version), resources=burstable),
        CgroupPlan("qos", paths.spell(paths.qos_name(QOSClass.BESTEFFORT, settings), driver),
                   render(besteffort, version), resources=besteffort),
    ]
