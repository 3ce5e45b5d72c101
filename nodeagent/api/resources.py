"""Pod-level resource sums and the QoS class, as Kubernetes' component-helpers compute them.

Pod requests (and limits) are the larger of the app containers' sum and the largest init container,
resource by resource, where sidecars (init containers with restartPolicy: Always) count with the app containers
and with every init container after them (KEP-753); pod-level `spec.resources` replace them for cpu and memory
where set, and `spec.overhead` is added (to limits only where there is a limit). Amounts stay exact Fractions
until a caller rounds them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction

from nodeagent.api.model import Container, Pod, ResourceRequirements
from nodeagent.api.quantity import Quantity, parse_quantity
from nodeagent.errors import QuantityError

Amounts = dict[str, Fraction]
_ZERO = Fraction(0)
_Picker = Callable[[Container], Mapping[str, Quantity] | None]

CPU = "cpu"
MEMORY = "memory"
_QOS_RESOURCES = (CPU, MEMORY)
POD_LEVEL_RESOURCES = (CPU, MEMORY)  # IsSupportedPodLevelResource
HUGEPAGES_PREFIX = "hugepages-"


class QOSClass(enum.Enum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BESTEFFORT = "BestEffort"


def container_requests(pod: Pod) -> Amounts:
    """resourcehelper.AggregateContainerRequests: the containers alone, no pod-level, no overhead."""
    return _pod_amounts(pod, lambda c: c.resources.requests)


def pod_requests(pod: Pod) -> Amounts:
    """resourcehelper.PodRequests: containers, then pod-level requests, then overhead added."""
    total = container_requests(pod)
    pod_level = pod.spec.resources.requests if pod.spec.resources else None
    for name, quantity in (pod_level or {}).items():
        if name in POD_LEVEL_RESOURCES:
            total[name] = quantity.amount
    for name, quantity in (pod.spec.overhead or {}).items():
        total[name] = total.get(name, _ZERO) + quantity.amount
    return total


def pod_limits(pod: Pod) -> Amounts:
    """resourcehelper.PodLimits: containers, then pod-level limits, then overhead added to those set."""
    total = _pod_amounts(pod, lambda c: c.resources.limits)
    pod_level = pod.spec.resources.limits if pod.spec.resources else None
    for name, quantity in (pod_level or {}).items():
        if name in POD_LEVEL_RESOURCES:
            total[name] = quantity.amount
    for name, quantity in (pod.spec.overhead or {}).items():
        if name in total:
            total[name] += quantity.amount
    return total


def limits_declared(pod: Pod) -> tuple[bool, bool]:
    """(cpu, memory): every container has a limit for it, or the pod-level limits have one
    (the kubelet's cpuLimitsDeclared and memoryLimitsDeclared in ResourceConfigForPod)."""
    pod_level = (pod.spec.resources.limits if pod.spec.resources else None) or {}
    declared = []
    for name in (CPU, MEMORY):
        everywhere = all(not _amount(c.resources.limits, name).is_zero() for c in pod.all_containers())
        declared.append(everywhere or not _amount(pod_level, name).is_zero())
    return declared[0], declared[1]


_NO_AMOUNT = Quantity(_ZERO, "0")


def _amount(values: Mapping[str, Quantity] | None, name: str) -> Quantity:
    return (values or {}).get(name) or _NO_AMOUNT


def _pod_amounts(pod: Pod, pick: _Picker) -> Amounts:
    """AggregateContainerRequests/Limits: an init container runs beside the sidecars started before it; a
    sidecar runs on beside the app containers."""
    total: Amounts = {}
    for container in pod.spec.containers or []:
        _add_all(total, pick(container))
    sidecars: Amounts = {}
    largest_init: Amounts = {}
    for container in pod.spec.init_containers or []:
        if container.is_sidecar:
            _add_all(total, pick(container))
            _add_all(sidecars, pick(container))
            running = sidecars
        else:
            running = dict(sidecars)
            _add_all(running, pick(container))
        for name, amount in running.items():
            largest_init[name] = max(largest_init[name], amount) if name in largest_init else amount
    for name, amount in largest_init.items():
        total[name] = max(total[name], amount) if name in total else amount
    return total


def _add_all(total: Amounts, values: Mapping[str, Quantity] | None) -> None:
    for name, quantity in (values or {}).items():
        _add(total, name, quantity.amount)


def _add(total: Amounts, name: str, amount: Fraction) -> None:
    """total[name] += amount, where a missing name is 0 (Fraction sums are costly: none with 0)."""
    total[name] = total[name] + amount if name in total else amount


def hugepage_size(resource: str) -> int | None:
    """The page size in bytes of a hugepages-<size> resource (v1helper.HugePageSizeFromResourceName)."""
    if not resource.startswith(HUGEPAGES_PREFIX):
        return None
    try:
        return parse_quantity(resource[len(HUGEPAGES_PREFIX):]).value()
    except QuantityError:
        return None


def pod_hugepages(requests: Amounts) -> dict[int, int]:
    """Page size -> bytes the pod asks for (kubelet HugePageLimits, from the pod's requests)."""
    limits: dict[int, int] = {}
    for name, amount in requests.items():
        size = hugepage_size(name)
        if size is not None:
            limits[size] = limits.get(size, 0) + Quantity(amount, "").value()
    return limits


def container_hugepages(container: Container) -> dict[int, Quantity]:
    """Page size -> a container's limit (GetHugepageLimitsFromResources reads limits)."""
    found = {}
    for name, quantity in (container.resources.limits or {}).items():
        size = hugepage_size(name)
        if size is not None:
            found[size] = quantity
    return found


def milli(amounts: Amounts, name: str) -> int:
    """A pod-level amount in thousandths, rounded up like Quantity.MilliValue()."""
    return Quantity(amounts.get(name, _ZERO), "").milli_value()


def whole(amounts: Amounts, name: str) -> int:
    """A pod-level amount in units, rounded up like Quantity.Value()."""
    return Quantity(amounts.get(name, _ZERO), "").value()


def qos_class(pod: Pod) -> QOSClass:
    """Kubernetes' ComputePodQOS: only cpu and memory count; init containers count like the others;
    pod-level resources, when set, decide alone."""
    resources = pod.spec.resources
    if resources is not None and is_pod_level_resources_set(resources):
        return classify([resources])
    return classify(c.resources for c in pod.all_containers())


def is_pod_level_resources_set(resources: ResourceRequirements) -> bool:
    """resourcehelper.IsPodLevelResourcesSet: a pod-level request or limit of cpu or memory."""
    return any(name in POD_LEVEL_RESOURCES for name in {**(resources.requests or {}), **(resources.limits or {})})


def classify(all_resources: Iterable[ResourceRequirements]) -> QOSClass:
    requests: Amounts = {}
    limits: Amounts = {}
    guaranteed = True
    for resources in all_resources:
        for name, quantity in _positive(resources.requests):
            _add(requests, name, quantity)
        found = set()
        for name, quantity in _positive(resources.limits):
            found.add(name)
            _add(limits, name, quantity)
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return QOSClass.BESTEFFORT
    requests_match = all(limits.get(name) == amount for name, amount in requests.items())
    if guaranteed and requests_match and len(requests) == len(limits):
        return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


def _positive(values: Mapping[str, Quantity] | None) -> Iterable[tuple[str, Fraction]]:
    for name, quantity in (values or {}).items():
        if name in _QOS_RESOURCES and quantity.amount > 0:
            yield name, quantity.amount
