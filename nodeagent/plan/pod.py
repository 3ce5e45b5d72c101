"""Plan a pod's cgroups as the kubelet would: pod level, then each container, with oom_score_adj.

Pure: no filesystem, clock or globals. nodeagent.cgroups applies a ResourcePlan.

    plan_pod(static_pod, node, settings)
      -> ResourcePlan(pod=CgroupPlan("pod", "/kubepods/burstable/pod<uid>", {"cpu.shares": "2", ...}),
                      containers=(CgroupPlan("container", ".../<name>", {...}, oom_score_adj=968), ...))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container
from nodeagent.api.quantity import Quantity
from nodeagent.api.resources import (
    CPU,
    MEMORY,
    QOSClass,
    container_hugepages,
    container_requests,
    limits_declared,
    milli,
    pod_hugepages,
    pod_limits,
    pod_requests,
    whole,
)
from nodeagent.plan import formulas, paths
from nodeagent.plan.resource_config import UNLIMITED, ResourceConfig, render
from nodeagent.plan.settings import CgroupDriverName, NodeInfo, PlanSettings, SwapBehavior

CRITICAL_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000  # scheduling.SystemCriticalPriority


@dataclass(frozen=True, slots=True)
class CgroupPlan:
    """One cgroup: where it is and what its files get, in write order."""

    level: str  # "node", "qos", "pod" or "container"
    path: str  # as the driver spells it, from the root of the hierarchy
    files: dict[str, str] = field(default_factory=dict)
    container: str | None = None
    oom_score_adj: int | None = None
    resources: ResourceConfig = field(default_factory=ResourceConfig)  # the same values, for OCI runtimes

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"level": self.level}
        if self.container is not None:
            out["container"] = self.container
        out["path"] = self.path
        out["files"] = dict(self.files)
        if self.oom_score_adj is not None:
            out["oomScoreAdj"] = self.oom_score_adj
        return out


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    name: str
    namespace: str
    uid: str
    qos: QOSClass
    cgroup_version: int
    cgroup_driver: CgroupDriverName
    pod: CgroupPlan | None  # None without per-pod cgroups (cgroupsPerQOS: false)
    containers: tuple[CgroupPlan, ...]
    monitor: CgroupPlan | None = None  # the containers' monitors, below the pod cgroup: nodeagent's, no limits

    def container(self, name: str) -> CgroupPlan:
        return next(plan for plan in self.containers if plan.container == name)

    def to_json(self) -> dict[str, object]:
        cgroups = ([self.pod] if self.pod else []) + list(self.containers)
        return {
            "pod": {"name": self.name, "namespace": self.namespace, "uid": self.uid, "qosClass": self.qos.value},
            "cgroupVersion": self.cgroup_version,
            "cgroupDriver": self.cgroup_driver.value,
            "cgroups": [c.to_json() for c in cgroups],
        }


def plan_pod(pod: StaticPod, node: NodeInfo, settings: PlanSettings) -> ResourcePlan:
    per_pod = settings.cgroups_per_qos
    pod_plan = None
    parent = paths.node_name(settings)
    if per_pod:
        name = paths.pod_name(pod.uid, pod.qos, settings)
        pod_config = pod_resources(pod, node, settings)
        pod_plan = CgroupPlan("pod", paths.spell(name, settings.cgroup_driver),
                              render(pod_config, settings.cgroup_version), resources=pod_config)
        parent = name
    containers = []
    for container in pod.pod.all_containers():
        leaf = paths.container_leaf(pod.uid, container.valid_name, driver=settings.cgroup_driver, per_pod=per_pod)
        config = container_resources(pod, container, node, settings)
        containers.append(CgroupPlan(
            "container",
            paths.spell(parent, settings.cgroup_driver).rstrip("/") + "/" + leaf,
            render(config, settings.cgroup_version),
            container=container.valid_name,
            oom_score_adj=oom_score_adj(pod, container, node),
            resources=config,
        ))
    monitor = None
    if pod_plan is not None:
        monitor = CgroupPlan("monitor", pod_plan.path.rstrip("/") + "/" + paths.monitor_leaf(
            pod.uid, driver=settings.cgroup_driver))
    return ResourcePlan(name=pod.name, namespace=pod.namespace, uid=pod.uid, qos=pod.qos,
                        cgroup_version=settings.cgroup_version, cgroup_driver=settings.cgroup_driver,
                        pod=pod_plan, containers=tuple(containers), monitor=monitor)


def pod_resources(pod: StaticPod, node: NodeInfo, settings: PlanSettings) -> ResourceConfig:
    """kubelet ResourceConfigForPod: what the pod cgroup gets for its QoS class (pod-level resources,
    when set, decide; overhead is added)."""
    requests = pod_requests(pod.pod)
    limits = pod_limits(pod.pod)
    cpu_limits_declared, memory_limits_declared = limits_declared(pod.pod)

    shares = formulas.milli_cpu_to_shares(milli(requests, CPU))
    quota: int | None = formulas.milli_cpu_to_quota(milli(limits, CPU), settings.cpu_cfs_quota_period_us) or None
    if not settings.cpu_cfs_quota:
        quota = UNLIMITED
    period = settings.cpu_cfs_quota_period_us
    memory = whole(limits, MEMORY) or None
    pids = settings.pod_pids_limit if settings.pod_pids_limit > 0 else None
    memory_min = None
    if settings.memory_qos and settings.cgroup_version == 2:
        memory_min = whole(requests, MEMORY) or None
    hugepages = _hugepage_limits(pod_hugepages(requests), node)

    if pod.qos is QOSClass.GUARANTEED:
        return ResourceConfig(cpu_shares=shares, cpu_quota_us=quota, cpu_period_us=period,
                              memory_bytes=memory, pids_max=pids, memory_min_bytes=memory_min,
                              hugepage_limits=hugepages)
    if pod.qos is QOSClass.BURSTABLE:
        return ResourceConfig(
            cpu_shares=shares,
            cpu_quota_us=quota if cpu_limits_declared else None,
            cpu_period_us=period if cpu_limits_declared else None,
            memory_bytes=memory if memory_limits_declared else None,
            pids_max=pids,
            memory_min_bytes=memory_min,
            hugepage_limits=hugepages,
        )
    return ResourceConfig(cpu_shares=formulas.MIN_SHARES, pids_max=pids, memory_min_bytes=memory_min,
                          hugepage_limits=hugepages)


def container_resources(
    pod: StaticPod, container: Container, node: NodeInfo, settings: PlanSettings
) -> ResourceConfig:
    """kubelet generateLinuxContainerResources: cpu, memory, swap and hugetlb of one container's cgroup."""
    requests = container.resources.requests or {}
    limit_cpu = _limit(container, CPU)
    if CPU not in requests and limit_cpu is not None:
        shares = formulas.milli_cpu_to_shares(limit_cpu.milli_value())
    else:  # an explicit request, even "0", is the request (2 shares for 0)
        shares = formulas.milli_cpu_to_shares(requests[CPU].milli_value() if CPU in requests else 0)
    quota = period = None
    if settings.cpu_cfs_quota:
        period = settings.cpu_cfs_quota_period_us
        quota = formulas.milli_cpu_to_quota(limit_cpu.milli_value() if limit_cpu else 0, period) or None
    limit = _limit(container, MEMORY)
    memory = (limit.value() or None) if limit else None
    memsw, swap = _swap(pod, container, memory, node, settings)
    memory_min = memory_high = None
    if settings.memory_qos and settings.cgroup_version == 2:
        memory_min, memory_high = _memory_qos(container, memory, node, settings)
    hugepages = {size: amount.value() for size, amount in container_hugepages(container).items()}
    return ResourceConfig(
        cpu_shares=shares, cpu_quota_us=quota, cpu_period_us=period, memory_bytes=memory,
        memsw_bytes=memsw, swap_max_bytes=swap, memory_min_bytes=memory_min, memory_high_bytes=memory_high,
        memory_oom_group=True if settings.cgroup_version == 2 and not settings.single_process_oom_kill else None,
        hugepage_limits=_hugepage_limits(hugepages, node),
    )


