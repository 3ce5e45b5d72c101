"""Pods and containers in CRI's terms, as the kubelet's kuberuntime spells them. Pure: specs in, messages out.

    sandbox_config(PodSandboxSpec, attempt)         -> PodSandboxConfig (labels io.kubernetes.pod.*)
    container_config(ContainerSpec, sandbox, v)     -> ContainerConfig (labels io.kubernetes.container.*,
                                                       LinuxContainerResources from the cgroup plan)
    container_exit(ContainerStatus)                 -> ContainerExit (reason OOMKilled as the runtime says)

Besides the kubelet's labels, everything nodeagent creates carries app.kubernetes.io/managed-by=nodeagent,
so that it finds its own sandboxes again after a restart and never touches anybody else's.
"""

from __future__ import annotations

import datetime as dt
import os

from nodeagent.plan.resource_config import ResourceConfig, hugepage_unit_size, render_v2
from nodeagent.runtime.base import ContainerExit, ContainerSpec, PodSandboxSpec
from nodeagent.runtime.cri import api_pb2 as cri

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
MANAGED_BY = "app.kubernetes.io/managed-by"
NODEAGENT = "nodeagent"
OURS = {MANAGED_BY: NODEAGENT}

PROTOCOLS = {"TCP": cri.TCP, "UDP": cri.UDP, "SCTP": cri.SCTP}
PROPAGATION = {"None": cri.PROPAGATION_PRIVATE, "HostToContainer": cri.PROPAGATION_HOST_TO_CONTAINER,
               "Bidirectional": cri.PROPAGATION_BIDIRECTIONAL}
UNIFIED_V2 = ("memory.swap.max", "memory.min", "memory.high", "memory.oom.group")  # no CRI field of their own


def pod_labels(uid: str, name: str, namespace: str) -> dict[str, str]:
    return {POD_NAME: name, POD_NAMESPACE: namespace, POD_UID: uid, **OURS}


def namespace_options(host_network: bool, host_pid: bool = False, host_ipc: bool = False,
                      share_pid: bool = False) -> cri.NamespaceOption:
    """The pod's network, IPC namespace and a PID namespace per container (the pod's with
    shareProcessNamespace), or the node's (hostNetwork, hostIPC, hostPID), as the kubelet's namespacesForPod."""
    pid = cri.NODE if host_pid else cri.POD if share_pid else cri.CONTAINER
    return cri.NamespaceOption(network=cri.NODE if host_network else cri.POD, pid=pid,
                               ipc=cri.NODE if host_ipc else cri.POD)


def sandbox_config(pod: PodSandboxSpec, attempt: int) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=pod.name, uid=pod.uid, namespace=pod.namespace, attempt=attempt),
        hostname="" if pod.host_network else pod.hostname,  # a hostNetwork pod has the node's
        log_directory=pod.log_directory,
        dns_config=cri.DNSConfig(servers=list(pod.dns.nameservers), searches=list(pod.dns.searches),
                                 options=list(pod.dns.options)),
        port_mappings=[cri.PortMapping(protocol=PROTOCOLS[port.protocol], container_port=port.container_port,
                                       host_port=port.host_port, host_ip=port.host_ip or "")
                       for port in pod.port_mappings],
        labels={**pod.labels, **pod_labels(pod.uid, pod.name, pod.namespace)},
        annotations=dict(pod.annotations),
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=pod.cgroup_parent, sysctls=dict(pod.sysctls),
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespace_options(
                                                                 pod.host_network, pod.host_pid, pod.host_ipc,
                                                                 pod.share_process_namespace),
                                                             privileged=pod.privileged)),
    )


def seccomp_profile(spec: ContainerSpec) -> cri.SecurityProfile:
    """CRI's seccomp field, set always (Unconfined too), as the kubelet sets it."""
    if spec.seccomp_profile == "Localhost":
        return cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost,
                                   localhost_ref=spec.seccomp_localhost or "")
    default = spec.seccomp_profile == "RuntimeDefault"
    kind = cri.SecurityProfile.RuntimeDefault if default else cri.SecurityProfile.Unconfined
    return cri.SecurityProfile(profile_type=kind)


def container_config(spec: ContainerSpec, sandbox: cri.PodSandboxConfig, cgroup_version: int) -> cri.ContainerConfig:
    security = cri.LinuxContainerSecurityContext(
        capabilities=cri.Capability(add_capabilities=list(spec.capabilities_add),
                                    drop_capabilities=list(spec.capabilities_drop)),
        privileged=spec.privileged,
        namespace_options=sandbox.linux.security_context.namespace_options,
        readonly_rootfs=spec.read_only_root,
        supplemental_groups=list(spec.supplemental_groups),
        no_new_privs=spec.allow_privilege_escalation is False,
    )
    security.seccomp.CopyFrom(seccomp_profile(spec))
    if spec.run_as_user is not None:
        security.run_as_user.value = spec.run_as_user
    if spec.run_as_group is not None:
        security.run_as_group.value = spec.run_as_group
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=spec.name, attempt=spec.attempt),
        image=cri.ImageSpec(image=spec.image, user_specified_image=spec.image),
        command=list(spec.command), args=list(spec.args), working_dir=spec.working_dir or "",
        envs=[cri.KeyValue(key=key, value=value) for key, value in spec.env.items()],
        mounts=[cri.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.read_only,
                          propagation=PROPAGATION[m.propagation])
                for m in spec.mounts],
        labels={**pod_labels(spec.pod_uid, spec.pod_name, spec.pod_namespace), CONTAINER_NAME: spec.name},
        annotations={RESTART_COUNT: str(spec.attempt)},
        log_path=os.path.relpath(spec.log_path, sandbox.log_directory),
        stdin=spec.stdin, stdin_once=spec.stdin_once, tty=spec.tty,
        linux=cri.LinuxContainerConfig(
            resources=linux_resources(spec.cgroup.resources, spec.oom_score_adj, cgroup_version),
            security_context=security),
    )


def linux_resources(config: ResourceConfig, oom_score_adj: int | None,
                    cgroup_version: int) -> cri.LinuxContainerResources:
    """The plan's values in CRI's fields (0: unset); on v2, the rest as `unified` files."""
    unified = {}
    if cgroup_version == 2:
        unified = {name: value for name, value in render_v2(config).items() if name in UNIFIED_V2}
    return cri.LinuxContainerResources(
        cpu_period=_positive(config.cpu_period_us),
        cpu_quota=_positive(config.cpu_quota_us),
        cpu_shares=_positive(config.cpu_shares),
        memory_limit_in_bytes=_positive(config.memory_bytes),
        memory_swap_limit_in_bytes=_positive(config.memsw_bytes),
        oom_score_adj=oom_score_adj or 0,
        hugepage_limits=[cri.HugepageLimit(page_size=hugepage_unit_size(size), limit=limit)
                         for size, limit in config.hugepage_limits or ()],
        unified=unified,
    )


def _positive(value: int | None) -> int:
    """CRI's 0 for unset; UNLIMITED (-1) is unset there too."""
    return value if value is not None and value > 0 else 0


def timestamp(nanoseconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.UTC)


def container_exit(status: cri.ContainerStatus, runtime_name: str) -> ContainerExit:
    finished = timestamp(status.finished_at) if status.finished_at else dt.datetime.now(dt.UTC)
    return ContainerExit(exit_code=status.exit_code, finished_at=finished, oom_killed=status.reason == "OOMKilled",
                         started_at=timestamp(status.started_at) if status.started_at else None,
                         container_id=f"{runtime_name}://{status.id}")
