"""One pod's life on the node, as the kubelet's pod worker lives it.

    set up (pod cgroup, volumes)
      -> init containers, one after the other, each to completion (restarted on failure unless Never)
      -> app containers, each under a supervisor: start, wait, restart per restartPolicy with back-off
      -> (finished pods stay listed until their manifest goes)
    stop(): every running container gets its stop signal (SIGTERM), SIGKILL after the grace period; then tear down.
    activeDeadlineSeconds passed: the same stop, without the tear-down; the pod stays Failed (DeadlineExceeded).

A cancelled worker (the agent stopping) leaves its containers running: they are not the agent's to
kill. Its state is saved on every change (nodeagent.agent.snapshot), so that a new agent process
takes the same containers back: same IDs, restart counts, last states and back-off timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from nodeagent.agent import backoff, deadline, stopping, termination_message, volumes
from nodeagent.agent.admission import Rejection
from nodeagent.agent.clock import Clock
from nodeagent.agent.env import PodAddresses, command_line, container_env
from nodeagent.agent.etcfiles import etc_files, pod_dns_of
from nodeagent.agent.events import NORMAL, WARNING, EventRecorder, ObjectRef
from nodeagent.agent.hooks import run_hook
from nodeagent.agent.probes import ProbeCallbacks, ProbeResult, run_probes
from nodeagent.agent.records import ContainerRecord, State, Termination, should_restart, termination_reason
from nodeagent.agent.security import host_has_apparmor, refuse_unenforceable, security_fields
from nodeagent.agent.status import PodFacts, pod_json
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container, Probe
from nodeagent.api.sysctls import pod_sysctls
from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.network.dnsfiles import pod_hostname
from nodeagent.network.model import HostPort
from nodeagent.network.pods import PodNetworks
from nodeagent.plan import paths
from nodeagent.plan.pod import ResourcePlan, plan_pod
from nodeagent.plan.settings import NodeInfo, PlanSettings
from nodeagent.runtime.base import (
    ContainerExit,
    ContainerSpec,
    PodSandboxes,
    PodSandboxSpec,
    RunningContainer,
    Runtime,
    Sandbox,
)
from nodeagent.runtime.logrotate import LogFile
from nodeagent.runtime.logs import container_log_path, pod_log_dir
from nodeagent.timeformat import go_duration

log = logging.getLogger(__name__)

SETUP_RETRY_SECONDS = (1.0, 30.0)
START_RETRY_SECONDS = 10.0  # the kubelet's pod worker back-off after a failed sync
PULL_ERROR_SHOWN_SECONDS = 1.0  # ErrImagePull shows this long before ImagePullBackOff
IMAGE_ERRORS = ("ErrImageNeverPull", "InvalidImageName")  # their events say only the reason


class PodMetrics(Protocol):
    def pod_started(self, seconds: float) -> None: ...

    def container_started(self, *, init: bool) -> None: ...

    def oom_kill(self) -> None: ...

    def pod_replaced(self) -> None: ...


@dataclass(frozen=True)
class NodeServices:
    """What every pod worker shares."""

    runtime: Runtime
    cgroups: CgroupDriver
    events: EventRecorder
    clock: Clock
    node: NodeInfo
    settings: PlanSettings
    state_dir: str
    logs_dir: str
    addresses: PodAddresses  # the node's; a pod with its own network has its own pod_ip
    networks: PodNetworks | None  # None: every pod shares the node's network (cri: the runtime's CNI)
    sandboxes: PodSandboxes | None  # cri: the runtime makes each pod a sandbox, with its containers' cgroups
    resolv_conf: str  # the node's resolv.conf, the base of pods' own
    on_change: Callable[[], None]
    persist: Callable[[PodWorker], None]  # save a worker's state (nodeagent.agent.snapshot)
    metrics: PodMetrics


class PodWorker:
    def __init__(self, pod: StaticPod, services: NodeServices) -> None:
        self.pod = pod
        self.services = services
        self.plan: ResourcePlan = plan_pod(pod, services.node, services.settings)
        self.created_at = services.clock.now()
        self.start_time: dt.datetime | None = None
        self.terminating_since: dt.datetime | None = None
        self.records: dict[str, ContainerRecord] = {}
        has_init = bool(pod.pod.spec.init_containers)
        for container in pod.pod.spec.init_containers or []:
            self.records[container.name or ""] = ContainerRecord(
                container.name or "", container.image or "", init=True, reason="PodInitializing")
        for container in pod.pod.spec.containers or []:
            self.records[container.name or ""] = ContainerRecord(
                container.name or "", container.image or "", init=False,
                reason="PodInitializing" if has_init else "ContainerCreating")
        self._containers = {c.name or "": c for c in pod.pod.all_containers()}
        self.transitions: dict[str, dt.datetime] = {}
        self.volumes: volumes.PodVolumes | None = None
        self.sandbox: Sandbox | None = None
        self.running: dict[str, RunningContainer] = {}
        self.backoff: dict[str, backoff.Backoff] = {}
        self.pull_backoff: dict[str, backoff.Backoff] = {}
        self.finished_monotonic: dict[str, float] = {}
        self.adoptable: dict[str, dict[str, Any]] = {}  # saved running containers, from before a restart
        self.rejection: Rejection | None = None  # not admitted (yet): why
        self._admitted = asyncio.Event()
        self._admitted.set()
        self._ready = False
        self._stopping = asyncio.Event()  # no container may run (or start) any more: removed, or past its deadline
        self._removed = asyncio.Event()  # the pod goes (stop()): its containers stop, then it is torn down
        self.deadline_exceeded = False  # spec.activeDeadlineSeconds has passed: Failed, nothing runs
        self._save_scheduled = False
        self._torn_down = False
        self.done = asyncio.Event()

    # -- what others read -------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.pod.key

    def log_files(self) -> list[LogFile]:
        """Each container's log files to keep bounded: the previous attempt's, and the current one's with its
        writer while it runs, or once it has ended (not while it starts or is adopted: no writer known yet)."""
        files = []
        for name, record in self.records.items():
            if record.restart_count > 0:
                files.append(LogFile(self._log_path(name, record.restart_count - 1), None))
            running = self.running.get(name)
            if running is not None:
                files.append(LogFile(self._log_path(name, record.restart_count), running.reopen_log))
            elif record.container_id is not None and record.state is not State.RUNNING:  # that attempt has ended
                files.append(LogFile(self._log_path(name, record.restart_count), None))
        return files

    def _log_path(self, container: str, attempt: int) -> str:
        return container_log_path(self.services.logs_dir, self.pod.namespace, self.pod.name, self.pod.uid, container,
                                  attempt)

    def to_json(self) -> dict[str, Any]:
        rejection = self.rejection
        addresses = self.addresses
        reason, message = (rejection.reason, rejection.message) if rejection else (None, None)
        if self.deadline_exceeded:
            reason, message = deadline.REASON, deadline.MESSAGE
        facts = PodFacts(created_at=self.created_at, host_ip=addresses.host_ip,
                         pod_ip=addresses.pod_ip, start_time=self.start_time,
                         terminating_since=self.terminating_since, transitions=self.transitions,
                         reason=reason, message=message, failed=self.deadline_exceeded)
        return pod_json(self.pod, list(self.records.values()), facts)

    @property
    def own_network(self) -> bool:
        """The pod has a network namespace of its own (set up by nodeagent)."""
        return self.services.networks is not None and not self.pod.pod.spec.host_network

    @property
    def addresses(self) -> PodAddresses:
        """The node's address, and the pod's: its lease, or the node's for hostNetwork ("" before its lease)."""
        node = self.services.addresses
        if self.services.sandboxes is not None and not self.pod.pod.spec.host_network:
            return replace(node, pod_ip=(self.sandbox.ip or "") if self.sandbox else "")
        if not self.own_network:
            return node
        assert self.services.networks is not None
        lease = self.services.networks.lease(self.pod.uid)
        return replace(node, pod_ip=lease.ip if lease else "")

    def object_ref(self, container: str | None = None) -> ObjectRef:
        field_path = ""
        if container is not None:
            group = "initContainers" if self.records[container].init else "containers"
            field_path = f"spec.{group}{{{container}}}"
        return ObjectRef("Pod", self.pod.name, self.pod.namespace, self.pod.uid, field_path)

    @property
    def pod_label(self) -> str:
        """format.Pod: name_namespace(uid), as the kubelet names pods in messages."""
        return f"{self.pod.name}_{self.pod.namespace}({self.pod.uid})"

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def admitted(self) -> bool:
        return self._admitted.is_set()

    def reject(self, rejection: Rejection) -> None:
        """Keep the pod Pending: its requests do not fit (yet). The reason shows in the pod's status."""
        first = self.rejection is None or self.rejection.reason != rejection.reason
        self.rejection = rejection
        self._admitted.clear()
        for name, record in self.records.items():
            if record.state is State.WAITING:
                self.records[name] = replace(record, reason=None, message=None)
        if first:
            self.services.events.record(self.object_ref(), WARNING, rejection.reason, rejection.message)
            log.info("pod=%s uid=%s: not admitted: %s", self.key, self.pod.uid, rejection.message)
        self._changed()

    def admit(self) -> None:
        if self.admitted:
            return
        log.info("pod=%s uid=%s: admitted", self.key, self.pod.uid)
        self.rejection = None
        initial = "PodInitializing" if self.pod.pod.spec.init_containers else "ContainerCreating"
        for name, record in self.records.items():
            if record.state is State.WAITING and record.reason is None:
                self.records[name] = replace(record, reason="PodInitializing" if record.init else initial)
        self._admitted.set()
        self._changed()

    def stop(self) -> None:
        """Terminate the pod: its manifest is gone or changed."""
        if self.terminating_since is None:
            self.terminating_since = self.services.clock.now()
            self._changed()
        self._removed.set()
        self._stopping.set()

    async def run(self) -> None:
        try:
            life = asyncio.create_task(self._live(), name=f"pod {self.key}")
            try:
                await self._removed.wait()
                await self._terminate_containers()
                await life
            finally:
                if not life.done():
                    life.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await life
            await self._tear_down()
        finally:
            self.done.set()

    async def _live(self) -> None:
        if not await self._until_admitted():
            return
        if not await self._set_up():
            return
        deadline_watch = self._watch_deadline()
        try:
            if await self._run_init_containers():
                await self._run_app_containers()
        finally:
            if deadline_watch is not None:
                deadline_watch.cancel()
                await asyncio.gather(deadline_watch, return_exceptions=True)

    def _watch_deadline(self) -> asyncio.Task[None] | None:
        """activeDeadlineSeconds (nodeagent.agent.deadline): past already (after an agent restart), the pod
        fails before anything starts; else a task fails it when the time comes."""
        left = deadline.seconds_left(self.pod.pod.spec, self.start_time, self.services.clock.now())
        if left is None:
            return None
        if left <= 0:
            self._exceed_deadline()  # nothing runs yet: what is adopted is stopped as it comes back
            return None
        return asyncio.create_task(self._deadline_after(left), name=f"deadline {self.key}")

    async def _deadline_after(self, seconds: float) -> None:
        if not await self._sleep_or_stop(seconds) and self._exceed_deadline():
            await self._terminate_containers()

    def _exceed_deadline(self) -> bool:
        """Fail the pod (DeadlineExceeded) unless it is stopping or has finished; True if it now is."""
        if self._stopping.is_set() or not deadline.applies(self.pod.pod.spec, self.records.values(),
                                                            failed_already=self.deadline_exceeded):
            return False
        if not self.deadline_exceeded:  # once: not again for a pod failed before an agent restart
            self.services.events.record(self.object_ref(), NORMAL, deadline.REASON, deadline.MESSAGE)
            log.info("pod=%s uid=%s: %s", self.key, self.pod.uid, deadline.MESSAGE)
        self.deadline_exceeded = True
        self._stopping.set()
        self._changed()
        return True

    async def _until_admitted(self) -> bool:
        """True once admitted; False if the pod is stopped first (never admitted, it has nothing to undo)."""
        waits = [asyncio.create_task(event.wait()) for event in (self._admitted, self._stopping)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        return self._admitted.is_set()

    async def _set_up(self) -> bool:
        """Pod cgroup, network and volumes, retried (FailedCreatePodSandBox, FailedMount) until they work
        or the pod is stopped."""
        delay = SETUP_RETRY_SECONDS[0]
        while not self._stopping.is_set():
            try:
                # conmon's cgroup too, unless the runtime monitors its containers itself (cri)
                monitor = self.plan.monitor if self.services.sandboxes is None else None
                await self.services.cgroups.apply([c for c in (self.plan.pod, monitor) if c is not None])
                networks = self.services.networks
                if self.own_network and networks is not None:
                    # Containers taken back after a restart run in their network already: keep it as it is.
                    if not (self.adoptable and networks.resume(self.pod.uid)):
                        await networks.set_up(self.pod.uid, name=self.pod.name, namespace=self.pod.namespace,
                                              host_ports=host_ports(self.pod))
                    self._changed()  # the pod has its IP
                if self.services.sandboxes is not None:
                    self.sandbox = await self.services.sandboxes.run_pod_sandbox(self._sandbox_spec())
                    self._changed()
                self.volumes = await volumes.set_up(self.services.state_dir, self.pod, self.services.node)
            except (NodeAgentError, OSError) as exc:
                reason = "FailedMount" if isinstance(exc, volumes.VolumeError) else "FailedCreatePodSandBox"
                self.services.events.record(self.object_ref(), WARNING, reason, str(exc))
                if await self._sleep_or_stop(delay):
                    return False
                delay = min(delay * 2, SETUP_RETRY_SECONDS[1])
                continue
            if self.start_time is None:
                self.start_time = self.services.clock.now()
                self._changed()
            return True
        return False

    async def _run_init_containers(self) -> bool:
        """True when every init container has completed; False if the pod failed or is stopping."""
        policy = "Never" if self.pod.pod.spec.restart_policy == "Never" else "OnFailure"
        for container in self.pod.pod.spec.init_containers or []:
            record = self.records[container.name or ""]
            if record.state is State.TERMINATED and record.terminated and record.terminated.exit_code == 0:
                continue  # completed before an agent restart
            last = await self._supervise(container, policy)
            if last is None or last.exit_code != 0:
                return False
        if "Initialized" not in self.transitions:  # not again for a pod adopted after a restart
            self._transition("Initialized")
        for container in self.pod.pod.spec.containers or []:
            name = container.name or ""
            if self.records[name].reason == "PodInitializing":
                self._update(name, reason="ContainerCreating")
        return True

    async def _run_app_containers(self) -> None:
        policy = self.pod.pod.spec.restart_policy
        async with asyncio.TaskGroup() as group:
            for container in self.pod.pod.spec.containers or []:
                group.create_task(self._supervise(container, policy), name=f"{self.key}/{container.name}")

    async def _supervise(self, container: Container, policy: str) -> ContainerExit | None:
        """Run a container until it should not be restarted (or the pod stops); its last exit."""
        name = container.name or ""
        last = await self._resume(container)
        if last is not None and not should_restart(policy, last.exit_code):
            return last
        while not self._stopping.is_set():
            if name in self.finished_monotonic and await self._back_off(name):
                return last
            try:
                running = await self._start(container)
            except (NodeAgentError, OSError) as exc:  # any failure of a start is reported and retried
                failure = exc if isinstance(exc, RuntimeStartError) else RuntimeStartError("CreateContainerError",
                                                                                            str(exc))
                if await self._start_failed(container, failure):
                    return last
                continue
            self.pull_backoff.pop(name, None)
            await self._post_start(container, running)
            last = await self._watch(name, running)
            if not should_restart(policy, last.exit_code):
                return last
        return last

    async def _start_failed(self, container: Container, exc: RuntimeStartError) -> bool:
        """Nothing ran, so no crash loop. A failed pull backs off as the kubelet's image back-off does
        (ErrImagePull, then ImagePullBackOff for 10 s doubling to 300 s); any other failure keeps its
        reason and is retried at the kubelet's sync back-off. True if the pod stopped meanwhile."""
        name = container.name or ""
        ref = self.object_ref(name)
        events = self.services.events
        if exc.reason != "ErrImagePull":
            self._update(name, state=State.WAITING, reason=exc.reason, message=exc.message)
            if exc.reason == "ErrImageNeverPull":
                events.record(ref, WARNING, "ErrImageNeverPull", exc.message)
            detail = exc.reason if exc.reason in IMAGE_ERRORS else exc.message
            events.record(ref, WARNING, "Failed", f"Error: {detail}")
            return await self._sleep_or_stop(START_RETRY_SECONDS)
        now = self.services.clock.monotonic()
        entry = backoff.next_backoff(self.pull_backoff.get(name), now, now)
        self.pull_backoff[name] = entry
        self._update(name, state=State.WAITING, reason="ErrImagePull", message=exc.message)
        events.record(ref, WARNING, "Failed", f'Failed to pull image "{container.image}": {exc.message}')
        events.record(ref, WARNING, "Failed", "Error: ErrImagePull")
        if await self._sleep_or_stop(min(PULL_ERROR_SHOWN_SECONDS, entry.seconds)):
            return True
        self._update(name, reason="ImagePullBackOff", message=f'Back-off pulling image "{container.image}"')
        events.record(ref, NORMAL, "BackOff", f'Back-off pulling image "{container.image}"')
        return await self._sleep_or_stop(max(entry.seconds - PULL_ERROR_SHOWN_SECONDS, 0))

    async def _post_start(self, container: Container, running: RunningContainer) -> None:
        """postStart runs right after the start; if it fails the container is killed, as the kubelet does."""
        handler = container.lifecycle.post_start if container.lifecycle else None
        if handler is None:
            return
        grace = self.pod.pod.spec.termination_grace_period_seconds or stopping.MIN_GRACE_SECONDS
        error = await run_hook(handler, runtime=self.services.runtime, running=running, container=container,
                               pod_ip=self.addresses.pod_ip, timeout=float(grace))
        if error is not None:
            name = container.name or ""
            self.services.events.record(self.object_ref(name), WARNING, "FailedPostStartHook",
                                        f"{error} in Pod \"{self.pod_label}\"")
            running.kill()

    async def _resume(self, container: Container) -> ContainerExit | None:
        """After an agent restart: take the container back, or learn how it ended meanwhile."""
        name = container.name or ""
        record = self.records[name]
        saved = self.adoptable.get(name)
        if saved is not None:
            spec = self._container_spec(container, record.restart_count)
            outcome = await self.services.runtime.adopt(spec, saved)
            del self.adoptable[name]  # only now: a save while adopt() runs must still know the container
            if isinstance(outcome, ContainerExit):
                log.info("pod=%s container=%s ended while the agent was away (exit code %d)", self.key, name,
                         outcome.exit_code)
                return await self._record_exit(name, outcome, record.started_at, record.container_id)
            self.running[name] = outcome
            if record.container_id != outcome.container_id:  # found running, its saved state lost
                probed = container.readiness_probe is not None or container.startup_probe is not None
                self._update(name, state=State.RUNNING, reason=None, message=None, started_at=outcome.started_at,
                             container_id=outcome.container_id, pid=outcome.pid, ready=not probed)
            log.info("pod=%s container=%s adopted: %s, pid %d", self.key, name, outcome.container_id, outcome.pid)
            self._stop_if_stopping(name, outcome)
            return await self._watch(name, outcome)
        if record.state is State.TERMINATED and record.terminated is not None:
            ended = record.terminated
            return ContainerExit(ended.exit_code, ended.finished_at, oom_killed=ended.reason == "OOMKilled")
        return None

    async def _back_off(self, name: str) -> bool:
        """Wait out the crash-loop back-off if it applies; True if the pod stopped meanwhile."""
        finished = self.finished_monotonic[name]
        entry = self.backoff.get(name)
        now = self.services.clock.monotonic()
        if backoff.in_backoff(entry, finished, now):
            assert entry is not None
            self._update(name, state=State.WAITING, reason="CrashLoopBackOff",
                         message=f"back-off {go_duration(entry.seconds)} restarting failed container={name} "
                                 f"pod={self.pod_label}")
            self.services.events.record(self.object_ref(name), WARNING, "BackOff",
                                        f"Back-off restarting failed container {name} in pod {self.pod_label}")
            if await self._sleep_or_stop(backoff.remaining(entry, finished, now)):
                return True
        self.backoff[name] = backoff.next_backoff(entry, finished, self.services.clock.monotonic())
        return False

    async def _start(self, container: Container) -> RunningContainer:
        name = container.name or ""
        record = self.records[name]
        attempt = record.restart_count + (1 if record.container_id is not None else 0)
        refuse_unenforceable(self.pod.pod, container, host_has_apparmor)
        spec = self._container_spec(container, attempt)
        services = self.services
        if self.volumes is not None:  # a new file per attempt, as the kubelet's makeMounts
            message = await asyncio.to_thread(termination_message.message_mount, self.volumes.pod_dir, container,
                                              attempt)
            spec = replace(spec, mounts=(*spec.mounts, message)) if message is not None else spec
        image_id = await self._ensure_image(container, spec)
        if self.volumes is not None:
            await self.volumes.prepare_subpaths(container)
        if services.runtime.host_mount_points and spec.mounts:
            volumes.ensure_mount_points(volumes.pod_dir(services.state_dir, self.pod.uid), spec.mounts,
                                        kept=(termination_message.DEFAULT_PATH,))
        own_cgroup = services.sandboxes is None  # else the runtime makes it from the spec's resources
        if own_cgroup:
            await services.cgroups.remove([spec.cgroup.path])  # whatever an earlier attempt left behind
            await services.cgroups.apply([spec.cgroup])
        try:
            running = await services.runtime.start(spec)
        except RuntimeStartError:
            if own_cgroup:
                await services.cgroups.remove([spec.cgroup.path])
            raise
        self.running[name] = running
        previous = record.terminated or record.last_termination
        probed = container.readiness_probe is not None or container.startup_probe is not None
        self._update(name, state=State.RUNNING, reason=None, message=None, started_at=running.started_at,
                     container_id=running.container_id, pid=running.pid, restart_count=attempt,
                     terminated=None, last_termination=previous, ready=not probed, image_id=image_id)
        services.metrics.container_started(init=record.init)
        services.events.record(self.object_ref(name), NORMAL, "Created", f"Created container: {name}")
        services.events.record(self.object_ref(name), NORMAL, "Started", f"Started container {name}")
        self._stop_if_stopping(name, running)
        return running

    def _stop_if_stopping(self, name: str, running: RunningContainer) -> None:
        """A container that came (or came back) after the pod's termination began, which it missed: its stop
        signal now, SIGKILL after the grace period."""
        if not self._stopping.is_set():
            return
        self._signal_stop(name, running)
        asyncio.get_running_loop().call_later(stopping.kill_grace(self.pod.pod.spec), running.kill)

    def _signal_stop(self, name: str, running: RunningContainer) -> None:
        """The container's stop signal: lifecycle.stopSignal, else its image's STOPSIGNAL, else SIGTERM."""
        running.signal(stopping.stop_signal(self._containers[name], running.image_stop_signal))

    async def _ensure_image(self, container: Container, spec: ContainerSpec) -> str:
        """The image, pulled if its policy says so, with the kubelet's events; its digest reference."""
        ref = self.object_ref(container.name or "")
        events = self.services.events

        def on_pull() -> None:
            events.record(ref, NORMAL, "Pulling", f'Pulling image "{spec.image}"')

        ready = await self.services.runtime.ensure_image(spec, on_pull)
        if ready is None:
            return ""
        if ready.pulled:
            took = go_duration(ready.seconds)
            events.record(ref, NORMAL, "Pulled", f'Successfully pulled image "{spec.image}" in {took} ({took} '
                                                 f"including waiting). Image size: {ready.size_bytes} bytes.")
        else:
            events.record(ref, NORMAL, "Pulled", f'Container image "{spec.image}" already present on machine')
        return ready.image_ref

    async def _watch(self, name: str, running: RunningContainer) -> ContainerExit:
        container = self._containers[name]
        probing = None
        if any((container.startup_probe, container.liveness_probe, container.readiness_probe)):
            probing = asyncio.create_task(run_probes(
                container, runtime=self.services.runtime, running=running, pod_ip=self.addresses.pod_ip,
                callbacks=self._probe_callbacks(name, running)), name=f"probes {self.key}/{name}")
        try:
            exit_ = await running.wait()
        finally:
            if probing is not None:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)
        return await self._record_exit(name, exit_, running.started_at, running.container_id)

    def _probe_callbacks(self, name: str, running: RunningContainer) -> ProbeCallbacks:
        ref = self.object_ref(name)
        events = self.services.events

        def ready(value: bool) -> None:
            if self.records[name].state is State.RUNNING:
                self._update(name, ready=value)

        def failed(kind: str, result: ProbeResult) -> None:
            events.record(ref, WARNING, "Unhealthy", f"{kind} probe failed: {result.output}".rstrip(": "))

        async def kill(message: str, probe: Probe) -> None:
            events.record(ref, NORMAL, "Killing", message)
            self._signal_stop(name, running)
            deadline = self.services.clock.monotonic() + stopping.kill_grace(self.pod.pod.spec, probe)
            while name in self.running and self.services.clock.monotonic() < deadline:
                await self.services.clock.sleep(0.05)
            running.kill()

        return ProbeCallbacks(ready=ready, failed=failed, kill=kill)

    async def _record_exit(self, name: str, exit_: ContainerExit, started_at: dt.datetime | None,
                           container_id: str | None) -> ContainerExit:
        self.running.pop(name, None)
        elapsed = (self.services.clock.now() - exit_.finished_at).total_seconds()
        self.finished_monotonic[name] = self.services.clock.monotonic() - max(elapsed, 0.0)
        reason = termination_reason(exit_.exit_code, exit_.oom_killed, exit_.unknown)
        message = ("The container could not be located when the pod was terminated" if exit_.unknown
                   else await self._termination_message(name, exit_.exit_code) or None)
        termination = Termination(exit_code=exit_.exit_code, reason=reason, started_at=started_at,
                                  finished_at=exit_.finished_at, container_id=container_id, message=message)
        self._update(name, state=State.TERMINATED, reason=None, message=None, started_at=None, pid=None,
                     terminated=termination, ready=False)
        if exit_.oom_killed:
            self.services.metrics.oom_kill()
            victim = f"Killed process {exit_.oom_victim}" if exit_.oom_victim else "a process was killed"
            self.services.events.record(
                self.object_ref(name), WARNING, "OOMKilling",
                f"Memory cgroup out of memory: {victim} in container {name} of pod {self.pod_label}")
        if self.services.sandboxes is None:
            try:
                await self.services.cgroups.remove([self.plan.container(name).path])
            except NodeAgentError as exc:
                log.warning("pod=%s container=%s: removing its cgroup: %s", self.key, name, exc)
        return exit_

    async def _termination_message(self, name: str, exit_code: int) -> str:
        """What the ended attempt left in its termination message file (or, on failure, its log's end)."""
        attempt = self.records[name].restart_count
        host_file = termination_message.message_file(volumes.pod_dir(self.services.state_dir, self.pod.uid), name,
                                                     attempt)
        policy = self._containers[name].termination_message_policy
        return await asyncio.to_thread(termination_message.read_message, host_file, self._log_path(name, attempt),
                                       policy, exit_code)

    def _sandbox_spec(self) -> PodSandboxSpec:
        services, spec, meta = self.services, self.pod.pod.spec, self.pod.pod.metadata
        settings = services.settings
        parent = self.plan.pod.path if self.plan.pod else paths.spell(paths.node_name(settings), settings.cgroup_driver)
        return PodSandboxSpec(
            name=self.pod.name, namespace=self.pod.namespace, uid=self.pod.uid,
            hostname=pod_hostname(spec.hostname or self.pod.name),
            log_directory=pod_log_dir(services.logs_dir, self.pod.namespace, self.pod.name, self.pod.uid),
            cgroup_parent=parent, host_network=spec.host_network,
            dns=pod_dns_of(spec, _read(services.resolv_conf)), port_mappings=tuple(host_ports(self.pod)),
            labels=dict(meta.labels or {}), annotations=dict(meta.annotations or {}),
            privileged=any(c.security_context is not None and c.security_context.privileged
                           for c in [*(spec.init_containers or []), *(spec.containers or [])]),
            host_pid=spec.host_pid, host_ipc=spec.host_ipc, sysctls=pod_sysctls(spec),
            share_process_namespace=spec.share_process_namespace is True)

    def _container_spec(self, container: Container, attempt: int) -> ContainerSpec:
        services = self.services
        name = container.name or ""
        addresses = self.addresses
        env = container_env(self.pod, container, addresses, services.node)
        command, args = command_line(container, env)
        cgroup = self.plan.container(name)
        mounts = self.volumes.mounts(container) if self.volumes is not None else ()
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
                                  _read(services.resolv_conf), _read("/etc/hosts") if spec.host_aliases else "")
        if services.sandboxes is not None and hosts is not None and self.volumes is not None:
            mounts = (*mounts, volumes.etc_hosts_mount(self.volumes.pod_dir, hosts))  # as the kubelet's etc-hosts
        return ContainerSpec(
            pod_name=self.pod.name, pod_namespace=self.pod.namespace, pod_uid=self.pod.uid, name=name,
            attempt=attempt, image=container.image or "", command=command, args=args, env=env,
            working_dir=container.working_dir,
            mounts=mounts, cgroup=cgroup, oom_score_adj=cgroup.oom_score_adj,
            log_path=self._log_path(name, attempt),
            hostname=hostname, netns=netns, hosts_file=hosts, resolv_conf=resolv,
            monitor_cgroup=self.plan.monitor.path if self.plan.monitor else None,
            pull_policy=container.image_pull_policy or "IfNotPresent",
            **security_fields(self.pod.pod.spec, container, services.state_dir),
        )

    async def _terminate_containers(self) -> None:
        """preStop hooks, then the stop signal to every running container, SIGKILL to those alive after the grace
        period. The hooks run within the grace period; the stop signal always gets at least 2 s."""
        grace = float(self.pod.pod.spec.termination_grace_period_seconds)
        started = self.services.clock.monotonic()
        running = dict(self.running)
        for name in running:
            self.services.events.record(self.object_ref(name), NORMAL, "Killing", f"Stopping container {name}")
        await asyncio.gather(*(self._pre_stop(name, container, grace) for name, container in running.items()))
        for name, container in running.items():
            self._signal_stop(name, container)
        left = max(grace - (self.services.clock.monotonic() - started), stopping.MIN_GRACE_SECONDS)
        deadline = self.services.clock.monotonic() + left
        while self.running and self.services.clock.monotonic() < deadline:
            await self.services.clock.sleep(0.05)
        for container in list(self.running.values()):
            container.kill()

    async def _pre_stop(self, name: str, running: RunningContainer, grace: float) -> None:
        container = self._containers[name]
        handler = container.lifecycle.pre_stop if container.lifecycle else None
        if handler is None or grace <= 0:
            return
        error = await run_hook(handler, runtime=self.services.runtime, running=running, container=container,
                               pod_ip=self.addresses.pod_ip, timeout=grace)
        if error is not None:
            self.services.events.record(self.object_ref(name), WARNING, "FailedPreStopHook",
                                        f"PreStopHook failed: {error}")

    async def _tear_down(self) -> None:
        services = self.services
        if services.sandboxes is not None:
            try:
                await services.sandboxes.remove_pod_sandbox(self.pod.uid)
            except NodeAgentError as exc:
                log.error("pod=%s: removing its sandbox: %s", self.key, exc)
                return  # keep the state: the next agent start tries again
        cgroups = [c.path for c in (*self.plan.containers, self.plan.monitor, self.plan.pod) if c is not None]
        try:
            await services.cgroups.remove(cgroups)
        except NodeAgentError as exc:
            log.error("pod=%s: removing its cgroups: %s", self.key, exc)
            return  # keep the state: the next agent start tries again
        if self.own_network:
            assert services.networks is not None
            try:
                await services.networks.tear_down(self.pod.uid)
            except NodeAgentError as exc:
                log.error("pod=%s: removing its network: %s", self.key, exc)
                return
        self._torn_down = True
        directory = volumes.pod_dir(services.state_dir, self.pod.uid)
        volumes.remove_mount_points(directory)
        try:
            await volumes.tear_down(services.state_dir, self.pod.uid)
        except NodeAgentError as exc:
            log.error("pod=%s: removing its volumes: %s", self.key, exc)
        log_dir = pod_log_dir(services.logs_dir, self.pod.namespace, self.pod.name, self.pod.uid)
        await asyncio.to_thread(shutil.rmtree, log_dir, True)

    # -- helpers ------------------------------------------------------------------------------------

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep, or less if the pod is stopped; True if it was."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    def _update(self, name: str, **changes: Any) -> None:
        before = self.records[name]
        if changes.get("state") is State.WAITING and before.terminated is not None:
            changes.update(terminated=None, last_termination=before.terminated)  # waiting to restart
        after = replace(before, **changes)
        self.records[name] = after
        if after.state is not before.state or after.reason != before.reason:
            log.info("pod=%s uid=%s container=%s from=%s to=%s reason=%s", self.key, self.pod.uid, name,
                     _label(before), _label(after), _reason(after))
        ready = all(r.ready for r in self.records.values() if not r.init)
        if ready != self._ready:
            self._ready = ready
            if ready and "Ready" not in self.transitions:
                self.services.metrics.pod_started((self.services.clock.now() - self.created_at).total_seconds())
            self._transition("Ready")
            self._transition("ContainersReady")
        self._changed()

    def _transition(self, condition: str) -> None:
        self.transitions[condition] = self.services.clock.now()

    def _changed(self) -> None:
        """Tell the agent, and save the state once this turn of the event loop is over."""
        self.services.on_change()
        if not self._save_scheduled:
            self._save_scheduled = True
            asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._save_scheduled = False
        if not self._torn_down:
            self.services.persist(self)


def host_ports(pod: StaticPod) -> list[HostPort]:
    """The ports the pod's containers publish on the node (the kubelet's port mappings)."""
    return [HostPort(container_port=port.container_port or 0, host_port=port.host_port, protocol=port.protocol,
                     host_ip=port.host_ip)
            for container in pod.pod.spec.containers or [] for port in container.ports or []
            if port.host_port]


def _read(path: str) -> str:
    """The node's resolv.conf or hosts file; a node without one gives its pods none of its entries."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as exc:
        log.warning("reading %s for the pods' /etc files: %s", path, exc.strerror)
        return ""


def _label(record: ContainerRecord) -> str:
    return record.state.value.capitalize()


def _reason(record: ContainerRecord) -> str:
    if record.state is State.TERMINATED and record.terminated is not None:
        return f"{record.terminated.reason} exitCode={record.terminated.exit_code}"
    return record.reason or "-"