def _hugepage_limits(limits: dict[int, int], node: NodeInfo) -> tuple[tuple[int, int], ...] | None:
    """A limit for every page size the node has, 0 where none is asked for (kubelet maybeSetHugetlb);
    None where the node has no hugetlb controller to write them to."""
    sizes = node.hugepage_sizes
    if not sizes:
        return None
    return tuple((size, limits.get(size, 0)) for size in sizes)


def _swap(
    pod: StaticPod, container: Container, memory: int | None, node: NodeInfo, settings: PlanSettings
) -> tuple[int | None, int | None]:
    """(v1 memsw total, v2 swap) for a container: NoSwap unless LimitedSwap applies to it.

    The kubelet never gives swap to static pods; here every pod is static, so only critical pods
    (kubelet IsCriticalPod: a critical priority class, or a priority of 2000000000 and above) keep that rule.
    """
    request = _request(container, MEMORY)
    limited = (
        settings.swap_behavior is SwapBehavior.LIMITED_SWAP
        and not is_critical(pod)
        and pod.qos is QOSClass.BURSTABLE
        and (request is not None or memory is not None)
        and (request.value() if request else 0) != (memory or 0)
    )
    if not limited:
        if settings.cgroup_version == 2:
            return None, 0
        return memory, None
    swap = formulas.limited_swap_bytes(request.value() if request else 0, node.memory_bytes, node.swap_bytes)
    if settings.cgroup_version == 2:
        return None, swap
    return (memory + swap if memory else UNLIMITED), None


