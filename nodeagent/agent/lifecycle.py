"""The pod lifecycle as one explicit state machine: pure decisions, no effects.

    Pending --admit--> SettingUp --set up--> Initializing --inits done--> Running --> Succeeded | Failed
       (any state) --stop--> Terminating --nothing runs, torn down--> Terminated
       (Running/Initializing) --activeDeadlineSeconds--> Failed(DeadlineExceeded), its containers stopped

A container, as the lifecycle sees it (`ContainerState`; Kubernetes shows waiting/running/terminated):

    Waiting --Started--> Running --Exited(code)--> Exited (will restart) | Done (will not)
    Waiting --StartFailed--> BackingOff --Retry--> Waiting
    Exited --BackOff--> BackingOff;  Exited --Retry--> Waiting

`next_state` is the container's transition function and `next_pod_state` the pod's for what is not decided here
(a stop, its tear-down); `compute_pod_actions(desired, observed)` is the kubelet's
computePodActions: from what the pod should be and what is observed, what to do now. The worker
(nodeagent.agent.worker) executes them: it decides, starts what `start` names, waits for a container to end,
the pod to stop or `wake_at`, and decides again; each container's state moves only through `next_state`.

Container kinds: INIT (run to completion, one after the other), SIDECAR (an init container with restartPolicy:
Always: started in init order, the next init container does not wait for its completion but for its start;
restarted whenever it exits; stopped after the app containers, in reverse order, and once the app containers of a
pod that does not restart them are done) and APP. activeDeadlineSeconds is a pod-level action
(`deadline_exceeded`, every container stopped); a termination message is read by the worker when it records an
exit and needs no decision here. The pod's termination (preStop, stop signal, KILL in the grace period) is run by
the worker once `stopping` is set, in the order of `stop_order`; a finished pod's `stop` groups are its sidecars.
A sidecar counts as started once it runs and its startupProbe, if it has one, has passed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from nodeagent.errors import NodeAgentError


class PodState(enum.Enum):
    PENDING = "Pending"  # not admitted (yet)
    SETTING_UP = "SettingUp"  # pod cgroup, network, volumes
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"  # stopped: nothing runs, ready to tear down


class ContainerKind(enum.Enum):
    INIT = "init"
    SIDECAR = "sidecar"  # an init container with restartPolicy: Always
    APP = "app"


class ContainerState(enum.Enum):
    WAITING = "Waiting"  # to be started (first or again)
    RUNNING = "Running"
    BACKING_OFF = "BackingOff"  # a crash-loop, pull or start back-off runs
    EXITED = "Exited"  # ended; to be restarted
    DONE = "Done"  # ended; not to be restarted


class ContainerEvent(enum.Enum):
    STARTED = "Started"
    START_FAILED = "StartFailed"
    EXITED_OK = "ExitedOk"  # exit code 0
    EXITED_FAILED = "ExitedFailed"
    BACK_OFF = "BackOff"
    RETRY = "Retry"


class PodEvent(enum.Enum):
    """What moves a pod's state besides the lifecycle's decisions (PodActions.state)."""

    STOP = "Stop"  # its manifest is gone or changed
    TORN_DOWN = "TornDown"  # nothing of it is left


class IllegalTransition(NodeAgentError):
    """A container event that its state does not allow: a bug of the worker, never of the input."""


def restart_policy(kind: ContainerKind, pod_policy: str) -> str:
    """The restart policy a container lives by: a sidecar Always, an init container OnFailure (Never if the pod's
    is Never), an app container the pod's."""
    if kind is ContainerKind.SIDECAR:
        return "Always"
    if kind is ContainerKind.INIT:
        return "Never" if pod_policy == "Never" else "OnFailure"
    return pod_policy


def restarts(policy: str, exit_code: int) -> bool:
    """ShouldContainerBeRestarted for an exited container."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def exit_event(exit_code: int) -> ContainerEvent:
    return ContainerEvent.EXITED_OK if exit_code == 0 else ContainerEvent.EXITED_FAILED


def after_exit(policy: str, exit_code: int) -> ContainerState:
    """The state of a container that exited with `exit_code` (also one that ended while the agent was away)."""
    return ContainerState.EXITED if restarts(policy, exit_code) else ContainerState.DONE


def next_state(state: ContainerState, event: ContainerEvent, policy: str) -> ContainerState:
    """The container's state after an event, under its restart policy; IllegalTransition if none."""
    if event in (ContainerEvent.EXITED_OK, ContainerEvent.EXITED_FAILED):
        if state is not ContainerState.RUNNING:
            raise IllegalTransition(f"{event.value} while {state.value}")
        return after_exit(policy, 0 if event is ContainerEvent.EXITED_OK else 1)
    allowed = _TRANSITIONS.get((state, event))
    if allowed is None:
        raise IllegalTransition(f"{event.value} while {state.value}")
    return allowed


def next_pod_state(state: PodState, event: PodEvent) -> PodState:
    """The pod's state after a stop (Terminating, from any state but Terminated) or its tear-down (Terminated,
    only from Terminating); IllegalTransition if none."""
    if event is PodEvent.STOP:
        return state if state is PodState.TERMINATED else PodState.TERMINATING
    if state is not PodState.TERMINATING:
        raise IllegalTransition(f"{event.value} while {state.value}")
    return PodState.TERMINATED


