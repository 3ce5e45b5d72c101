"""The daemon: sources -> desired pods -> pod workers -> status API, under one task group.

    nodeagent run: check the node, pick the cgroup driver and runtime, start the API, read the
    sources, keep the pods; SIGTERM/SIGINT stop the agent (never the pods).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from nodeagent.agent.admission import allocatable, eviction_memory_bytes
from nodeagent.agent.clock import Clock, SystemClock
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import WARNING, EventRecorder, ObjectRef
from nodeagent.agent.factories import NodeParts
from nodeagent.agent.pods import PodManager
from nodeagent.agent.records import State
from nodeagent.agent.services import NodeServices
from nodeagent.agent.store import PodStore
from nodeagent.api.manifest import StaticPod
from nodeagent.config import KubeletConfig, load_config
from nodeagent.errors import ConfigError
from nodeagent.kubeapi.listener import api_settings
from nodeagent.kubeapi.nodes import node_json
from nodeagent.metrics import AgentMetrics
from nodeagent.plan.settings import CgroupDriverName
from nodeagent.runtime.base import PodSandboxes, ReadyNotice, RuntimeConnection, RuntimePreparation
from nodeagent.runtime.logrotate import LogLimits, keep_bounded
from nodeagent.sdnotify import Notifier
from nodeagent.server import StatusServer
from nodeagent.sources.desired import DesiredSet
from nodeagent.sources.fileindex import index_path
from nodeagent.sources.files import FileSource, ManifestFile
from nodeagent.sources.http import HttpSettings, HttpSource
from nodeagent.sources.merge import SourceProblem

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """Raised in the agent's task group when stop() was called: it cancels every task."""


