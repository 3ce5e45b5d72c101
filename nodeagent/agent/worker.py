"""One pod's life on the node, as the kubelet's pod worker lives it, decided by nodeagent.agent.lifecycle:

    loop: actions = compute_pod_actions(desired, observed); act; wait for a change (an attempt ends, the
          pod stops, a back-off ends at actions.wake_at)
      Pending -> SettingUp (pod cgroup, network, volumes) -> Initializing (init containers one after the other,
      each to completion, restarted on failure unless Never; sidecars started and kept running) -> Running (app
      containers, restarted per restartPolicy with back-off) -> Succeeded | Failed (listed until its manifest goes)
    stop(): preStop, stop signal, SIGKILL after the grace period (apps, then sidecars in reverse); then tear down
    (retried with back-off while a part of it cannot be removed). activeDeadlineSeconds passed: the same stop
    without the tear-down; the pod stays Failed (DeadlineExceeded) and nothing starts again.

A cancelled worker (the agent stopping) leaves its containers running: they are not the agent's to
kill. Its state is saved on every change (nodeagent.agent.snapshot), so that a new agent process
takes the same containers back: same IDs, restart counts, last states and back-off timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import replace
from typing import Any

from nodeagent.agent import backoff, deadline, volumes
from nodeagent.agent.admission import Rejection
from nodeagent.agent.events import NORMAL, WARNING
from nodeagent.agent.lifecycle import (
    ContainerEvent,
    ContainerState,
    DesiredContainer,
    DesiredPod,
    ObservedContainer,
    ObservedPod,
    PodEvent,
    PodState,
    after_exit,
    compute_pod_actions,
    next_pod_state,
)
from nodeagent.agent.pod_termination import PodTerminator
from nodeagent.agent.records import State
from nodeagent.agent.specs import host_ports
from nodeagent.agent.status import PodFacts, pod_json
from nodeagent.errors import NodeAgentError
from nodeagent.runtime.base import RunningContainer, Runtime
from nodeagent.runtime.logrotate import LogFile
from nodeagent.runtime.logs import pod_log_dir
from nodeagent.timeformat import go_duration

log = logging.getLogger(__name__)

SETUP_RETRY_SECONDS = (1.0, 30.0)  # set-up and tear-down retried with this doubling delay


class PodWorker(PodTerminator):
    """One pod's lifecycle: admission, set-up, init then app containers, termination, tear-down."""

    def _persist(self) -> None:
        self.services.persist(self)

    def log_files(self) -> list[LogFile]:
        """Each container's log files to keep bounded: the previous attempt's, and the current one's with its
        writer while it runs, or once it has ended (not while it starts or is adopted: no writer known yet)."""
        files = []
        for name, record in self.records.items():
            if record.restart_count > 0:
                files.append(LogFile(self.context.log_path(name, record.restart_count - 1), None))
            running = self.slots[name].running
            if running is not None:
                files.append(LogFile(self.context.log_path(name, record.restart_count), running.reopen_log))
            elif record.container_id is not None and record.state is not State.RUNNING:  # that attempt has ended
                files.append(LogFile(self.context.log_path(name, record.restart_count), None))
        return files

    @property
    def runtime(self) -> Runtime:
        return self.services.runtime

    def running_container(self, name: str) -> RunningContainer | None:
        record = self.records.get(name)
        return self.slots[name].running if record is not None and record.state is State.RUNNING else None

    def to_json(self) -> dict[str, Any]:
        rejection = self.rejection
        addresses = self.addresses
        reason, message = (rejection.reason, rejection.message) if rejection else (None, None)
        if self.deadline_exceeded:
            reason, message = deadline.REASON, deadline.MESSAGE
        facts = PodFacts(created_at=self.created_at, host_ip=addresses.host_ip,
                         pod_ip=addresses.pod_ip, start_time=self.start_time,
                         terminating_since=self.terminating_since, transitions=self.transitions,
                         reason=reason, message=message, failed=self.deadline_exceeded,
                         started=frozenset(name for name, slot in self.slots.items()
                                           if slot.observed.state is ContainerState.RUNNING and slot.observed.started))
        return pod_json(self.pod, list(self.records.values()), facts, self.context.dumped)

    @property
    def admitted(self) -> bool:
        return self.rejection is None

    def reject(self, rejection: Rejection) -> None:
        """Keep the pod Pending: its requests do not fit (yet). The reason shows in the pod's status."""
        first = self.rejection is None or self.rejection.reason != rejection.reason
        self.rejection = rejection
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
        self._changed()
        self._wake.notify()

    def stop(self) -> None:
        """Terminate the pod: its manifest is gone or changed."""
        if self.terminating_since is None:
            self.terminating_since = self.services.clock.now()
            self._changed()
        self.state = next_pod_state(self.state, PodEvent.STOP)
        self._wake.notify()

    async def run(self) -> None:
        try:
            life = asyncio.create_task(self._live(), name=f"pod {self.key}")
            try:
                await self._wake.until(lambda: self.stopping)
                await self._terminate_containers()
                await life
            finally:
                if not life.done():
                    life.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await life
                for stopping in list(self._stoppers):
                    stopping.cancel()
            await self._tear_down_until_done()
        finally:
            self.done.set()

    async def _live(self) -> None:
        """Decide, act, wait for a change, decide again (lifecycle.compute_pod_actions), until the pod is
        finished or stopping. The containers' attempts it started are awaited (stopping: they end as run()
        terminates their containers) or, if the agent stops, cancelled, their containers left running."""
        attempts: dict[str, asyncio.Task[None]] = {}
        try:
            await self._decide_and_act(attempts)
            if self.stopping:  # stopped before its set-up was done: what it had to take back, too
                self._take_back(attempts)
            await asyncio.gather(*attempts.values())
        finally:
            for task in attempts.values():
                task.cancel()
            await asyncio.gather(*attempts.values(), return_exceptions=True)

    async def _decide_and_act(self, attempts: dict[str, asyncio.Task[None]]) -> None:
        while True:
            changes = self._wake.changes
            actions = compute_pod_actions(self._desired(), self._observed())
            if actions.state in (PodState.TERMINATING, PodState.TERMINATED):
                return  # run() stops the containers (preStop, TERM, KILL), then tears the pod down
            self._enter(actions.state)
            if actions.state is PodState.PENDING:
                if not await self._until_admitted():
                    return
                continue
            if actions.set_up:
                adopting = any(slot.adoptable is not None for slot in self.slots.values())
                # After an agent restart its containers run in their cgroups and network: READY waits for them
                # taken back, not for those repaired (drifted values, a lost namespace), which follows READY.
                repair_later = adopting and self.services.sandboxes is None
                if not await self._set_up(adopting, node_side=not repair_later):
                    return
                self._take_back(attempts)  # after an agent restart: what ran is taken back, what ended is known
                for name in self.records:
                    self._resumed(name)
                if repair_later:  # before the next decision, so before any container starts
                    await self._until_agent_ready()
                    if not await self._set_up(adopting, pod_files=False):  # False once stopped: no repair
                        return
                continue
            if actions.deadline_exceeded:
                await self._exceed_deadline(attempts)
                return  # Failed: it stays listed until its manifest goes
            if actions.state in (PodState.SUCCEEDED, PodState.FAILED):
                if not attempts:
                    return  # finished: it stays listed until its manifest goes
                await self._stop_in_order(actions.stop)  # its sidecars, once its app containers are done
            for name in actions.start:
                if name not in attempts:
                    attempts[name] = asyncio.create_task(self._attempt(self.slots[name].container),
                                                         name=f"{self.key}/{name}")
            now = self.services.clock.monotonic()
            for name, seen in ((name, slot.observed) for name, slot in self.slots.items()):
                if seen.state is ContainerState.EXITED and (seen.retry_at or now) > now and name not in attempts:
                    self._show_back_off(name)
            await self._until_changed(attempts, actions.wake_at, changes)

    async def _until_changed(self, attempts: dict[str, asyncio.Task[None]], wake_at: float | None,
                             changes: int) -> None:
        """Until an attempt ends (its container exited, or its start failed), `wake_at`, or a change the lifecycle
        decides on happened since the decision (`changes`: the Wake's count then): admitted, stopped, a sidecar
        started."""
        waits: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._wake.until(lambda: self._wake.changes != changes))}
        if wake_at is not None:
            waits.add(asyncio.ensure_future(self.services.clock.sleep(wake_at - self.services.clock.monotonic())))
        try:
            await asyncio.wait({*waits, *attempts.values()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        for name, task in list(attempts.items()):
            if task.done():
                del attempts[name]
                task.result()  # a bug's exception ends the worker, as it did under a task group

    def _take_back(self, attempts: dict[str, asyncio.Task[None]]) -> None:
        """After an agent restart: each container saved running taken back, in an attempt of its own (if the pod
        is stopping, it is stopped as it comes back: preStop, its stop signal, SIGKILL after the grace period)."""
        for name, slot in self.slots.items():
            if slot.adoptable is not None and name not in attempts:
                attempts[name] = asyncio.create_task(self._resume(slot.container), name=f"{self.key}/{name}")

    def _resumed(self, name: str) -> None:
        """After an agent restart, a container recorded as ended and not taken back: its lifecycle state, and
        when it may restart (its saved crash-loop back-off)."""
        record = self.records[name]
        slot = self.slots[name]
        if record.state is not State.TERMINATED or record.terminated is None or slot.adoptable is not None:
            return
        code = record.terminated.exit_code
        now = self.services.clock.monotonic()
        finished = slot.finished_at
        wait = backoff.remaining(slot.backoff, finished, now) if finished is not None else 0.0
        slot.observed = ObservedContainer(after_exit(self._policy(name), code), code, now + wait)

    def _show_back_off(self, name: str) -> None:
        """An exited container whose restart waits out the crash-loop back-off: CrashLoopBackOff."""
        entry = self.slots[name].backoff
        assert entry is not None  # a wait comes from a back-off
        message = f"back-off {go_duration(entry.seconds)} restarting failed container={name} pod={self.pod_label}"
        self._update(name, self.records[name].waiting("CrashLoopBackOff", message))
        self.services.events.record(self.object_ref(name), WARNING, "BackOff",
                                    f"Back-off restarting failed container {name} in pod {self.pod_label}")
        self._move(name, ContainerEvent.BACK_OFF, retry_at=self.slots[name].observed.retry_at)

    async def _exceed_deadline(self, attempts: dict[str, asyncio.Task[None]]) -> None:
        """activeDeadlineSeconds has passed: Failed (DeadlineExceeded, said once), every running container stopped
        as in a termination; what is still being taken back is stopped as it comes (_stop_if_stopping)."""
        if not self.deadline_exceeded:
            self.services.events.record(self.object_ref(), NORMAL, deadline.REASON, deadline.MESSAGE)
            log.info("pod=%s uid=%s: %s", self.key, self.pod.uid, deadline.MESSAGE)
            self.deadline_exceeded = True
            self._changed()
        await self._terminate_containers()
        await asyncio.gather(*attempts.values())
        attempts.clear()

    def _desired(self) -> DesiredPod:
        containers = tuple(DesiredContainer(name, self._kind(name)) for name in self.records)
        spec = self.pod.pod.spec
        counts = deadline.applies(spec, self.records.values(), failed_already=self.deadline_exceeded)
        return DesiredPod(containers, spec.restart_policy, stopping=self.stopping,
                          active_deadline_seconds=spec.active_deadline_seconds if counts else None)

    def _observed(self) -> ObservedPod:
        """What is seen now; the deadline counts from the pod's start (status.startTime, saved across restarts)."""
        clock = self.services.clock
        set_up = self.volumes is not None
        started_at = None
        if set_up and self.start_time is not None:
            started_at = clock.monotonic() - (clock.now() - self.start_time).total_seconds()
        return ObservedPod(now=clock.monotonic(), admitted=self.admitted, set_up=set_up, started_at=started_at,
                           containers={name: slot.observed for name, slot in self.slots.items()})

    def _enter(self, state: PodState) -> None:
        """The pod's lifecycle state; once its init containers have completed: Initialized."""
        if state is PodState.RUNNING and self.state is not PodState.RUNNING:
            if "Initialized" not in self.transitions:  # not again for a pod adopted after a restart
                self._transition("Initialized")
            for name, record in self.records.items():
                if not record.init and record.reason == "PodInitializing":
                    self._update(name, record.waiting("ContainerCreating"))
        self.state = state

    async def _until_admitted(self) -> bool:
        """True once admitted; False if the pod is stopped first (never admitted, it has nothing to undo)."""
        await self._wake.until(lambda: self.admitted or self.stopping)
        return self.admitted

    async def _set_up(self, adopting: bool, *, node_side: bool = True, pod_files: bool = True) -> bool:
        """Pod cgroup, network and volumes, retried (FailedCreatePodSandBox, FailedMount) until they work
        or the pod is stopped. `adopting`: containers of an earlier agent are to be taken back."""
        delay = SETUP_RETRY_SECONDS[0]
        while not self.stopping:
            try:
                if node_side:
                    await self._set_up_node_side(adopting)
                if pod_files:
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

    async def _until_agent_ready(self) -> None:
        """Until the agent's READY, or the pod is stopped: READY follows the first sync, which may stop it."""
        ready = asyncio.ensure_future(self.services.agent_ready.wait())
        stopped = asyncio.ensure_future(self._wake.until(lambda: self.stopping))
        try:
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (ready, stopped):
                waiting.cancel()
            await asyncio.gather(ready, stopped, return_exceptions=True)

    async def _set_up_node_side(self, adopting: bool) -> None:
        """The pod's cgroups (conmon's too, unless the runtime monitors its containers itself: cri), its network
        or sandbox."""
        monitor = self.plan.monitor if self.services.sandboxes is None else None
        await self.services.cgroups.apply([c for c in (self.plan.pod, monitor) if c is not None])
        networks = self.services.networks
        if self.context.own_network and networks is not None:
            # Containers taken back after a restart run in their network already: keep it as it is.
            if not (adopting and networks.resume(self.pod.uid)):
                await networks.set_up(self.pod.uid, name=self.pod.name, namespace=self.pod.namespace,
                                      host_ports=host_ports(self.pod))
            self._changed()  # the pod has its IP
        if self.services.sandboxes is not None:
            self.sandbox = await self.services.sandboxes.run_pod_sandbox(self.context.sandbox_spec())
            self._changed()

    async def _tear_down_until_done(self) -> None:
        """Tear the pod down, retried with a doubling delay (1 s to 30 s) while a part of it cannot be removed
        (containerd down, a busy cgroup): the pod stays listed as terminating meanwhile. If the agent stops
        first, the state is kept and the next agent start tries again."""
        delay = SETUP_RETRY_SECONDS[0]
        while not await self._tear_down():
            await self.services.clock.sleep(delay)
            delay = min(delay * 2, SETUP_RETRY_SECONDS[1])

    async def _tear_down(self) -> bool:
        """Sandbox, cgroups and network removed (then volumes and logs); False if one of them could not be."""
        services = self.services
        try:
            if services.sandboxes is not None:
                await services.sandboxes.remove_pod_sandbox(self.pod.uid)
            cgroups = [c.path for c in (*self.plan.containers, self.plan.monitor, self.plan.pod) if c is not None]
            await services.cgroups.remove(cgroups)
            if self.context.own_network:
                assert services.networks is not None
                await services.networks.tear_down(self.pod.uid)
        except NodeAgentError as exc:
            log.error("pod=%s: tearing it down (tried again later): %s", self.key, exc)
            return False
        # its state is no longer saved: the next agent has nothing to take back
        self.state = next_pod_state(self.state, PodEvent.TORN_DOWN)
        await services.forget(self.pod.uid)  # a write still in flight must not recreate the directory
        directory = volumes.pod_dir(services.state_dir, self.pod.uid)
        await asyncio.to_thread(volumes.remove_mount_points, directory)
        try:
            await volumes.tear_down(services.state_dir, self.pod.uid)
        except NodeAgentError as exc:
            log.error("pod=%s: removing its volumes: %s", self.key, exc)
        log_dir = pod_log_dir(services.logs_dir, self.pod.namespace, self.pod.name, self.pod.uid)
        await asyncio.to_thread(shutil.rmtree, log_dir, True)
        return True

    # -- helpers ------------------------------------------------------------------------------------

