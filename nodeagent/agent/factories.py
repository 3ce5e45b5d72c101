"""The agent's parts that touch the node, made from the configuration: cgroup driver, runtime, kernel log,
node facts, pod networks. Apart from the Agent, so that it can be built on fakes (tests/unit)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field

from nodeagent.cgroups.detect import CgroupLayout, choose_driver, detect_layout, systemd_is_init
from nodeagent.cgroups.driver import CgroupDriver, CgroupfsDriver
from nodeagent.cgroups.fs1 import V1Hierarchy
from nodeagent.cgroups.fs2 import V2Hierarchy
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.cgroups.warmth import AttachWarmth, kept_warm
from nodeagent.config import KubeletConfig
from nodeagent.errors import NodeAgentError
from nodeagent.network.pods import PodNetworks
from nodeagent.node import read_node_info
from nodeagent.plan.settings import NodeInfo
from nodeagent.runtime.base import Runtime
from nodeagent.runtime.process import ProcessRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeParts:
    """What the Agent runs on: made by make_node_parts on a real node, by fakes in the fast tests."""

    cgroups: CgroupDriver
    runtime: Runtime
    kernel_log: KernelLog | None  # None: OOM victims are not named
    node: NodeInfo
    address: str  # the node's address (status.hostIP)
    networks: PodNetworks | None
    attach_warmth: AttachWarmth = field(default_factory=lambda: AttachWarmth(None))  # off on fakes


def make_node_parts(config: KubeletConfig) -> NodeParts:
    """The state directory, the cgroup driver and runtime this node and configuration call for."""
    os.makedirs(config.nodeagent.state_dir, mode=0o700, exist_ok=True)
    kernel_log = KernelLog()
    layout = detect_layout()
    cgroups = make_cgroup_driver(config, layout)
    return NodeParts(cgroups=cgroups, runtime=make_runtime(config, cgroups, kernel_log), kernel_log=kernel_log,
                     node=read_node_info(config), address=host_address(), networks=make_pod_networks(config),
                     attach_warmth=kept_warm(layout))


class StartError(NodeAgentError):
    """The agent cannot start on this node with this configuration; the message says what to change."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise StartError("nodeagent run needs root: it creates cgroups and starts processes as other users")


def preflight(config: KubeletConfig) -> None:
    if config.fail_swap_on:
        with open("/proc/swaps") as handle:
            swaps = [line.strip() for line in handle.readlines()[1:] if line.strip()]
        if swaps:
            raise StartError("running with swap on is not supported, please disable swap! or set --fail-swap-on "
                             f"flag to false. /proc/swaps contained: {swaps}")


def make_cgroup_driver(config: KubeletConfig, layout: CgroupLayout) -> CgroupDriver:
    driver, why = choose_driver(config.cgroup_driver)
    log.info("cgroups: %s, driver %s (%s)", layout.name, driver, why)
    hierarchy: V1Hierarchy | V2Hierarchy
    if layout.version == 2:
        assert layout.v2_mount is not None
        hierarchy = V2Hierarchy(layout.v2_mount)
    else:
        hierarchy = V1Hierarchy(layout.v1_mounts, runtime_mounts=layout.mounts)
    if driver == "cgroupfs":
        return CgroupfsDriver(hierarchy)
    bus = config.nodeagent.systemd_bus_address
    if bus is None and not systemd_is_init():
        raise StartError(f"cgroupDriver systemd ({why}) needs systemd as PID 1, and it is not: set cgroupDriver: "
                         "cgroupfs (or nodeagent.systemdBusAddress to reach a systemd elsewhere)")
    from nodeagent.cgroups.systemd import SystemdDriver  # here: its D-Bus client costs ~40 ms to import

    return SystemdDriver(hierarchy, bus_address=bus)


def make_pod_networks(config: KubeletConfig) -> PodNetworks | None:
    """nodeagent's own pod networks, for the runtimes that have none (with cri, the runtime's CNI)."""
    network = config.nodeagent.network
    if config.nodeagent.runtime == "cri" or not network.enabled:
        return None
    logging.getLogger("pyroute2").setLevel(logging.INFO)  # at DEBUG it logs every netlink message
    return PodNetworks(state_dir=config.nodeagent.state_dir, bridge=network.bridge, pod_cidr=network.pod_cidr)


def make_runtime(config: KubeletConfig, cgroups: CgroupDriver, kernel_log: KernelLog) -> Runtime:
    """The configured runtime. The others' modules (gRPC, the image store) are not even imported: an agent
    starts faster and smaller without them."""
    if config.nodeagent.runtime == "cri":
        from nodeagent.runtime.cri.runtime import CriRuntime

        return CriRuntime(config.container_runtime_endpoint, cgroup_version=cgroups.version,
                          registry_auth_file=config.nodeagent.registry_auth_file)
    if config.nodeagent.runtime == "runc":
        return make_runc_runtime(config, cgroups, kernel_log)
    return ProcessRuntime(cgroups, config.nodeagent.state_dir, kernel_log)


def make_runc_runtime(config: KubeletConfig, cgroups: CgroupDriver, kernel_log: KernelLog) -> Runtime:
    from nodeagent.images.store import ImageStore
    from nodeagent.runtime.runc import RuncRuntime

    agent = config.nodeagent
    images = ImageStore(os.path.join(agent.state_dir, "images"), registry_auth_file=agent.registry_auth_file,
                        insecure_registries=agent.insecure_registries, unpack_limits=agent.unpack_limits())
    try:
        return RuncRuntime(cgroups, agent.state_dir, images, runc_path=agent.runc_path, kernel_log=kernel_log,
                           systemd_cgroup=cgroups.name == "systemd")
    except NodeAgentError as exc:
        raise StartError(str(exc)) from exc


def host_address() -> str:
    """The address other machines reach this node at (the source of the default route)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        return str(probe.getsockname()[0])
    return "127.0.0.1"
