"""The daemon: sources -> desired pods -> pod workers -> status API, under one task group.

    nodeagent run: check the node, pick the cgroup driver and runtime, start the API, read the
    sources, keep the pods; SIGTERM/SIGINT stop the agent (never the pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from nodeagent.agent.admission import allocatable, eviction_memory_bytes
from nodeagent.agent.clock import Clock, SystemClock
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import WARNING, EventRecorder, ObjectRef
from nodeagent.agent.pods import PodManager
from nodeagent.agent.records import State
from nodeagent.agent.store import PodStore
from nodeagent.agent.worker import NodeServices
from nodeagent.api.manifest import StaticPod
from nodeagent.cgroups.detect import choose_driver, detect_layout, systemd_is_init
from nodeagent.cgroups.driver import CgroupDriver, CgroupfsDriver
from nodeagent.cgroups.fs1 import V1Hierarchy
from nodeagent.cgroups.fs2 import V2Hierarchy
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.config import KubeletConfig, load_config
from nodeagent.errors import ConfigError, NodeAgentError
from nodeagent.kubeapi.listener import api_settings
from nodeagent.kubeapi.nodes import node_json
from nodeagent.metrics import AgentMetrics
from nodeagent.network.pods import PodNetworks
from nodeagent.node import read_node_info
from nodeagent.plan.settings import CgroupDriverName
from nodeagent.runtime.base import PodSandboxes, Runtime, RuntimeConnection, RuntimePreparation
from nodeagent.runtime.logrotate import LogLimits, keep_bounded
from nodeagent.runtime.process import ProcessRuntime
from nodeagent.sdnotify import Notifier
from nodeagent.server import StatusServer
from nodeagent.sources.files import FileSource, ManifestFile
from nodeagent.sources.http import HttpSettings, HttpSource
from nodeagent.sources.merge import Desired, SourceProblem, merge_files, merge_sources

log = logging.getLogger(__name__)


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


def make_cgroup_driver(config: KubeletConfig) -> CgroupDriver:
    driver, why = choose_driver(config.cgroup_driver)
    layout = detect_layout()
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


@dataclass
class Agent:
    config: KubeletConfig
    config_path: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    notifier: Notifier = field(default_factory=Notifier)
    on_change: Callable[[], None] = lambda: None
    on_ready: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        os.makedirs(self.config.nodeagent.state_dir, mode=0o700, exist_ok=True)
        self.kernel_log = KernelLog()
        self.cgroups = make_cgroup_driver(self.config)
        self.runtime = make_runtime(self.config, self.cgroups, self.kernel_log)
        self.events = EventRecorder(self.clock.now)
        self.metrics = AgentMetrics(lambda: self.pods.pods())
        node = read_node_info(self.config)
        driver = CgroupDriverName(self.cgroups.name)
        address = host_address()
        self.services = NodeServices(
            runtime=self.runtime, cgroups=self.cgroups, events=self.events, clock=self.clock, node=node,
            settings=self.config.plan_settings(cgroup_version=self.cgroups.version, cgroup_driver=driver),
            state_dir=self.config.nodeagent.state_dir, logs_dir=self.config.pod_logs_path,
            addresses=PodAddresses(host_ip=address, pod_ip=address), networks=make_pod_networks(self.config),
            sandboxes=self.runtime if isinstance(self.runtime, PodSandboxes) else None,
            resolv_conf=self.config.resolv_conf, on_change=self._changed,
            persist=lambda worker: self.pods.persist(worker),
            metrics=self.metrics,
        )
        eviction = eviction_memory_bytes(self.config.eviction_hard, node.memory_bytes)
        capacity = allocatable(node, eviction_memory=eviction, max_pods=self.config.max_pods)
        self.pods = PodManager(self.services, PodStore(self.config.nodeagent.state_dir), capacity,
                               node_name=self.config.node_name)
        self.node_name = self.config.node_name
        self._last_good: dict[str, list[StaticPod]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._stop = asyncio.Event()
        self._first_sync = asyncio.Event()
        self._reload = asyncio.Event()
        self._file_desired: Desired | None = None
        self._http_pods: list[StaticPod] | None = None  # None: the URL has not answered yet
        self._http_attempted = False
        self.http_source: HttpSource | None = None
        self._status_scheduled = False
        self._api_changed: Callable[[], None] = lambda: None
        self._started = dt.datetime.now(dt.UTC)

    def _changed(self) -> None:
        """Something about a pod changed: tell the embedder, the API's watches, and systemd's STATUS within a
        second."""
        self.on_change()
        self._api_changed()
        if self.notifier.enabled and not self._status_scheduled:
            self._status_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._send_status)

    def _node_json(self) -> dict[str, Any]:
        return node_json(self.node_name, self.services.node, self.pods.capacity,
                         address=self.services.addresses.host_ip, runtime=f"{self.runtime.name}://nodeagent",
                         started=self._started, now=dt.datetime.now(dt.UTC))

    def _send_status(self) -> None:
        self._status_scheduled = False
        self.notifier.status(self.status_line())

    def status_line(self) -> str:
        workers = self.pods.pods()
        running = sum(1 for w in workers if any(r.state is State.RUNNING for r in w.records.values()))
        waiting = sum(1 for w in workers if not w.admitted)
        return f"{len(workers)} pods: {running} running, {waiting} waiting for admission"

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until stop() (or SIGTERM/SIGINT): the API, the sources and the pods. SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        server = StatusServer(self.pods, self.events, self.cgroups, self.metrics, self.sources_status,
                              node_name=self.node_name,
                              logs_dir=self.config.pod_logs_path, socket_path=self.config.nodeagent.socket,
                              socket_group=self.config.nodeagent.socket_group,
                              metrics_address=self.config.nodeagent.metrics_bind_address,
                              api=api_settings(self.config), node=self._node_json)
        self._api_changed = server.pods_changed  # the Kubernetes API's resource versions and watches
        if isinstance(self.runtime, RuntimeConnection) and not await self._connect(self.runtime):
            self.kernel_log.close()  # stopped while waiting for the runtime: nothing else was started
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            return
        if isinstance(self.runtime, RuntimePreparation):
            await self.runtime.prepare()
        await server.start()
        await self.pods.start()
        old_bundles = self.pods.bundles()
        restored = await self.pods.restore()
        self._last_good = self._restored_file_pods()
        sources = asyncio.create_task(self._run_sources(), name="sources")
        stopping = asyncio.create_task(self._stop.wait())
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        limits = LogLimits(self.config.container_log_max_bytes, self.config.container_log_max_files)
        rotation = asyncio.create_task(
            keep_bounded(lambda: [f for worker in self.pods.pods() for f in worker.log_files()], limits),
            name="log rotation")
        try:
            first = asyncio.create_task(self._first_sync.wait())
            await asyncio.wait({first, stopping, sources}, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                await self.pods.clean_orphans(old_bundles)
                since_exec = time.time() - psutil.Process().create_time()
                log.info("nodeagent is running: node %s, runtime %s, cgroups v%d/%s, %d pods (%d restored), "
                         "manifests in %s, API on %s; ready %.0f ms after starting (%.0f ms after the process did)",
                         self.node_name, self.runtime.name, self.cgroups.version, self.cgroups.name,
                         len(self.pods.workers), restored, self.config.static_pod_path, self.config.nodeagent.socket,
                         (time.monotonic() - began) * 1000, since_exec * 1000)
                self.notifier.ready(self.status_line())
                self.on_ready()
                await self.pods.clean_orphan_networks()
            first.cancel()
            done, _ = await asyncio.wait({stopping, sources}, return_when=asyncio.FIRST_COMPLETED)
            if sources in done:
                sources.result()  # a source failed: let the error stop the agent
        finally:
            log.info("nodeagent is stopping; pods keep running")
            self.notifier.stopping()
            for task in (sources, stopping, watchdog, rotation):
                task.cancel()
            await asyncio.gather(sources, stopping, watchdog, rotation, return_exceptions=True)
            await self.pods.close()
            await server.stop()
            self.kernel_log.close()
            if isinstance(self.runtime, RuntimeConnection):
                await self.runtime.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _connect(self, runtime: RuntimeConnection) -> bool:
        """Connect to the runtime, which may take until it answers; False when stopped meanwhile."""
        connecting = asyncio.create_task(runtime.connect(self.cgroups.name), name="runtime connection")
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await runtime.close()
            log.info("nodeagent is stopping before its runtime answered; pods keep running")
            return False
        connecting.result()
        return True

    async def _run_sources(self) -> None:
        """The file source and the URL source, started again with the new settings after each reload."""
        while True:
            files = FileSource(self.config.static_pod_path, node_name=self.node_name,
                               frequency_seconds=self.config.file_check_frequency / 1e9)
            readers = {asyncio.create_task(files.run(self._on_files), name="file source")}
            self.http_source = self._make_http_source()
            if self.http_source is not None:
                readers.add(asyncio.create_task(self.http_source.run(self._on_http), name="url source"))
            else:
                self._http_pods = []
            reload = asyncio.create_task(self._reload.wait())
            try:
                done, _ = await asyncio.wait({*readers, reload}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*readers, reload):
                    task.cancel()
                await asyncio.gather(*readers, reload, return_exceptions=True)
            for task in readers & done:
                task.result()
            self._reload.clear()
            self.apply_reload()

    def _restored_file_pods(self) -> dict[str, list[StaticPod]]:
        """Each file's pods that ran before the restart, as its last valid version: a file found invalid at
        start keeps them running, as it would have without the restart."""
        found: dict[str, list[StaticPod]] = {}
        for worker in self.pods.pods():
            if worker.pod.source == "file" and worker.terminating_since is None:
                found.setdefault(worker.pod.origin, []).append(worker.pod)
        return found

    def _make_http_source(self) -> HttpSource | None:
        url = self.config.static_pod_url
        if not url:
            return None
        tls = self.config.nodeagent.static_pod_url_tls
        settings = HttpSettings(
            url=url, headers=self.config.static_pod_url_header or {},
            frequency_seconds=self.config.http_check_frequency / 1e9, ca_file=tls.ca_file, cert_file=tls.cert_file,
            key_file=tls.key_file, empty_means_none=self.config.nodeagent.static_pod_url_empty_means_none)
        return HttpSource(settings, node_name=self.node_name, on_event=self._url_event)

    def _url_event(self, kind: str, reason: str, message: str) -> None:
        self.events.record(ObjectRef("Node", self.node_name), kind, reason, message)

    async def _on_http(self, pods: list[StaticPod] | None) -> None:
        """After every fetch: the new set of http pods, or None (unchanged, or the fetch failed)."""
        first = not self._http_attempted
        self._http_attempted = True
        if pods is not None:
            self._http_pods = pods
        if pods is not None or first:
            await self._sync()

    def apply_reload(self) -> None:
        """SIGHUP: read the configuration again; what can change live does, the rest waits for a restart."""
        self.notifier.reloading()
        try:
            config, warnings = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            self.notifier.reloaded(self.status_line())
            return
        for warning in warnings:
            log.warning("configuration %s: %s", self.config_path, warning)
        logging.getLogger().setLevel(config.nodeagent.log_level.upper())
        live = {"staticPodPath", "fileCheckFrequency", "staticPodURL", "staticPodURLHeader", "httpCheckFrequency",
                "nodeagent"}
        before = self.config.model_dump(by_alias=True)
        after = config.model_dump(by_alias=True)
        for key in sorted(set(before) | set(after)):
            if key not in live and before.get(key) != after.get(key):
                log.warning("reload: %s changed; it takes effect when the agent restarts", key)
        for key in sorted(set(before["nodeagent"]) | set(after["nodeagent"])):
            live_keys = ("logLevel", "staticPodURLTLS", "staticPodURLEmptyMeansNone")
            if key not in live_keys and before["nodeagent"].get(key) != after["nodeagent"].get(key):
                log.warning("reload: nodeagent.%s changed; it takes effect when the agent restarts", key)
        live_agent = {"log_level", "static_pod_url_tls", "static_pod_url_empty_means_none"}
        self.config = self.config.model_copy(update={
            "static_pod_path": config.static_pod_path, "file_check_frequency": config.file_check_frequency,
            "static_pod_url": config.static_pod_url, "static_pod_url_header": config.static_pod_url_header,
            "http_check_frequency": config.http_check_frequency,
            "nodeagent": self.config.nodeagent.model_copy(
                update={name: getattr(config.nodeagent, name) for name in live_agent}),
        })
        if not config.static_pod_url:
            self._http_pods = []  # the URL is gone from the configuration: so are its pods
        log.info("configuration reloaded: manifests in %s, re-read every %.0fs", self.config.static_pod_path,
                 self.config.file_check_frequency / 1e9)
        self.notifier.reloaded(self.status_line())

    async def _watchdog(self) -> None:
        """WATCHDOG=1 at half of WatchdogSec, from the event loop itself: a stuck loop stops the pings."""
        if self.notifier.watchdog_seconds is None:
            return
        while True:
            self.notifier.watchdog()
            await self.clock.sleep(self.notifier.watchdog_seconds / 2)

    async def _on_files(self, files: list[ManifestFile] | None) -> None:
        """A scan of staticPodPath. None: it could not be read, which says nothing about which pods should run:
        the file pods stay as they are (before the first good read, those restored from the state directory)."""
        if files is None:
            if self._file_desired is not None:
                return
            restored = [w.pod for w in self.pods.pods() if w.pod.source == "file" and w.terminating_since is None]
            self._file_desired = Desired(restored, [])
        else:
            self._file_desired = merge_files(files, self._last_good)
            self._last_good = self._file_desired.last_good
        await self._sync()

    async def _sync(self) -> None:
        """Both sources' pods to the pod manager. Until the URL source has answered once, the http pods
        restored from the state directory stand for its set, so an unreachable URL at boot stops nothing."""
        if self._file_desired is None:
            return
        desired = merge_sources(self._file_desired, self._http_pods if self._http_pods is not None
                                else [w.pod for w in self.pods.pods() if w.pod.source == "http"])
        self._report(desired.problems)
        await self.pods.sync(desired.pods)
        if self.http_source is None or self._http_attempted:
            self._first_sync.set()  # READY waits for one answer (or failure) of the URL too

    def sources_status(self) -> dict[str, object]:
        status: dict[str, object] = {"file": {"path": self.config.static_pod_path}}
        if self.http_source is not None:
            status["http"] = self.http_source.status.to_json()
        return status

    def _report(self, problems: list[SourceProblem]) -> None:
        """An event for each problem when it appears, not again at every re-read."""
        current = {(p.reason, p.message) for p in problems}
        for problem in problems:
            if (problem.reason, problem.message) in self._reported:
                continue
            if problem.reason == "InvalidManifest":
                self.metrics.manifest_error()
            if problem.pod is not None:
                involved = ObjectRef("Pod", problem.pod.name, problem.pod.namespace, problem.pod.uid)
            else:
                involved = ObjectRef("Node", self.node_name)
            self.events.record(involved, WARNING, problem.reason, problem.message)
        self._reported = current
