"""The effective securityContext of one container (the kubelet's DetermineEffectiveSecurityContext): the
container's fields over the pod's, as the ContainerSpec fields every runtime enforces.

    security_fields(pod.spec, container) -> {"run_as_user": 1000, ..., "capabilities_drop": ("ALL",)}

A field no runtime here can honour is refused (CreateContainerConfigError naming it and why), never ignored.
"""

from __future__ import annotations

from typing import TypedDict, TypeVar

from nodeagent.api.model import Container, PodSpec
from nodeagent.errors import RuntimeStartError

T = TypeVar("T")
REFUSED = {
    "seLinuxOptions": "nodeagent applies no SELinux labels (on any runtime): the container would not run with "
                      "the label asked for",
    "windowsOptions": "Windows options cannot apply to a container on a Linux node",
}


class SecurityFields(TypedDict):
    run_as_user: int | None
    run_as_group: int | None
    run_as_non_root: bool
    supplemental_groups: tuple[int, ...]
    privileged: bool
    read_only_root: bool
    capabilities_add: tuple[str, ...]
    capabilities_drop: tuple[str, ...]
    allow_privilege_escalation: bool | None


def security_fields(pod: PodSpec, container: Container) -> SecurityFields:
    """runAsUser, runAsGroup and runAsNonRoot: the container's, else the pod's. Supplemental groups: the
    pod's supplementalGroups then its fsGroup. The rest exist on the container only."""
    pod_sc, sc = pod.security_context, container.security_context
    user = _first(sc.run_as_user if sc else None, pod_sc.run_as_user if pod_sc else None)
    group = _first(sc.run_as_group if sc else None, pod_sc.run_as_group if pod_sc else None)
    non_root = _first(sc.run_as_non_root if sc else None, pod_sc.run_as_non_root if pod_sc else None)
    groups = tuple(pod_sc.supplemental_groups or ()) if pod_sc is not None else ()
    if pod_sc is not None and pod_sc.fs_group is not None:
        groups = (*groups, pod_sc.fs_group)
    caps = sc.capabilities if sc is not None else None
    return SecurityFields(
        run_as_user=user, run_as_group=group, run_as_non_root=non_root is True,
        supplemental_groups=groups,
        privileged=bool(sc and sc.privileged), read_only_root=bool(sc and sc.read_only_root_filesystem),
        capabilities_add=tuple(caps.add or ()) if caps is not None else (),
        capabilities_drop=tuple(caps.drop or ()) if caps is not None else (),
        allow_privilege_escalation=sc.allow_privilege_escalation if sc is not None else None,
    )


def _first(*values: T | None) -> T | None:
    """The first value that is set (a container's field, then its pod's)."""
    return next((value for value in values if value is not None), None)


def refuse_unenforceable(pod: PodSpec, container: Container) -> None:
    """RuntimeStartError (CreateContainerConfigError) for the first field in REFUSED that asks for something,
    on the container or the pod."""
    for where, context in (("securityContext", container.security_context),
                           ("spec.securityContext", pod.security_context)):
        if context is None:
            continue
        selinux = context.se_linux_options
        for field, value in (("seLinuxOptions", selinux and any(selinux.model_dump().values())),
                             ("windowsOptions", context.windows_options)):
            if value:  # an empty object asks for nothing
                raise RuntimeStartError("CreateContainerConfigError", f"{where}.{field}: {REFUSED[field]}")
