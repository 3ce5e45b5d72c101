"""spec.securityContext.sysctls, checked as the API server and the kubelet's sysctl admission check them.

Only the kubelet's safe, namespaced sysctls are allowed (nodeagent has no `allowedUnsafeSysctls`): any other
is refused with the kubelet's SysctlForbidden wording, and so is a net.* sysctl on the node's network or an
IPC sysctl on the node's IPC namespace, which would change the node itself.

    validate_sysctls(spec) -> [FieldError('spec.securityContext.sysctls[0]',
                                          'Forbidden: SysctlForbidden: forbidden sysctl: "kernel.msgmax" ...')]
"""

from __future__ import annotations

import re

from nodeagent.api.fielderrors import duplicate, forbidden, invalid, required
from nodeagent.api.model import PodSpec
from nodeagent.errors import FieldError

# pkg/kubelet/sysctl/safe_sysctls.go (Kubernetes 1.34): all namespaced
SAFE_SYSCTLS = (
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
)
IPC_PREFIXES = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")
NAME = re.compile(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
MAX_NAME = 253


def canonical(name: str) -> str:
    """A name with "/" separators in the "." form (the API allows both: net/ipv4/tcp_rmem)."""
    return name.replace("/", ".") if "/" in name and not name.startswith("/") else name


def validate_sysctls(spec: PodSpec) -> list[FieldError]:
    context = spec.security_context
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, sysctl in enumerate(context.sysctls or [] if context is not None else []):
        path = f"spec.securityContext.sysctls[{index}]"
        if not sysctl.name:
            errors.append(required(f"{path}.name"))
            continue
        if len(sysctl.name) > MAX_NAME or not NAME.match(sysctl.name):
            errors.append(invalid(f"{path}.name", sysctl.name, "must have at most 253 characters and match regex "
                                                              f"{NAME.pattern}"))
            continue
        name = canonical(sysctl.name)
        if name in seen:
            errors.append(duplicate(f"{path}.name", sysctl.name))
        seen.add(name)
        if sysctl.value is None:
            errors.append(required(f"{path}.value"))
        if name not in SAFE_SYSCTLS:
            errors.append(forbidden(path, f'SysctlForbidden: forbidden sysctl: "{sysctl.name}" not allowlisted'))
        elif spec.host_network and name.startswith("net."):
            errors.append(forbidden(path, f'SysctlForbidden: sysctl "{sysctl.name}" not allowed with host net '
                                          "enabled"))
        elif spec.host_ipc and name.startswith(IPC_PREFIXES):
            errors.append(forbidden(path, f'SysctlForbidden: sysctl "{sysctl.name}" not allowed with host ipc '
                                          "enabled"))
    return errors


def pod_sysctls(spec: PodSpec) -> tuple[tuple[str, str], ...]:
    """The pod's sysctls (validated), in the "." form runc and CRI take."""
    context = spec.security_context
    return tuple((canonical(s.name or ""), s.value or "") for s in (context.sysctls or [] if context else []))
