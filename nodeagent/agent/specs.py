"""The specs a pod's sandbox and containers are started from, built from the pod, its plan and the node.

`PodContext` is what a pod worker never changes: its pod, its resource plan and the node's services. The
container's spec writes the pod's etc-hosts (cri) in a thread, off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from nodeagent.agent import volumes
from nodeagent.agent.env import PodAddresses, command_line, container_env
from nodeagent.agent.etcfiles import etc_files, pod_dns_of
from nodeagent.agent.security import security_fields
from nodeagent.agent.services import NodeServices
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container
from nodeagent.api.sysctls import pod_sysctls
from nodeagent.errors import RuntimeStartError
from nodeagent.network.dnsfiles import pod_hostname
from nodeagent.network.model import HostPort
from nodeagent.plan import paths
from nodeagent.plan.pod import ResourcePlan
from nodeagent.runtime.base import ContainerSpec, Mount, PodSandboxSpec
from nodeagent.runtime.logs import container_log_file, pod_log_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodContext:
    """A pod worker's fixed facts: its pod, its plan, the node's services."""

    pod: StaticPod
    plan: ResourcePlan
    services: NodeServices

    @property
    def key(self) -> str:
        return self.pod.key

    @property
    def own_network(self) -> bool:
        """The pod has a network namespace of its own (set up by nodeagent)."""
        return self.services.networks is not None and not self.pod.pod.spec.host_network

    @property
    def pod_dir(self) -> str:
        """The pod's directory in the state directory (volumes, /etc files, termination messages)."""
        return volumes.pod_dir(self.services.state_dir, self.pod.uid)

    @cached_property
    def dumped(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The pod's metadata and spec as JSON, for its status: the pod never changes, and the API dumped every
        pod's twice for each list (half of a `get pods` at 1,000 pods). Read-only: copy before changing."""
        pod = self.pod.pod
        return pod.metadata.model_dump(by_alias=True, exclude_none=True), pod.spec.model_dump(by_alias=True,
                                                                                               exclude_none=True)

    @cached_property
    def log_dir(self) -> str:
        """The pod's log directory (the log rotation asks for every container's log path every second)."""
        return pod_log_dir(self.services.logs_dir, self.pod.namespace, self.pod.name, self.pod.uid)

    def log_path(self, container: str, attempt: int) -> str:
        return container_log_file(self.log_dir, container, attempt)

    def sandbox_spec(self) -> PodSandboxSpec:
        services, spec, meta = self.services, self.pod.pod.spec, self.pod.pod.metadata
        settings = services.settings
        parent = self.plan.pod.path if self.plan.pod else paths.spell(paths.node_name(settings), settings.cgroup_driver)
        return PodSandboxSpec(
            name=self.pod.name, namespace=self.pod.namespace, uid=self.pod.uid,
            hostname=pod_hostname(spec.hostname or self.pod.name),
            log_directory=self.log_dir,
            cgroup_parent=parent, host_network=spec.host_network,
            dns=pod_dns_of(spec, read_node_file(services.resolv_conf)), port_mappings=tuple(host_ports(self.pod)),
            labels=dict(meta.labels or {}), annotations=dict(meta.annotations or {}),
            privileged=any(c.security_context is not None and c.security_context.privileged
                           for c in [*(spec.init_containers or []), *(spec.containers or [])]),
            host_pid=spec.host_pid, host_ipc=spec.host_ipc, sysctls=pod_sysctls(spec),
            share_process_namespace=spec.share_process_namespace is True)

    async def container_spec(self, container: Container, attempt: int, *, addresses: PodAddresses,
                             pod_volumes: volumes.PodVolumes | None) -> ContainerSpec:
        services = self.services
        name = container.valid_name
        env = container_env(self.pod, container, addresses, services.node)
        command, args = command_line(container, env)
        cgroup = self.plan.container(name)
        mounts = pod_volumes.mounts(container) if pod_volumes is not None else ()
        hostname = pod_hostname(self.pod.pod.spec.hostname or self.pod.name)
        netns = None
        if self.own_network:
            assert services.networks is not None
            lease = services.networks.lease(self.pod.uid)
            if lease is None:  # never on the host's network by mistake
                raise RuntimeStartError("CreateContainerError", "the pod's network is gone (no address lease)")
            netns = lease.netns
        spec = self.pod.pod.spec
        own_ip = self.own_network or (services.sandboxes is not None and not spec.host_network)
        hosts, resolv = etc_files(spec, hostname, addresses.pod_ip if own_ip else None,
                                  read_node_file(services.resolv_conf),
                                  read_node_file("/etc/hosts") if spec.host_aliases else "")
        if services.sandboxes is not None and hosts is not None and pod_volumes is not None:
            # as the kubelet's etc-hosts: its hostAliases reach a container whose network the runtime makes
            mounts = (*mounts, await asyncio.to_thread(etc_hosts_mount, pod_volumes.pod_dir, hosts))
        return ContainerSpec(
            pod_name=self.pod.name, pod_namespace=self.pod.namespace, pod_uid=self.pod.uid, name=name,
            attempt=attempt, image=container.image or "", command=command, args=args, env=env,
            working_dir=container.working_dir,
            mounts=mounts, cgroup=cgroup, oom_score_adj=cgroup.oom_score_adj,
            log_path=self.log_path(name, attempt),
            hostname=hostname, netns=netns, hosts_file=hosts, resolv_conf=resolv,
            monitor_cgroup=self.plan.monitor.path if self.plan.monitor else None,
            pull_policy=container.image_pull_policy or "IfNotPresent",
            stdin=bool(container.stdin), stdin_once=bool(container.stdin_once), tty=bool(container.tty),
            **security_fields(self.pod.pod.spec, container, services.state_dir),
        )


def host_ports(pod: StaticPod) -> list[HostPort]:
    """The ports the pod's containers publish on the node (the kubelet's port mappings)."""
    return [HostPort(container_port=port.container_port or 0, host_port=port.host_port, protocol=port.protocol,
                     host_ip=port.host_ip)
            for container in pod.pod.spec.containers or [] for port in container.ports or []
            if port.host_port]


def etc_hosts_mount(pod_dir: str, content: str) -> Mount:
    """<pod dir>/etc-hosts, written and mounted over the container's /etc/hosts (blocking: in a thread)."""
    os.makedirs(pod_dir, mode=0o700, exist_ok=True)
    path = os.path.join(pod_dir, "etc-hosts")
    with open(path, "w") as handle:
        handle.write(content)
    return Mount(host_path=path, container_path="/etc/hosts")


def read_node_file(path: str) -> str:
    """The node's resolv.conf or hosts file (small files in /etc); a node without one gives its pods none of its
    entries."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as exc:
        log.warning("reading %s for the pods' /etc files: %s", path, exc.strerror)
        return ""
