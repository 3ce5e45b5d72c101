"""Pod-level resource sums and the QoS class, as Kubernetes' component-helpers compute them.

Pod requests (and limits) are the larger of the app containers' sum and the largest init container,
resource by resource. Amounts stay exact Fractions until a caller rounds them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction

from nodeagent.api.model import Container, Pod
from nodeagent.api.quantity import Quantity

Amounts = dict[str, Fraction]
_Picker = Callable[[Container], Mapping[str, Quantity] | None]

CPU = "cpu"
MEMORY = "memory"
_QOS_RESOURCES = (CPU, MEMORY)


class QOSClass(enum.Enum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BESTEFFORT = "BestEffort"


def pod_requests(pod: Pod) -> Amounts:
    return _pod_amounts(pod, lambda c: c.resources.requests)


def pod_limits(pod: Pod) -> Amounts:
    return _pod_amounts(pod, lambda c: c.resources.limits)


def _pod_amounts(pod: Pod, pick: _Picker) -> Amounts:
    total: Amounts = {}
    for container in pod.spec.containers or []:
        for name, quantity in (pick(container) or {}).items():
            total[name] = total.get(name, Fraction(0)) + quantity.amount
    for container in pod.spec.init_containers or []:
        for name, quantity in (pick(container) or {}).items():
            total[name] = max(total.get(name, Fraction(0)), quantity.amount)
    return total


def milli(amounts: Amounts, name: str) -> int:
    """A pod-level amount in thousandths, rounded up like Quantity.MilliValue()."""
    return Quantity(amounts.get(name, Fraction(0)), "").milli_value()


def whole(amounts: Amounts, name: str) -> int:
    """A pod-level amount in units, rounded up like Quantity.Value()."""
    return Quantity(amounts.get(name, Fraction(0)), "").value()


def qos_class(pod: Pod) -> QOSClass:
    """Kubernetes' GetPodQOS: only cpu and memory count; init containers count like the others."""
    return classify(pod.all_containers())


def classify(containers: Iterable[Container]) -> QOSClass:
    requests: Amounts = {}
    limits: Amounts = {}
    guaranteed = True
    for container in containers:
        for name, quantity in _positive(container.resources.requests):
            requests[name] = requests.get(name, Fraction(0)) + quantity
        found = set()
        for name, quantity in _positive(container.resources.limits):
            found.add(name)
            limits[name] = limits.get(name, Fraction(0)) + quantity
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
