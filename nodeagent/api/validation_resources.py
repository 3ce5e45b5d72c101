"""Validate resource requirements: a container's, the pod-level `spec.resources`, and `spec.overhead`.

The API server's rules and wording (validateResourceRequirements, validatePodResources,
validatePodResourceConsistency, validateOverhead in pkg/apis/core/validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from nodeagent.api import names
from nodeagent.api.fielderrors import forbidden, invalid, required, unsupported
from nodeagent.api.model import PodSpec, ResourceRequirements
from nodeagent.api.quantity import Quantity
from nodeagent.api.resources import CPU, HUGEPAGES_PREFIX, MEMORY, POD_LEVEL_RESOURCES, hugepage_size
from nodeagent.errors import FieldError

STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def validate_resources(resources: ResourceRequirements, path: str, *, pod_level: bool = False) -> list[FieldError]:
    errors: list[FieldError] = []
    limits = resources.limits or {}
    requests = resources.requests or {}
    for field, values in (("limits", limits), ("requests", requests)):
        for name, quantity in values.items():
            where = f"{path}.{field}.{name}"
            if pod_level and name not in POD_LEVEL_RESOURCES:
                errors.append(unsupported(where, name, POD_LEVEL_RESOURCES))
            elif not _is_resource_name(name):
                errors.append(invalid(where, name, "must be a standard resource type or fully qualified"))
            if quantity.amount < 0:
                errors.append(invalid(where, str(quantity), "must be greater than or equal to 0"))
            size = hugepage_size(name)
            if name.startswith(HUGEPAGES_PREFIX) and (size is None or not _whole_pages(quantity, size)):
                errors.append(invalid(where, str(quantity), f"{quantity} is not positive integer multiple of {name}"))
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is None:
            if not _overcommit_allowed(name):
                errors.append(required(f"{path}.limits", "Limit must be set for non overcommitable resources"))
        elif request != limit and not _overcommit_allowed(name):
            errors.append(invalid(f"{path}.requests", str(request), f"must be equal to {name} limit of {limit}"))
        elif request > limit:
            errors.append(invalid(f"{path}.requests.{name}", str(request),
                                  f"must be less than or equal to {name} limit of {limit}"))
    asked = {*limits, *requests}
    if any(name.startswith(HUGEPAGES_PREFIX) for name in asked) and not asked & {CPU, MEMORY}:
        errors.append(forbidden(path, "HugePages require cpu or memory"))
    return errors


def validate_pod_resources(spec: PodSpec) -> list[FieldError]:
    """spec.resources (pod-level) and spec.overhead."""
    errors: list[FieldError] = []
    if spec.overhead is not None:
        errors += validate_resources(ResourceRequirements.model_construct(limits=spec.overhead), "spec.overhead")
    if spec.resources is None:
        return errors
    errors += validate_resources(spec.resources, "spec.resources", pod_level=True)
    containers = spec.containers or []
    pod_requests = spec.resources.requests or {}
    for name in POD_LEVEL_RESOURCES:
        if name not in pod_requests:
            continue
        total = _aggregate_requests(spec, name)
        if total > pod_requests[name].amount:
            errors.append(invalid(f"spec.resources.requests.{name}", str(pod_requests[name]),
                                  f"must be greater than or equal to aggregate container requests of "
                                  f"{_format(total, name)}"))
    pod_limits = spec.resources.limits or {}
    for index, container in enumerate(containers):
        for name, limit in (container.resources.limits or {}).items():
            if name in pod_limits and limit > pod_limits[name]:
                errors.append(invalid(f"spec.containers[{index}].resources.limits.{name}", str(limit),
                                      f"must be less than or equal to pod limits of {pod_limits[name]}"))
    return errors


def _aggregate_requests(spec: PodSpec, name: str) -> Fraction:
    """The containers' sum, or the largest init container if larger (aggregateContainerRequestsAndLimits)."""
    total = sum((_get(c.resources.requests, name) for c in spec.containers or []), Fraction(0))
    return max([total, *(_get(c.resources.requests, name) for c in spec.init_containers or [])])


def _get(values: Mapping[str, Quantity] | None, name: str) -> Fraction:
    quantity = (values or {}).get(name)
    return quantity.amount if quantity is not None else Fraction(0)


def _format(amount: Fraction, name: str) -> str:
    """A sum as Quantity.String() would print it, near enough: millicores for cpu, bytes otherwise."""
    if name == CPU and amount.denominator != 1:
        return f"{Quantity(amount, '').milli_value()}m"
    return str(Quantity(amount, "").value())


def _whole_pages(quantity: Quantity, page_size: int) -> bool:
    amount = quantity.amount
    return page_size > 0 and amount.denominator == 1 and amount.numerator % page_size == 0


def _overcommit_allowed(name: str) -> bool:
    """helper.IsOvercommitAllowed: native resources, but not hugepages."""
    native = "/" not in name or name.split("/", 1)[0].endswith("kubernetes.io")
    return native and not name.startswith(HUGEPAGES_PREFIX)


def _is_resource_name(name: str) -> bool:
    if name in STANDARD_RESOURCES or name.startswith(HUGEPAGES_PREFIX):
        return True
    return "/" in name and not names.qualified_name(name)