_TRANSITIONS: dict[tuple[ContainerState, ContainerEvent], ContainerState] = {
    (ContainerState.WAITING, ContainerEvent.STARTED): ContainerState.RUNNING,
    (ContainerState.WAITING, ContainerEvent.START_FAILED): ContainerState.BACKING_OFF,
    (ContainerState.BACKING_OFF, ContainerEvent.RETRY): ContainerState.WAITING,
    (ContainerState.EXITED, ContainerEvent.BACK_OFF): ContainerState.BACKING_OFF,
    (ContainerState.EXITED, ContainerEvent.RETRY): ContainerState.WAITING,
}


@dataclass(frozen=True, slots=True)
class DesiredContainer:
    name: str
    kind: ContainerKind


@dataclass(frozen=True, slots=True)
class DesiredPod:
    """What the pod's spec asks for, and whether it should still exist."""

    containers: tuple[DesiredContainer, ...]  # init containers and sidecars in spec order, then app containers
    restart_policy: str
    active_deadline_seconds: int | None = None
    stopping: bool = False  # its manifest is gone or changed


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    state: ContainerState = ContainerState.WAITING
    exit_code: int | None = None  # of its last exit
    retry_at: float | None = None  # monotonic: when its back-off ends (BACKING_OFF or EXITED)
    started: bool = True  # RUNNING: its startupProbe has passed (or it has none)


@dataclass(frozen=True, slots=True)
class ObservedPod:
    now: float  # monotonic
    admitted: bool = True
    set_up: bool = False
    started_at: float | None = None  # monotonic: when it was set up (the deadline counts from then)
    containers: Mapping[str, ObservedContainer] | None = None  # None: none observed (all WAITING)


@dataclass(frozen=True, slots=True)
class PodActions:
    state: PodState
    set_up: bool = False
    start: tuple[str, ...] = ()  # start now, in this order
    stop: tuple[tuple[str, ...], ...] = ()  # stop in steps: each group once the previous one has ended
    wake_at: float | None = None  # monotonic: decide again then (a back-off ends, the deadline comes)
    deadline_exceeded: bool = False
    tear_down: bool = False


def compute_pod_actions(desired: DesiredPod, observed: ObservedPod) -> PodActions:
    """What to do now to bring the observed pod towards the desired one."""
    seen = observed.containers or {}

    def state(name: str) -> ContainerState:
        return seen.get(name, ObservedContainer()).state

    running = [c for c in desired.containers if state(c.name) is ContainerState.RUNNING]
    deadline = _deadline(desired, observed)
    exceeded = deadline is not None and observed.now >= deadline
    if desired.stopping or exceeded:
        stop = stop_order(running)
        if desired.stopping:
            return PodActions(PodState.TERMINATING if stop else PodState.TERMINATED, stop=stop,
                              tear_down=not stop, deadline_exceeded=exceeded)
        return PodActions(PodState.FAILED, stop=stop, deadline_exceeded=True)
    if not observed.admitted:
        return PodActions(PodState.PENDING)
    if not observed.set_up:
        return PodActions(PodState.SETTING_UP, set_up=True)
    start: list[str] = []
    wakes: list[float] = [deadline] if deadline is not None else []

    def due(name: str) -> bool:
        """Is the container to start now? Else note when to look again."""
        seen_now = seen.get(name, ObservedContainer())
        if seen_now.state is ContainerState.WAITING:
            return True
        if seen_now.state in (ContainerState.EXITED, ContainerState.BACKING_OFF):
            if seen_now.retry_at is None or seen_now.retry_at <= observed.now:
                return True
            wakes.append(seen_now.retry_at)
        return False

    apps = [c for c in desired.containers if c.kind is ContainerKind.APP]
    if apps and all(state(c.name) is ContainerState.DONE for c in apps):
        # finished: its sidecars are stopped (in reverse order), and none starts again
        failed = any(seen[c.name].exit_code != 0 for c in apps)
        return PodActions(PodState.FAILED if failed else PodState.SUCCEEDED, stop=stop_order(running))
    for container in desired.containers:
        if container.kind is ContainerKind.APP:
            continue
        current = seen.get(container.name, ObservedContainer())
        if container.kind is ContainerKind.SIDECAR:
            if current.state is ContainerState.RUNNING:
                if current.started or current.exit_code is not None:
                    continue  # started (its startupProbe passed), or restarted: the next init container may begin
                return PodActions(PodState.INITIALIZING, start=tuple(start), wake_at=min(wakes, default=None))
            if due(container.name):
                start.append(container.name)
            if current.exit_code is not None:
                continue  # it started before: restarted whenever it ends, it holds nothing back
            return PodActions(PodState.INITIALIZING, start=tuple(start), wake_at=min(wakes, default=None))
        if current.state is ContainerState.DONE:
            if current.exit_code == 0:
                continue
            return PodActions(PodState.FAILED, stop=stop_order(running), wake_at=None)
        if due(container.name):
            start.append(container.name)
        return PodActions(PodState.INITIALIZING, start=tuple(start), wake_at=min(wakes, default=None))
    for container in apps:
        if state(container.name) is not ContainerState.RUNNING and due(container.name):
            start.append(container.name)
    return PodActions(PodState.RUNNING, start=tuple(start), wake_at=min(wakes, default=None))


def _deadline(desired: DesiredPod, observed: ObservedPod) -> float | None:
    if desired.active_deadline_seconds is None or observed.started_at is None:
        return None
    return observed.started_at + desired.active_deadline_seconds


def stop_order(running: list[DesiredContainer]) -> tuple[tuple[str, ...], ...]:
    """App containers (and init containers) first, all at once; then sidecars one by one, in reverse order."""
    first = tuple(c.name for c in running if c.kind is not ContainerKind.SIDECAR)
    sidecars = [(c.name,) for c in reversed(running) if c.kind is ContainerKind.SIDECAR]
    return tuple(group for group in (first, *sidecars) if group)
