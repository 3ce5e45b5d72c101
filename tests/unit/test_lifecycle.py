"""The pod lifecycle's pure decisions: container transitions and compute_pod_actions, as tables."""

from __future__ import annotations

import pytest

from nodeagent.agent.lifecycle import (
    ContainerEvent,
    ContainerKind,
    ContainerState,
    DesiredContainer,
    DesiredPod,
    IllegalTransition,
    ObservedContainer,
    ObservedPod,
    PodActions,
    PodEvent,
    PodState,
    compute_pod_actions,
    next_pod_state,
    next_state,
    restart_policy,
)

W, R, B, E, D = (ContainerState.WAITING, ContainerState.RUNNING, ContainerState.BACKING_OFF,
                 ContainerState.EXITED, ContainerState.DONE)
INIT, SIDECAR, APP = ContainerKind.INIT, ContainerKind.SIDECAR, ContainerKind.APP


@pytest.mark.parametrize(("kind", "pod_policy", "policy"), [
    (APP, "Always", "Always"), (APP, "OnFailure", "OnFailure"), (APP, "Never", "Never"),
    (INIT, "Always", "OnFailure"), (INIT, "OnFailure", "OnFailure"), (INIT, "Never", "Never"),
    (SIDECAR, "Never", "Always"), (SIDECAR, "OnFailure", "Always"),
])
def test_restart_policy_by_kind(kind: ContainerKind, pod_policy: str, policy: str) -> None:
    assert restart_policy(kind, pod_policy) == policy


@pytest.mark.parametrize(("state", "event", "policy", "after"), [
    (W, ContainerEvent.STARTED, "Always", R),
    (W, ContainerEvent.START_FAILED, "Never", B),
    (B, ContainerEvent.RETRY, "Always", W),
    (R, ContainerEvent.EXITED_OK, "Always", E),
    (R, ContainerEvent.EXITED_OK, "OnFailure", D),
    (R, ContainerEvent.EXITED_OK, "Never", D),
    (R, ContainerEvent.EXITED_FAILED, "Always", E),
    (R, ContainerEvent.EXITED_FAILED, "OnFailure", E),
    (R, ContainerEvent.EXITED_FAILED, "Never", D),
    (E, ContainerEvent.BACK_OFF, "Always", B),
    (E, ContainerEvent.RETRY, "Always", W),
])
def test_next_state(state: ContainerState, event: ContainerEvent, policy: str, after: ContainerState) -> None:
    assert next_state(state, event, policy) is after


@pytest.mark.parametrize(("state", "event"), [
    (W, ContainerEvent.EXITED_OK), (D, ContainerEvent.RETRY), (D, ContainerEvent.STARTED),
    (R, ContainerEvent.STARTED), (B, ContainerEvent.STARTED), (E, ContainerEvent.EXITED_FAILED),
])
def test_illegal_transitions_are_refused(state: ContainerState, event: ContainerEvent) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, event, "Always")


@pytest.mark.parametrize("state", [s for s in PodState if s is not PodState.TERMINATED])
def test_a_stop_makes_any_pod_terminating(state: PodState) -> None:
    assert next_pod_state(state, PodEvent.STOP) is PodState.TERMINATING


def test_a_torn_down_pod_stays_terminated() -> None:
    assert next_pod_state(PodState.TERMINATING, PodEvent.TORN_DOWN) is PodState.TERMINATED
    assert next_pod_state(PodState.TERMINATED, PodEvent.STOP) is PodState.TERMINATED


@pytest.mark.parametrize("state", [s for s in PodState if s is not PodState.TERMINATING])
def test_only_a_terminating_pod_is_torn_down(state: PodState) -> None:
    with pytest.raises(IllegalTransition):
        next_pod_state(state, PodEvent.TORN_DOWN)


def pod(*containers: tuple[str, ContainerKind], policy: str = "Always", deadline: int | None = None,
        stopping: bool = False) -> DesiredPod:
    return DesiredPod(tuple(DesiredContainer(n, k) for n, k in containers), policy, deadline, stopping)


def seen(now: float = 100.0, *, admitted: bool = True, set_up: bool = True, started_at: float | None = 0.0,
         **containers: ObservedContainer | ContainerState) -> ObservedPod:
    return ObservedPod(now=now, admitted=admitted, set_up=set_up, started_at=started_at, containers={
        n: c if isinstance(c, ObservedContainer) else ObservedContainer(c) for n, c in containers.items()})


def done(code: int) -> ObservedContainer:
    return ObservedContainer(D, exit_code=code)


PLAIN = pod(("a", APP), ("b", APP))
WITH_INITS = pod(("i1", INIT), ("i2", INIT), ("a", APP))
WITH_SIDECAR = pod(("i1", INIT), ("s", SIDECAR), ("i2", INIT), ("a", APP))

