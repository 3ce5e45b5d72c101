"""A pod's containers, one attempt at a time as the pod's lifecycle decides (nodeagent.agent.worker): started
(image pulled, cgroup made), watched with its probes, recorded on exit (OOMKilled 137 with its event) with when
it may start again (crash-loop or pull back-off), taken back after an agent restart. Records change through
`_update` (the pod's Ready condition, the saved state), lifecycle states through `_move` (lifecycle.next_state).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import replace

from nodeagent.agent import backoff, stopping, termination_message, volumes
from nodeagent.agent.admission import Rejection
from nodeagent.agent.clock import within
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import NORMAL, WARNING, ObjectRef
from nodeagent.agent.hooks import run_hook
from nodeagent.agent.lifecycle import (
    ContainerEvent,
    ContainerKind,
    ContainerState,
    ObservedContainer,
    PodState,
    exit_event,
    next_state,
    restart_policy,
)
from nodeagent.agent.probes import ProbeCallbacks, reporting_callbacks, run_probes
from nodeagent.agent.pulls import ensure_image, record_start_failure
from nodeagent.agent.records import (
    ContainerRecord,
    ContainerSlot,
    State,
    Termination,
    initial_records,
    reason_label,
    state_label,
    termination_reason,
)
from nodeagent.agent.security import host_has_apparmor, refuse_unenforceable
from nodeagent.agent.services import NodeServices
from nodeagent.agent.specs import PodContext
from nodeagent.agent.wake import Wake
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container, Probe
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.plan.pod import ResourcePlan, plan_pod
from nodeagent.runtime.base import ContainerExit, ContainerSpec, RunningContainer, Sandbox

log = logging.getLogger(__name__)

START_RETRY_SECONDS = 10.0  # the kubelet's pod worker back-off after a failed sync
PULL_ERROR_SHOWN_SECONDS = 1.0  # ErrImagePull shows this long before ImagePullBackOff


class ContainerSupervisor:
    """A pod's containers and their records: each started, watched, restarted with back-off and recorded
    as the kubelet does. PodWorker (nodeagent.agent.worker) runs the pod's lifecycle on top of it."""

    def __init__(self, pod: StaticPod, services: NodeServices) -> None:
        self.pod = pod
        self.services = services
        self.plan: ResourcePlan = plan_pod(pod, services.node, services.settings)
        self.context = PodContext(pod, self.plan, services)
        self.created_at = services.clock.now()
        self.start_time: dt.datetime | None = None
        self.terminating_since: dt.datetime | None = None
        self.records: dict[str, ContainerRecord] = initial_records(pod.pod)
        self.slots = {c.valid_name: ContainerSlot(c) for c in pod.pod.all_containers()}
        self.state = PodState.PENDING
        self.transitions: dict[str, dt.datetime] = {}
        self.volumes: volumes.PodVolumes | None = None
        self.sandbox: Sandbox | None = None
        self.rejection: Rejection | None = None  # not admitted (yet): why
        self._ready = False
        self._wake = Wake()  # the pod's lifecycle decides again: admitted, stopped, a sidecar started
        self.deadline_exceeded = False  # spec.activeDeadlineSeconds has passed: Failed, nothing runs (saved)
        self._save_scheduled = False
        self._stoppers: set[asyncio.Task[None]] = set()  # SIGTERM -> SIGKILL of containers started too late
        self.done = asyncio.Event()

    # -- what others read -------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.pod.key

    @property
    def addresses(self) -> PodAddresses:
        """The node's address, and the pod's: its lease, or the node's for hostNetwork ("" before its lease)."""
        node = self.services.addresses
        if self.services.sandboxes is not None and not self.pod.pod.spec.host_network:
            return replace(node, pod_ip=(self.sandbox.ip or "") if self.sandbox else "")
        if not self.context.own_network:
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
    def stopping(self) -> bool:  # its manifest is gone or changed
        return self.state in (PodState.TERMINATING, PodState.TERMINATED)

    @property
    def pod_label(self) -> str:
        """format.Pod: name_namespace(uid), as the kubelet names pods in messages."""
        return f"{self.pod.name}_{self.pod.namespace}({self.pod.uid})"

    # -- lifecycle ----------------------------------------------------------------------------------

    def _kind(self, name: str) -> ContainerKind:
        record = self.records[name]
        return ContainerKind.SIDECAR if record.sidecar else ContainerKind.INIT if record.init else ContainerKind.APP

    def _policy(self, name: str) -> str:
        return restart_policy(self._kind(name), self.pod.pod.spec.restart_policy)

    def _move(self, name: str, event: ContainerEvent, *, exit_code: int | None = None,
              retry_at: float | None = None) -> None:
        """The container's lifecycle state after `event` (lifecycle.next_state, under its restart policy)."""
        slot = self.slots[name]
        before = slot.observed
        slot.observed = ObservedContainer(next_state(before.state, event, self._policy(name)),
                                          exit_code if exit_code is not None else before.exit_code, retry_at,
                                          started=event is not ContainerEvent.STARTED)
        if event is ContainerEvent.STARTED and slot.container.startup_probe is None:
            self._started(name)  # no startupProbe: it counts as started as it runs

    def _started(self, name: str) -> None:
        """The container counts as started (its startupProbe passed): a sidecar lets the next one begin."""
        slot = self.slots[name]
        slot.observed = replace(slot.observed, started=True)
        if self.records[name].sidecar:
            self._wake.notify()  # the next init container waits for this start, not for an end

    async def _attempt(self, container: Container) -> None:
        """One start of a container, as the pod's lifecycle decided: started, watched until it exits, recorded
        with when it may start again. A start that fails is recorded with its back-off."""
        name = container.valid_name
        if self.slots[name].observed.state is not ContainerState.WAITING:
            self._retry(name)
        try:
            running = await self._start(container)
        except (NodeAgentError, OSError) as exc:  # any failure of a start is reported and retried
            failure = exc if isinstance(exc, RuntimeStartError) else RuntimeStartError("CreateContainerError", str(exc))
            await self._start_failed(container, failure)
            return
        self.slots[name].pull_backoff = None
        await self._post_start(container, running)
        await self._watch(name, running)

    def _retry(self, name: str) -> None:
        """Its back-off is over: after an exit, the crash-loop back-off moves on (doubles, or resets after a
        long run), as the kubelet's does when the restart goes ahead."""
        slot = self.slots[name]
        if slot.finished_at is not None:
            slot.backoff = backoff.next_backoff(slot.backoff, slot.finished_at,
                                                      self.services.clock.monotonic())
        self._move(name, ContainerEvent.RETRY)

    async def _start_failed(self, container: Container, exc: RuntimeStartError) -> None:
        """Nothing ran, so no crash loop. A failed pull backs off as the kubelet's image back-off does
        (ErrImagePull, then ImagePullBackOff for 10 s doubling to 300 s); any other failure keeps its
        reason and is retried at the kubelet's sync back-off."""
        name = container.valid_name
        record_start_failure(self.services.events, self.object_ref(name), container.image, exc)
        if exc.reason != "ErrImagePull":
            self._update(name, self.records[name].waiting(exc.reason, exc.message))
            self._move(name, ContainerEvent.START_FAILED,
                       retry_at=self.services.clock.monotonic() + START_RETRY_SECONDS)
            return
        now = self.services.clock.monotonic()
        entry = backoff.next_backoff(self.slots[name].pull_backoff, now, now)
        self.slots[name].pull_backoff = entry
        self._update(name, self.records[name].waiting("ErrImagePull", exc.message))
        self._move(name, ContainerEvent.START_FAILED, retry_at=now + entry.seconds)
        if await self._sleep_or_stop(min(PULL_ERROR_SHOWN_SECONDS, entry.seconds)):
            return
        self._update(name, self.records[name].waiting("ImagePullBackOff",
                                                      f'Back-off pulling image "{container.image}"'))
        self.services.events.record(self.object_ref(name), NORMAL, "BackOff",
                                    f'Back-off pulling image "{container.image}"')

    async def _post_start(self, container: Container, running: RunningContainer) -> None:
        """postStart runs right after the start; if it fails the container is killed, as the kubelet does."""
        handler = container.lifecycle.post_start if container.lifecycle else None
        if handler is None:
            return
        error = await run_hook(handler, runtime=self.services.runtime, running=running, container=container,
                               pod_ip=self.addresses.pod_ip,
                               timeout=float(self._grace_period or stopping.MIN_GRACE_SECONDS),
                               clock=self.services.clock)
        if error is not None:
            name = container.valid_name
            self.services.events.record(self.object_ref(name), WARNING, "FailedPostStartHook",
                                        f"{error} in Pod \"{self.pod_label}\"")
            running.kill()

    async def _resume(self, container: Container) -> None:
        """After an agent restart: take the saved running container back, or learn how it ended meanwhile."""
        name = container.valid_name
        record = self.records[name]
        slot = self.slots[name]
        saved = slot.adoptable
        assert saved is not None  # resumed only when there is something to adopt
        spec = await self._container_spec(container, record.restart_count)
        outcome = await self.services.runtime.adopt(spec, saved)
        slot.adoptable = None  # only now: a save while adopt() runs must still know the container
        self._move(name, ContainerEvent.STARTED)  # it ran: under the agent before, or still
        if isinstance(outcome, ContainerExit):
            log.info("pod=%s container=%s ended while the agent was away (exit code %d)", self.key, name,
                     outcome.exit_code)
            # the runtime's own record of the attempt: one begun after the last save the agent knows only by it
            await self._record_exit(name, outcome, outcome.started_at or record.started_at,
                                    outcome.container_id or record.container_id)
            return
        slot.running = outcome
        if record.container_id != outcome.container_id:  # found running, its saved state lost
            probed = container.readiness_probe is not None or container.startup_probe is not None
            self._update(name, record.taken_back(outcome.started_at, outcome.container_id, outcome.pid,
                                                 ready=not probed))
        # DEBUG: a restart with 1,000 pods would log 1,000 lines (~30 ms); READY's line counts the pods restored
        log.debug("pod=%s container=%s adopted: %s, pid %d", self.key, name, outcome.container_id, outcome.pid)
        self._stop_if_stopping(name, outcome)
        await self._watch(name, outcome)

    async def _start(self, container: Container) -> RunningContainer:
        name = container.valid_name
        record = self.records[name]
        attempt = record.next_attempt
        refuse_unenforceable(self.pod.pod, container, host_has_apparmor)
        spec = await self._container_spec(container, attempt)
        services = self.services
        pod_dir = self.context.pod_dir
        if self.volumes is not None:  # a new file per attempt, as the kubelet's makeMounts
            message = await asyncio.to_thread(termination_message.message_mount, pod_dir, container, attempt)
            spec = replace(spec, mounts=(*spec.mounts, message)) if message is not None else spec
        image_id = await ensure_image(services.runtime, services.events, self.object_ref(name), spec)
        if self.volumes is not None:
            await self.volumes.prepare_subpaths(container)
        if services.runtime.host_mount_points and spec.mounts:
            await asyncio.to_thread(volumes.ensure_mount_points, pod_dir, spec.mounts,
                                    (termination_message.DEFAULT_PATH,))
        own_cgroup = services.sandboxes is None  # else the runtime makes it from the spec's resources
        if own_cgroup:
            await services.cgroups.remove([spec.cgroup.path])  # whatever an earlier attempt left behind
            await services.cgroups.apply([spec.cgroup])
            services.attach_warmth.kick()  # after its mkdir, which the kick's first write would hold up
        try:
            running = await services.runtime.start(spec)
        except RuntimeStartError:
            if own_cgroup:
                await services.cgroups.remove([spec.cgroup.path])
            raise
        self.slots[name].running = running
        self._move(name, ContainerEvent.STARTED)
        probed = container.readiness_probe is not None or container.startup_probe is not None
        self._update(name, self.records[name].started(running.started_at, running.container_id, running.pid,
                                                      ready=not probed, attempt=attempt, image_id=image_id))
        services.metrics.container_started(init=record.init)
        services.events.record(self.object_ref(name), NORMAL, "Created", f"Created container: {name}")
        services.events.record(self.object_ref(name), NORMAL, "Started", f"Started container {name}")
        self._stop_if_stopping(name, running)
        return running

    def _stop_if_stopping(self, name: str, running: RunningContainer) -> None:
        """A container that came (or came back) after the pod's termination began (or its deadline passed),
        which it missed: stopped now as the kubelet's killContainer stops one (PodTerminator._stop_container: preStop,
        its stop signal, SIGKILL after the grace period), in a task the worker holds."""
        if not (self.stopping or self.deadline_exceeded):
            return
        stopping = asyncio.create_task(self._stop_container(name, running), name=f"stop {self.key}/{name}")
        self._stoppers.add(stopping)
        stopping.add_done_callback(self._stoppers.discard)

    async def _stop_container(self, name: str, running: RunningContainer, probe: Probe | None = None) -> None:
        """preStop, the stop signal, SIGKILL after the grace period: PodTerminator's."""
        raise NotImplementedError

    def _stop_signal(self, name: str, running: RunningContainer) -> int:
        """lifecycle.stopSignal, else the image's STOPSIGNAL, else SIGTERM (nodeagent.agent.stopping)."""
        return stopping.stop_signal(self.slots[name].container, running.image_stop_signal)

    @property
    def _grace_period(self) -> int:
        return self.pod.pod.spec.termination_grace_period_seconds

    async def _watch(self, name: str, running: RunningContainer) -> ContainerExit:
        container = self.slots[name].container
        probing = None
        if any((container.startup_probe, container.liveness_probe, container.readiness_probe)):
            probing = asyncio.create_task(run_probes(
                container, runtime=self.services.runtime, running=running, pod_ip=self.addresses.pod_ip,
                callbacks=self._probe_callbacks(name, running), clock=self.services.clock),
                name=f"probes {self.key}/{name}")
        try:
            exit_ = await running.wait()
        finally:
            if probing is not None:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)
        return await self._record_exit(name, exit_, running.started_at, running.container_id)

    def _probe_callbacks(self, name: str, running: RunningContainer) -> ProbeCallbacks:
        def ready(value: bool) -> None:
            if self.records[name].state is State.RUNNING:
                self._update(name, self.records[name].with_ready(value))

        def started() -> None:
            if self.slots[name].running is running:
                self._started(name)

        return reporting_callbacks(self.object_ref(name), self.services.events, ready,
                                   lambda probe: self._stop_container(name, running, probe), started)

    async def _record_exit(self, name: str, exit_: ContainerExit, started_at: dt.datetime | None,
                           container_id: str | None) -> ContainerExit:
        slot = self.slots[name]
        slot.running = None
        elapsed = (self.services.clock.now() - exit_.finished_at).total_seconds()
        slot.finished_at = self.services.clock.monotonic() - max(elapsed, 0.0)
        reason = termination_reason(exit_.exit_code, exit_.oom_killed, exit_.unknown)
        attempt = self.records[name].restart_count
        message = ("The container could not be located when the pod was terminated" if exit_.unknown
                   else await asyncio.to_thread(termination_message.read_attempt, self.context.pod_dir,
                                                slot.container, attempt, self.context.log_path(name, attempt),
                                                exit_.exit_code) or None)
        termination = Termination(exit_code=exit_.exit_code, reason=reason, started_at=started_at,
                                  finished_at=exit_.finished_at, container_id=container_id, message=message)
        self._update(name, self.records[name].ended(termination))
        now = self.services.clock.monotonic()
        wait = backoff.remaining(slot.backoff, slot.finished_at, now)
        self._move(name, exit_event(exit_.exit_code), exit_code=exit_.exit_code, retry_at=now + wait)
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

    async def _container_spec(self, container: Container, attempt: int) -> ContainerSpec:
        return await self.context.container_spec(container, attempt, addresses=self.addresses,
                                                 pod_volumes=self.volumes)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep, or less if the pod is stopped; True if it was."""
        with contextlib.suppress(TimeoutError):
            await within(self.services.clock, seconds, self._wake.until(lambda: self.stopping))
        return self.stopping

    def _update(self, name: str, after: ContainerRecord) -> None:
        """The container's record replaced (records.py's typed steps); logged, the Ready condition kept."""
        before = self.records[name]
        self.records[name] = after
        if after.state is not before.state or after.reason != before.reason:
            log.info("pod=%s uid=%s container=%s from=%s to=%s reason=%s", self.key, self.pod.uid, name,
                     state_label(before), state_label(after), reason_label(after))
        ready = all(r.ready for r in self.records.values() if not r.init or r.sidecar)
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
        if self.state is not PodState.TERMINATED:
            self._persist()

    def _persist(self) -> None:
        """Save the pod's state: PodWorker's (the store saves a worker)."""
        raise NotImplementedError
