"""Admission as the kubelet does it: a pod starts only if its requests fit what the node has left.

Pure. Allocatable = capacity - systemReserved - kubeReserved - evictionHard memory.available;
hugepages-<size>: the node's pages of that size (none: 0). "used" is what the admitted pods request.
Resources are checked in the kubelet's order (pods, cpu, memory, then hugepages by size) and the
first that does not fit is the reason, in the kubelet's words:

    OutOfmemory: Node didn't have enough resource: memory, requested: 1073741824000, used: 0, capacity: ...
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.api.manifest import StaticPod
from nodeagent.api.quantity import parse_quantity
from nodeagent.api.resources import CPU, MEMORY, hugepage_size, milli, pod_requests, whole
from nodeagent.errors import QuantityError
from nodeagent.plan.settings import NodeInfo

DEFAULT_MEMORY_AVAILABLE = 100 * 1024 * 1024  # the kubelet's evictionHard memory.available<100Mi


@dataclass(frozen=True, slots=True)
class Allocatable:
    cpu_millis: int
    memory_bytes: int
    pods: int
    hugepages: tuple[tuple[int, int], ...] = ()  # (page size, bytes)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str


def eviction_memory_bytes(eviction_hard: dict[str, str] | None, memory_capacity: int) -> int:
    """memory.available of evictionHard in bytes: a quantity or a percentage of capacity; the
    kubelet's 100Mi when evictionHard is not configured."""
    if eviction_hard is None:
        return DEFAULT_MEMORY_AVAILABLE
    value = eviction_hard.get("memory.available")
    if value is None:
        return 0
    if value.endswith("%"):
        return int(memory_capacity * float(value[:-1]) / 100)
    try:
        return parse_quantity(value).value()
    except QuantityError:
        return DEFAULT_MEMORY_AVAILABLE


def allocatable(node: NodeInfo, *, eviction_memory: int, max_pods: int) -> Allocatable:
    return Allocatable(cpu_millis=node.pod_cpu_millis,
                       memory_bytes=max(node.pod_memory_bytes - eviction_memory, 0), pods=max_pods,
                       hugepages=node.hugepages)


def admit(pod: StaticPod, admitted: Iterable[StaticPod], capacity: Allocatable) -> Rejection | None:
    running = list(admitted)
    requests = pod_requests(pod.pod)
    used = [pod_requests(p.pod) for p in running]
    checks = [
        ("pods", 1, len(running), capacity.pods),
        (CPU, milli(requests, CPU), sum(milli(u, CPU) for u in used), capacity.cpu_millis),
        (MEMORY, whole(requests, MEMORY), sum(whole(u, MEMORY) for u in used), capacity.memory_bytes),
    ]
    node_hugepages = dict(capacity.hugepages)
    for name in sorted(requests, key=lambda n: hugepage_size(n) or 0):
        size = hugepage_size(name)
        if size is not None:
            checks.append((name, whole(requests, name), sum(whole(u, name) for u in used),
                           node_hugepages.get(size, 0)))
    for resource, requested, in_use, total in checks:
        if requested and requested + in_use > total:
            return Rejection(f"OutOf{resource}", f"Node didn't have enough resource: {resource}, requested: "
                                                 f"{requested}, used: {in_use}, capacity: {total}")
    return None
