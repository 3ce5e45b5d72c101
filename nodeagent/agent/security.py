"""The effective securityContext of one container (the kubelet's DetermineEffectiveSecurityContext): the
container's fields over the pod's, as the ContainerSpec fields every runtime enforces.

    security_fields(pod.spec, container) -> {"run_as_user": 1000, ..., "capabilities_drop": ("ALL",)}

A field no runtime here can honour is refused (CreateContainerConfigError naming it and why), never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypedDict, TypeVar

from nodeagent.api.model import Container, Pod, PodSpec
from nodeagent.api.sysctls import pod_sysctls
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
    seccomp_profile: str
    seccomp_localhost: str | None
    host_pid: bool
    host_ipc: bool
    share_process_namespace: bool
    sysctls: tuple[tuple[str, str], ...]


def security_fields(pod: PodSpec, container: Container, state_dir: str) -> SecurityFields:
    """runAsUser, runAsGroup, runAsNonRoot and seccompProfile: the container's, else the pod's (no
    seccompProfile: Unconfined, the kubelet's default without seccompDefault; a Localhost profile is the file
    <state dir>/seccomp/<localhostProfile>, as the kubelet's <root dir>/seccomp). Supplemental groups: the
    pod's supplementalGroups then its fsGroup. The rest exist on the container only."""
    pod_sc, sc = pod.security_context, container.security_context
    seccomp = _first(sc.seccomp_profile if sc else None, pod_sc.seccomp_profile if pod_sc else None)
    seccomp_type = seccomp.type if seccomp is not None and seccomp.type else "Unconfined"
    localhost = seccomp.localhost_profile if seccomp is not None and seccomp_type == "Localhost" else None
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
        seccomp_profile=seccomp_type,
        seccomp_localhost=os.path.join(state_dir, "seccomp", localhost) if localhost is not None else None,
        host_pid=pod.host_pid, host_ipc=pod.host_ipc, sysctls=pod_sysctls(pod),
        share_process_namespace=pod.share_process_namespace is True,
    )


def _first(*values: T | None) -> T | None:
    """The first value that is set (a container's field, then its pod's)."""
    return next((value for value in values if value is not None), None)


def refuse_unenforceable(pod: Pod, container: Container, apparmor_enabled: Callable[[], bool]) -> None:
    """RuntimeStartError (CreateContainerConfigError) for the first field in REFUSED that asks for something,
    on the container or the pod, and for an AppArmor profile other than Unconfined."""
    _refuse_apparmor(pod, container, apparmor_enabled)
    for where, context in (("securityContext", container.security_context),
                           ("spec.securityContext", pod.spec.security_context)):
        if context is None:
            continue
        selinux = context.se_linux_options
        for field, value in (("seLinuxOptions", selinux and any(selinux.model_dump().values())),
                             ("windowsOptions", context.windows_options)):
            if value:  # an empty object asks for nothing
                raise RuntimeStartError("CreateContainerConfigError", f"{where}.{field}: {REFUSED[field]}")


APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"  # deprecated; the kubelet still reads it
APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"


def apparmor_profile(pod: Pod, container: Container) -> str:
    """The container's AppArmor profile type, as the kubelet's apparmor.GetProfile: the container's field, the
    pod's, then the deprecated annotation ("runtime/default", "localhost/<name>", "unconfined");
    Unconfined when none says."""
    sc, pod_sc = container.security_context, pod.spec.security_context
    profile = _first(sc.app_armor_profile if sc else None, pod_sc.app_armor_profile if pod_sc else None)
    if profile is not None and profile.type:
        return profile.type
    annotation = (pod.metadata.annotations or {}).get(APPARMOR_ANNOTATION + container.valid_name, "unconfined")
    return {"runtime/default": "RuntimeDefault", "unconfined": "Unconfined"}.get(
        annotation, "Localhost" if annotation.startswith("localhost/") else annotation)


def host_has_apparmor() -> bool:
    try:
        with open(APPARMOR_ENABLED) as handle:
            return handle.read(8).strip() == "Y"
    except OSError:
        return False


def _refuse_apparmor(pod: Pod, container: Container, apparmor_enabled: Callable[[], bool]) -> None:
    profile = apparmor_profile(pod, container)
    if profile == "Unconfined":
        return
    if not apparmor_enabled():  # the kubelet's AppArmor admission, word for word
        raise RuntimeStartError("CreateContainerConfigError",
                                "Cannot enforce AppArmor: AppArmor is not enabled on the host")
    raise RuntimeStartError("CreateContainerConfigError", f"appArmorProfile {profile}: nodeagent applies no AppArmor "
                                                          "profiles yet (on any runtime)")