@dataclass
class Agent:
    config: KubeletConfig
    parts: NodeParts
    config_path: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    notifier: Notifier = field(default_factory=Notifier)
    on_change: Callable[[], None] = lambda: None
    on_ready: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        self.cgroups = self.parts.cgroups
        self.runtime = self.parts.runtime
        self.events = EventRecorder(self.clock.now)
        self.metrics = AgentMetrics(lambda: self.pods.pods())
        node = self.parts.node
        driver = CgroupDriverName(self.cgroups.name)
        address = self.parts.address
        self.services = NodeServices(
            runtime=self.runtime, cgroups=self.cgroups, events=self.events, clock=self.clock, node=node,
            settings=self.config.plan_settings(cgroup_version=self.cgroups.version, cgroup_driver=driver),
            state_dir=self.config.nodeagent.state_dir, logs_dir=self.config.pod_logs_path,
            addresses=PodAddresses(host_ip=address, pod_ip=address), networks=self.parts.networks,
            sandboxes=self.runtime if isinstance(self.runtime, PodSandboxes) else None,
            resolv_conf=self.config.resolv_conf, on_change=self._changed,
            persist=lambda worker: self.pods.persist(worker), forget=lambda uid: self.pods.forget(uid),
            metrics=self.metrics, agent_ready=asyncio.Event(), attach_warmth=self.parts.attach_warmth,
        )
        eviction = eviction_memory_bytes(self.config.eviction_hard, node.memory_bytes)
        capacity = allocatable(node, eviction_memory=eviction, max_pods=self.config.max_pods)
        self.pods = PodManager(self.services, PodStore(self.config.nodeagent.state_dir), capacity,
                               node_name=self.config.node_name)
        self.node_name = self.config.node_name
        self.desired = DesiredSet()
        self._reported: set[tuple[str, str]] = set()
        self._stop = asyncio.Event()
        self._first_sync = asyncio.Event()
        self._wake = asyncio.Event()  # the first sync or stop(), whichever comes first
        self._reload = asyncio.Event()
        self.http_source: HttpSource | None = None
        self._status_scheduled = False
        self._changes = 0  # _changed() calls: the log rotation lists the containers' logs again when it moves
        self._api_changed: Callable[[], None] = lambda: None
        self._started = dt.datetime.now(dt.UTC)
        self._restored: list[StaticPod] = []  # restored pods, for the first scan of the manifests

    def _changed(self) -> None:
        """Something about a pod changed: tell the embedder, the API's watches, and systemd's STATUS within a
        second."""
        self._changes += 1
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
        self._wake.set()

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
            self._close_kernel_log()  # stopped while waiting for the runtime: nothing else was started
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            return
        if isinstance(self.runtime, RuntimePreparation):
            await self.runtime.prepare()
        await self.pods.start()
        old_bundles = self.pods.bundles()
        restored = await self.pods.restore()
        self._restored = [w.pod for w in self.pods.pods() if w.terminating_since is None]
        self.desired.restored(self._restored)
        # Only now: an API answering before the restore would list the node's pods as gone.
        await server.start()
        limits = LogLimits(self.config.container_log_max_bytes, self.config.container_log_max_files)
        try:
            async with asyncio.TaskGroup() as tasks:  # every task of the agent; a failure of one stops it
                tasks.create_task(self._run_sources(), name="sources")
                tasks.create_task(self._watchdog(), name="watchdog")
                tasks.create_task(keep_bounded(  # the workers as they are, unsorted, after a change
                    lambda: [f for worker in self.pods.workers.values() for f in worker.log_files()], limits,
                    version=lambda: self._changes), name="log rotation")
                await self._wake.wait()  # the first sync, or stop()
                if not self._stop.is_set():  # not cut short by stop(): a clean-up must not stop half-way
                    await self._become_ready(old_bundles, restored, began)
                await self._stop.wait()
                raise _Stopped
        except BaseExceptionGroup as group:
            _, failures = group.split(_Stopped)
            if failures is not None:
                raise failures.exceptions[0] from None  # a source failed: its error stops the agent
        finally:
            log.info("nodeagent is stopping; pods keep running")
            self.notifier.stopping()
            await self.pods.close()
            await server.stop()
            self._close_kernel_log()
            if isinstance(self.runtime, RuntimeConnection):
                await self.runtime.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _become_ready(self, old_bundles: set[str], restored: int, began: float) -> None:
        """Both sources were read: orphans removed, READY to systemd and the embedder."""
        await self.pods.clean_orphans(old_bundles)
        since_exec = time.time() - psutil.Process().create_time()
        log.info("nodeagent is running: node %s, runtime %s, cgroups v%d/%s, %d pods (%d restored), "
                 "manifests in %s, API on %s; ready %.0f ms after starting (%.0f ms after the process did)",
                 self.node_name, self.runtime.name, self.cgroups.version, self.cgroups.name,
                 len(self.pods.workers), restored, self.config.static_pod_path, self.config.nodeagent.socket,
                 (time.monotonic() - began) * 1000, since_exec * 1000)
        self.notifier.ready(self.status_line())
        if isinstance(self.runtime, ReadyNotice):
            self.runtime.agent_ready()
        self.services.agent_ready.set()  # the pods taken back repair their cgroups and networks now
        self.on_ready()
        await self.pods.clean_orphan_networks()

    def _close_kernel_log(self) -> None:
        if self.parts.kernel_log is not None:
            self.parts.kernel_log.close()

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
                               frequency_seconds=self.config.file_check_frequency / 1e9,
                               index=index_path(self.config.nodeagent.state_dir), restored=self._restored)
            self._restored = []  # a reload reads every file again
            readers = {asyncio.create_task(files.run(self._on_files), name="file source")}
            self.http_source = self._make_http_source()
            if self.http_source is not None:
                readers.add(asyncio.create_task(self.http_source.run(self._on_http), name="url source"))
            else:
                self.desired.url_removed()
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
        if self.desired.http(pods):
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
            self.desired.url_removed()
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
        if self.desired.files(files):
            await self._sync()

    async def _sync(self) -> None:
        """Both sources' pods to the pod manager (nodeagent.sources.desired)."""
        desired = self.desired.desired([w.pod for w in self.pods.pods() if w.pod.source == "http"])
        if desired is None:
            return
        self._report(desired.problems)
        await self.pods.sync(desired.pods)
        if self.http_source is None or self.desired.http_attempted:
            self._first_sync.set()  # READY waits for one answer (or failure) of the URL too
            self._wake.set()

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