def _memory_qos(
    container: Container, memory: int | None, node: NodeInfo, settings: PlanSettings
) -> tuple[int | None, int | None]:
    request = _request(container, MEMORY)
    request_bytes = request.value() if request else 0
    memory_min = request_bytes or None
    if request_bytes == (memory or 0):
        return memory_min, None  # Guaranteed-like containers are not throttled
    ceiling = memory or node.pod_memory_bytes
    if ceiling <= 0:
        return memory_min, None
    high = formulas.memory_high_bytes(request_bytes, ceiling, settings.memory_throttling_factor, settings.page_size)
    return memory_min, high if high > request_bytes else None


def is_critical(pod: StaticPod) -> bool:
    """kubelet IsCriticalPod, less "every static pod is critical" (see _swap)."""
    spec = pod.pod.spec
    return spec.priority_class_name in CRITICAL_PRIORITY_CLASSES or (
        spec.priority is not None and spec.priority >= SYSTEM_CRITICAL_PRIORITY)


def oom_score_adj(pod: StaticPod, container: Container, node: NodeInfo) -> int:
    """kubelet GetContainerOOMScoreAdjust."""
    if pod.pod.spec.priority_class_name == "system-node-critical" or pod.qos is QOSClass.GUARANTEED:
        return formulas.GUARANTEED_OOM_SCORE_ADJ
    if pod.qos is QOSClass.BESTEFFORT:
        return formulas.BESTEFFORT_OOM_SCORE_ADJ
    remaining = remaining_pod_memory_per_container(pod)
    adj = formulas.burstable_oom_score_adj(_memory_request(container) + remaining, node.memory_bytes)
    if container.is_sidecar and pod.pod.spec.containers:
        # a sidecar is killed no later than the app container asking for the least memory (minRegularContainerMemory)
        least = min(_memory_request(app) for app in pod.pod.spec.containers)
        adj = min(adj, formulas.burstable_oom_score_adj(least + remaining, node.memory_bytes))
    return adj


def _memory_request(container: Container) -> int:
    request = _request(container, MEMORY)
    return request.value() if request else 0


def remaining_pod_memory_per_container(pod: StaticPod) -> int:
    """kubelet remainingPodMemReqPerContainer: the pod-level memory request the containers' own
    requests leave, shared by every container (init ones included); 0 without a pod-level request."""
    spec = pod.pod.spec
    pod_request = ((spec.resources.requests if spec.resources else None) or {}).get(MEMORY)
    if pod_request is None or pod_request.is_zero():
        return 0
    containers = len(spec.containers or []) + len(spec.init_containers or [])
    remaining = pod_request.value() - whole(container_requests(pod.pod), MEMORY)
    if not containers:
        return 0
    share = abs(remaining) // containers  # Go's division truncates toward zero
    return share if remaining >= 0 else -share


def _request(container: Container, resource: str) -> Quantity | None:
    value = (container.resources.requests or {}).get(resource)
    return value if value is not None and not value.is_zero() else None


def _limit(container: Container, resource: str) -> Quantity | None:
    value = (container.resources.limits or {}).get(resource)
    return value if value is not None and not value.is_zero() else None
