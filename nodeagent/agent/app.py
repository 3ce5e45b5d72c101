"""The daemon: sources -> desired pods -> pod workers -> status API, under one task group.

    nodeagent run: check the node, pick the cgroup driver and runtime, start the API, read the
    sources, keep the pods; SIGTERM/SIGINT stop the agent (never the pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from nodeagent.agent.clock import Clock, SystemClock
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import WARNING, EventRecorder, ObjectRef
from nodeagent.agent.pods import PodManager
from nodeagent.agent.store import PodStore
from nodeagent.agent.worker import NodeServices
from nodeagent.api.manifest import StaticPod
from nodeagent.cgroups.detect import choose_driver, detect_layout
from nodeagent.cgroups.driver import CgroupDriver, CgroupfsDriver
from nodeagent.cgroups.fs1 import V1Hierarchy
from nodeagent.cgroups.fs2 import V2Hierarchy
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.config import KubeletConfig
from nodeagent.errors import NodeAgentError
from nodeagent.node import read_node_info
from nodeagent.plan.settings import CgroupDriverName
from nodeagent.runtime.base import Runtime
from nodeagent.runtime.process import ProcessRuntime
from nodeagent.server import StatusServer
from nodeagent.sources.files import FileSource, ManifestFile
from nodeagent.sources.merge import SourceProblem, merge_files

log = logging.getLogger(__name__)


class StartError(NodeAgentError):
    """The agent cannot start on this node with this configuration; the message says what to change."""


def preflight(config: KubeletConfig) -> None:
    if os.geteuid() != 0:
        raise StartError("nodeagent run needs root: it creates cgroups and starts processes as other users")
    if config.fail_swap_on:
        with open("/proc/swaps") as handle:
            swaps = [line.strip() for line in handle.readlines()[1:] if line.strip()]
        if swaps:
            raise StartError("running with swap on is not supported, please disable swap! or set --fail-swap-on "
                             f"flag to false. /proc/swaps contained: {swaps}")


def make_cgroup_driver(config: KubeletConfig) -> CgroupDriver:
    driver, why = choose_driver(config.cgroup_driver)
    if driver == "systemd":
        raise StartError(f"cgroupDriver systemd ({why}) is not available in this version of nodeagent: "
                         "set cgroupDriver: cgroupfs")
    layout = detect_layout()
    log.info("cgroups: %s, driver %s (%s)", layout.name, driver, why)
    if layout.version == 2:
        assert layout.v2_mount is not None
        return CgroupfsDriver(V2Hierarchy(layout.v2_mount))
    return CgroupfsDriver(V1Hierarchy(layout.v1_mounts))


def make_runtime(config: KubeletConfig, cgroups: CgroupDriver, kernel_log: KernelLog) -> Runtime:
    if config.nodeagent.runtime != "process":
        raise StartError(f"nodeagent.runtime {config.nodeagent.runtime} is not available in this version of "
                         "nodeagent: set nodeagent.runtime: process")
    return ProcessRuntime(cgroups, config.nodeagent.state_dir, kernel_log)


def host_address() -> str:
    """The address other machines reach this node at (the source of the default route)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        return str(probe.getsockname()[0])
    return "127.0.0.1"


@dataclass
class Agent:
    config: KubeletConfig
    clock: Clock = field(default_factory=SystemClock)
    on_change: Callable[[], None] = lambda: None
    on_ready: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        os.makedirs(self.config.nodeagent.state_dir, mode=0o700, exist_ok=True)
        self.kernel_log = KernelLog()
        self.cgroups = make_cgroup_driver(self.config)
        self.runtime = make_runtime(self.config, self.cgroups, self.kernel_log)
        self.events = EventRecorder(self.clock.now)
        node = read_node_info(self.config)
        driver = CgroupDriverName(self.cgroups.name)
        address = host_address()
        self.services = NodeServices(
            runtime=self.runtime, cgroups=self.cgroups, events=self.events, clock=self.clock, node=node,
            settings=self.config.plan_settings(cgroup_version=self.cgroups.version, cgroup_driver=driver),
            state_dir=self.config.nodeagent.state_dir, logs_dir=self.config.pod_logs_path,
            addresses=PodAddresses(host_ip=address, pod_ip=address), on_change=self._changed,
            persist=lambda worker: self.pods.persist(worker),
        )
        self.pods = PodManager(self.services, PodStore(self.config.nodeagent.state_dir))
        self.node_name = self.config.node_name
        self._last_good: dict[str, list[StaticPod]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._stop = asyncio.Event()
        self._first_sync = asyncio.Event()

    def _changed(self) -> None:
        self.on_change()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until stop() (or SIGTERM/SIGINT): the API, the file source and the pods."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        os.makedirs(self.config.nodeagent.state_dir, mode=0o700, exist_ok=True)
        server = StatusServer(self.pods, self.events, self.cgroups, node_name=self.node_name,
                              logs_dir=self.config.pod_logs_path, socket_path=self.config.nodeagent.socket,
                              socket_group=self.config.nodeagent.socket_group)
        await server.start()
        await self.pods.start()
        old_bundles = self.pods.bundles()
        restored = self.pods.restore()
        source = FileSource(self.config.static_pod_path, node_name=self.node_name,
                            frequency_seconds=self.config.file_check_frequency / 1e9)
        reading = asyncio.create_task(source.run(self._on_files), name="file source")
        stopping = asyncio.create_task(self._stop.wait())
        try:
            first = asyncio.create_task(self._first_sync.wait())
            await asyncio.wait({first, stopping, reading}, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                await self.pods.clean_orphans(old_bundles)
                log.info("nodeagent is running: node %s, runtime %s, cgroups v%d/%s, %d pods (%d restored), "
                         "manifests in %s, API on %s", self.node_name, self.runtime.name, self.cgroups.version,
                         self.cgroups.name, len(self.pods.workers), restored, self.config.static_pod_path,
                         self.config.nodeagent.socket)
                self.on_ready()
            first.cancel()
            done, _ = await asyncio.wait({stopping, reading}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                reading.result()  # the source failed: let the error stop the agent
        finally:
            log.info("nodeagent is stopping; pods keep running")
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            stopping.cancel()
            await self.pods.close()
            await server.stop()
            self.kernel_log.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _on_files(self, files: list[ManifestFile]) -> None:
        desired = merge_files(files, self._last_good)
        self._last_good = desired.last_good
        self._report(desired.problems)
        await self.pods.sync(desired.pods)
        self._first_sync.set()

    def _report(self, problems: list[SourceProblem]) -> None:
        """An event for each problem when it appears, not again at every re-read."""
        current = {(p.reason, p.message) for p in problems}
        for problem in problems:
            if (problem.reason, problem.message) in self._reported:
                continue
            if problem.pod is not None:
                involved = ObjectRef("Pod", problem.pod.name, problem.pod.namespace, problem.pod.uid)
            else:
                involved = ObjectRef("Node", self.node_name)
            self.events.record(involved, WARNING, problem.reason, problem.message)
        self._reported = current