CASES: list[tuple[str, DesiredPod, ObservedPod, PodActions]] = [
    ("not admitted", PLAIN, seen(admitted=False, set_up=False), PodActions(PodState.PENDING)),
    ("admitted: set up first", PLAIN, seen(set_up=False), PodActions(PodState.SETTING_UP, set_up=True)),
    ("set up: every app container starts", PLAIN, seen(), PodActions(PodState.RUNNING, start=("a", "b"))),
    ("running: nothing to do", PLAIN, seen(a=R, b=R), PodActions(PodState.RUNNING)),
    ("crash: restart at once when the back-off is over", PLAIN,
     seen(a=R, b=ObservedContainer(E, 1, retry_at=100.0)), PodActions(PodState.RUNNING, start=("b",))),
    ("crash loop: wait for the back-off", PLAIN,
     seen(a=R, b=ObservedContainer(B, 1, retry_at=120.0)), PodActions(PodState.RUNNING, wake_at=120.0)),
    ("init containers one after the other", WITH_INITS, seen(),
     PodActions(PodState.INITIALIZING, start=("i1",))),
    ("the first init running: wait", WITH_INITS, seen(i1=R), PodActions(PodState.INITIALIZING)),
    ("the first init done: the second", WITH_INITS, seen(i1=done(0)),
     PodActions(PodState.INITIALIZING, start=("i2",))),
    ("an init failed (OnFailure): restarted after its back-off", WITH_INITS,
     seen(i1=ObservedContainer(E, 1, retry_at=110.0)), PodActions(PodState.INITIALIZING, wake_at=110.0)),
    ("an init failed under Never: the pod failed", pod(("i1", INIT), ("a", APP), policy="Never"),
     seen(i1=done(1)), PodActions(PodState.FAILED)),
    ("inits done: the app starts", WITH_INITS, seen(i1=done(0), i2=done(0)),
     PodActions(PodState.RUNNING, start=("a",))),
    ("a sidecar starts after the init before it", WITH_SIDECAR, seen(i1=done(0)),
     PodActions(PodState.INITIALIZING, start=("s",))),
    ("a running sidecar is not waited for", WITH_SIDECAR, seen(i1=done(0), s=R),
     PodActions(PodState.INITIALIZING, start=("i2",))),
    ("a sidecar whose startupProbe has not passed holds the next init back", WITH_SIDECAR,
     seen(i1=done(0), s=ObservedContainer(R, started=False)), PodActions(PodState.INITIALIZING)),
    ("a restarted sidecar's startupProbe holds nothing back", WITH_SIDECAR,
     seen(i1=done(0), s=ObservedContainer(R, 1, started=False)), PodActions(PodState.INITIALIZING, start=("i2",))),
    ("a sidecar that exited is restarted with the apps", WITH_SIDECAR,
     seen(i1=done(0), s=ObservedContainer(E, 0, retry_at=90.0), i2=done(0)),
     PodActions(PodState.RUNNING, start=("s", "a"))),
    ("a sidecar that exits during the next init is restarted", WITH_SIDECAR,
     seen(i1=done(0), s=ObservedContainer(E, 1, retry_at=100.0), i2=R), PodActions(PodState.INITIALIZING, start=("s",))),
    ("a sidecar that never started holds the next init back", WITH_SIDECAR,
     seen(i1=done(0), s=ObservedContainer(B, None, retry_at=130.0)), PodActions(PodState.INITIALIZING, wake_at=130.0)),
    ("apps done: succeeded, the sidecar stopped", pod(("s", SIDECAR), ("a", APP), policy="Never"),
     seen(s=R, a=done(0)), PodActions(PodState.SUCCEEDED, stop=(("s",),))),
    ("apps done, the stopped sidecar is not started again", pod(("s", SIDECAR), ("a", APP), policy="Never"),
     seen(s=ObservedContainer(E, 143, retry_at=0.0), a=done(0)), PodActions(PodState.SUCCEEDED)),
    ("an app failed under Never: failed", pod(("a", APP), ("b", APP), policy="Never"),
     seen(a=done(0), b=done(2)), PodActions(PodState.FAILED)),
    ("OnFailure: a success is done, a failure restarts", pod(("a", APP), ("b", APP), policy="OnFailure"),
     seen(a=done(0), b=ObservedContainer(E, 1)), PodActions(PodState.RUNNING, start=("b",))),
    ("stopping: apps first, then sidecars in reverse", pod(("s1", SIDECAR), ("s2", SIDECAR), ("a", APP),
                                                           ("b", APP), stopping=True),
     seen(s1=R, s2=R, a=R, b=R), PodActions(PodState.TERMINATING, stop=(("a", "b"), ("s2",), ("s1",)))),
    ("stopping, nothing runs: tear down", pod(("a", APP), stopping=True), seen(a=done(0)),
     PodActions(PodState.TERMINATED, tear_down=True)),
    ("stopping before admission: tear down", pod(("a", APP), stopping=True), seen(admitted=False, set_up=False),
     PodActions(PodState.TERMINATED, tear_down=True)),
    ("activeDeadlineSeconds not yet: wake at it", pod(("a", APP), deadline=300), seen(now=100, a=R),
     PodActions(PodState.RUNNING, wake_at=300.0)),
    ("activeDeadlineSeconds passed: failed, everything stopped", pod(("s", SIDECAR), ("a", APP), deadline=60),
     seen(now=100, s=R, a=R), PodActions(PodState.FAILED, stop=(("a",), ("s",)), deadline_exceeded=True)),
]


@pytest.mark.parametrize(("desired", "observed", "actions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compute_pod_actions(desired: DesiredPod, observed: ObservedPod, actions: PodActions) -> None:
    assert compute_pod_actions(desired, observed) == actions
