"""A container's environment and command line as the kubelet builds them.

Pure: env values, the downward API (fieldRef, resourceFieldRef) and $(VAR) expansion in env
values, command and args (Kubernetes' expansion: `$$` is a literal `$`, unknown names stay as written).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from nodeagent.api.k8s import ResourceFieldSelector
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container, EnvVar
from nodeagent.plan.settings import NodeInfo


@dataclass(frozen=True, slots=True)
class PodAddresses:
    host_ip: str
    pod_ip: str


def expand(text: str, values: Mapping[str, str]) -> str:
    out = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) >= 0:
            name = text[i + 2:end]
            out.append(values.get(name, text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def container_env(pod: StaticPod, container: Container, addresses: PodAddresses, node: NodeInfo) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.env or []:
        assert var.name is not None  # validated
        env[var.name] = _value(var, env, pod, container, addresses, node)
    return env


def _value(var: EnvVar, env: Mapping[str, str], pod: StaticPod, container: Container, addresses: PodAddresses,
           node: NodeInfo) -> str:
    source = var.value_from
    if source is None:
        return expand(var.value or "", env)
    if source.field_ref is not None:
        return field_value(source.field_ref.field_path or "", pod, addresses)
    if source.resource_field_ref is not None:
        return resource_value(source.resource_field_ref, pod, container, node)
    return ""


def field_value(path: str, pod: StaticPod, addresses: PodAddresses) -> str:
    meta = pod.pod.metadata
    simple = {
        "metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
        "spec.nodeName": pod.pod.spec.node_name or "", "spec.serviceAccountName": "",
        "status.hostIP": addresses.host_ip, "status.hostIPs": addresses.host_ip,
        "status.podIP": addresses.pod_ip, "status.podIPs": addresses.pod_ip,
    }
    if path in simple:
        return simple[path]
    base, _, key = path.partition("[")
    key = key.removesuffix("]").strip("'\"")
    if base == "metadata.labels":
        return (meta.labels or {}).get(key, "")
    if base == "metadata.annotations":
        return (meta.annotations or {}).get(key, "")
    return ""


def resource_value(ref: ResourceFieldSelector, pod: StaticPod, container: Container, node: NodeInfo) -> str:
    """limits.* default to the node's allocatable amount when the container sets none, as in Kubernetes."""
    target = container
    if ref.container_name:
        target = next((c for c in pod.pod.all_containers() if c.name == ref.container_name), container)
    kind, _, resource = (ref.resource or "").partition(".")
    values = (target.resources.limits if kind == "limits" else target.resources.requests) or {}
    quantity = values.get(resource)
    divisor = ref.divisor
    if resource == "cpu":
        milli = quantity.milli_value() if quantity is not None else (node.pod_cpu_millis if kind == "limits" else 0)
        return str(math.ceil(milli / (divisor.milli_value() if divisor else 1000)))
    allocatable = node.pod_memory_bytes if resource == "memory" else node.ephemeral_storage_bytes
    amount = quantity.value() if quantity is not None else (allocatable if kind == "limits" else 0)
    return str(math.ceil(amount / (divisor.value() if divisor else 1)))


def command_line(container: Container, env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(command, args) with $(VAR) references expanded."""
    return (tuple(expand(part, env) for part in container.command or []),
            tuple(expand(part, env) for part in container.args or []))
