"""kubectl's printing rules: HumanDuration, printPod's STATUS, READY and RESTARTS, and describe's event ages."""

import datetime as dt
from typing import Any

import pytest

from nodeagent.agent.records import ContainerRecord, State, Termination
from nodeagent.agent.status import PodFacts, pod_json
from nodeagent.printing import (
    age,
    event_age,
    human_duration,
    parse_time,
    pod_ready,
    pod_restarts,
    pod_status_word,
)
from tests.conftest import load_pod

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
MINUTE, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- human_duration ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "<invalid>"), (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (-0.5, "0s"),
        (0, "0s"), (0.9, "0s"), (1, "1s"), (59, "59s"), (59.9, "59s"), (60, "60s"), (119, "119s"),
        (120, "2m"), (125, "2m5s"), (599, "9m59s"), (600, "10m"), (605, "10m"),
        (3 * HOUR - 1, "179m"), (3 * HOUR, "3h"), (3 * HOUR + 20 * MINUTE, "3h20m"), (3 * HOUR + 20 * MINUTE + 59, "3h20m"),
        (8 * HOUR - 1, "7h59m"), (8 * HOUR, "8h"), (8 * HOUR + 59 * MINUTE, "8h"), (48 * HOUR - 1, "47h"),
        (2 * DAY, "2d"), (2 * DAY + 4 * HOUR, "2d4h"), (8 * DAY - 1, "7d23h"), (8 * DAY, "8d"), (8 * DAY + 23 * HOUR, "8d"),
        (2 * YEAR - 1, "729d"), (2 * YEAR, "2y"), (2 * YEAR + 10 * DAY, "2y10d"), (8 * YEAR - 1, "7y364d"),
        (8 * YEAR, "8y"), (20 * YEAR + 100 * DAY, "20y"),
    ],
    ids=lambda value: str(value),
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parse_time_and_age() -> None:
    assert parse_time("2024-05-01T11:58:00Z") == NOW - dt.timedelta(minutes=2)
    assert parse_time(None) is None
    assert parse_time("") is None
    assert age("2024-05-01T11:58:00Z", NOW) == "2m"
    assert age(None, NOW) == "<unknown>"


# -- pod_status_word: printPod's STATUS column -------------------------------------------------------

def running_() -> dict[str, Any]:
    return {"running": {"startedAt": ago(100)}}


def terminated_(code: int, reason: str | None = None, signal: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": code, "startedAt": ago(100), "finishedAt": ago(50)}
    if reason:
        out["reason"] = reason
    if signal:
        out["signal"] = signal
    return {"terminated": out}


def waiting_(reason: str | None = None) -> dict[str, Any]:
    return {"waiting": {"reason": reason} if reason else {}}


def cs(name: str, state: dict[str, Any], *, ready: bool = False, restarts: int = 0,
       last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "state": state, "lastState": last or {}, "ready": ready, "restartCount": restarts}


def pod(phase: str, containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None, *,
        ready_condition: bool | None = None, deleting: bool = False, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": containers}
    if init is not None:
        status["initContainerStatuses"] = init
    if ready_condition is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready_condition else "False"}]
    if reason:
        status["reason"] = reason
    metadata: dict[str, Any] = {"name": "p", "creationTimestamp": ago(600)}
    if deleting:
        metadata["deletionTimestamp"] = ago(5)
    spec = {"containers": [{"name": c["name"]} for c in containers],
            "initContainers": [{"name": c["name"]} for c in init or []]}
    return {"metadata": metadata, "spec": spec, "status": status}


STATUS_WORDS = [
    (pod("Running", [cs("a", running_(), ready=True)]), "Running"),
    (pod("Running", [cs("a", running_(), ready=False)]), "Running"),
    (pod("Pending", [cs("a", waiting_("ContainerCreating"))]), "ContainerCreating"),
    (pod("Succeeded", [cs("a", terminated_(0, "Completed"))]), "Completed"),
    (pod("Running", [cs("a", terminated_(137, "OOMKilled"))]), "OOMKilled"),
    (pod("Running", [cs("a", waiting_("CrashLoopBackOff"), last=terminated_(1, "Error"))]), "CrashLoopBackOff"),
    (pod("Failed", [cs("a", terminated_(1, "Error"))]), "Error"),
    (pod("Failed", [cs("a", terminated_(3))]), "ExitCode:3"),
    (pod("Failed", [cs("a", terminated_(137, signal=9))]), "Signal:9"),
    (pod("Pending", [cs("a", waiting_())]), "Pending"),
    (pod("Running", [cs("a", waiting_("CrashLoopBackOff")), cs("b", running_(), ready=True)]), "CrashLoopBackOff"),
    (pod("Running", [cs("a", running_(), ready=True), cs("b", terminated_(1, "Error"))]), "Error"),
    (pod("Running", [cs("a", terminated_(1, "Error")), cs("b", terminated_(137, "OOMKilled"))]), "Error"),
    (pod("Running", [cs("a", terminated_(0, "Completed")), cs("b", running_(), ready=True)], ready_condition=True),
     "Running"),
    (pod("Running", [cs("a", terminated_(0, "Completed")), cs("b", running_(), ready=True)], ready_condition=False),
     "NotReady"),
    (pod("Running", [cs("a", terminated_(0, "Completed")), cs("b", running_(), ready=False)], ready_condition=False),
     "Completed"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", running_())]), "Init:0/1"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", waiting_("PodInitializing"))]), "Init:0/1"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", waiting_())]), "Init:0/1"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))],
         [cs("i1", terminated_(0, "Completed")), cs("i2", running_())]), "Init:1/2"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", terminated_(1, "Error"))]), "Init:Error"),
    (pod("Failed", [cs("a", waiting_("PodInitializing"))], [cs("i", terminated_(2))]), "Init:ExitCode:2"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", terminated_(143, signal=15))]), "Init:Signal:15"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", waiting_("CrashLoopBackOff"))]),
     "Init:CrashLoopBackOff"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", terminated_(0, "Completed"))]), "PodInitializing"),
    (pod("Running", [cs("a", running_(), ready=True)], [cs("i", terminated_(0, "Completed"))]), "Running"),
    (pod("Running", [cs("a", running_(), ready=True)], deleting=True), "Terminating"),
    (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", running_())], deleting=True), "Terminating"),
    (pod("Failed", [], reason="OutOfmemory"), "OutOfmemory"),
]
STATUS_IDS = [
    "running", "running-unready", "container-creating", "completed", "oomkilled", "crashloopbackoff", "error",
    "exitcode-without-reason", "signal-without-reason", "waiting-without-reason-keeps-phase",
    "first-container-wins-crashloop", "error-over-running", "first-of-two-terminated-wins",
    "completed-and-running-ready", "completed-and-running-notready", "completed-and-running-unready-container",
    "init-running", "init-waiting-podinitializing", "init-waiting-no-reason", "second-init-running", "init-error",
    "init-exitcode", "init-signal", "init-crashloopbackoff", "podinitializing", "init-done-running",
    "terminating", "terminating-while-initializing", "pod-reason",
]


@pytest.mark.parametrize(("obj", "word"), STATUS_WORDS, ids=STATUS_IDS)
def test_pod_status_word(obj: dict[str, Any], word: str) -> None:
    assert pod_status_word(obj) == word


def test_a_finished_pod_being_deleted_keeps_its_word() -> None:
    assert pod_status_word(pod("Succeeded", [cs("a", terminated_(0, "Completed"))], deleting=True)) == "Completed"


def test_status_words_from_nodeagents_own_pod_json() -> None:
    """The CLI reads what status.pod_json writes: a crash-looping container reads as CrashLoopBackOff."""
    static = load_pod("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n")
    last = Termination(exit_code=1, reason="Error", started_at=NOW - dt.timedelta(seconds=40),
                       finished_at=NOW - dt.timedelta(seconds=25), container_id="cid")
    record = ContainerRecord("c", "x", init=False, state=State.WAITING, reason="CrashLoopBackOff",
                             message="back-off 10s", restart_count=3, last_termination=last)
    obj = pod_json(static, [record], PodFacts(created_at=NOW - dt.timedelta(hours=1), host_ip="h", pod_ip="h",
                                              start_time=NOW - dt.timedelta(hours=1)))
    assert pod_status_word(obj) == "CrashLoopBackOff"
    assert pod_ready(obj) == "0/1"
    assert pod_restarts(obj, NOW) == "3 (25s ago)"


# -- READY and RESTARTS ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "ready"),
    [
        (pod("Running", [cs("a", running_(), ready=True)]), "1/1"),
        (pod("Running", [cs("a", running_(), ready=False)]), "0/1"),
        (pod("Running", [cs("a", running_(), ready=True), cs("b", terminated_(0, "Completed"))]), "1/2"),
        (pod("Running", [cs("a", waiting_("CrashLoopBackOff"), ready=True)]), "0/1"),
        (pod("Pending", [cs("a", waiting_("PodInitializing"))], [cs("i", running_(), ready=True)]), "0/1"),
        (pod("Running", [cs("a", running_(), ready=True), cs("b", running_(), ready=True)]), "2/2"),
    ],
    ids=["ready", "unready", "one-of-two", "ready-flag-but-waiting", "init-containers-not-counted", "both"],
)
def test_pod_ready(obj: dict[str, Any], ready: str) -> None:
    assert pod_ready(obj) == ready


def test_pod_ready_counts_spec_containers_without_statuses() -> None:
    obj = pod("Pending", [])
    obj["spec"]["containers"] = [{"name": "a"}, {"name": "b"}]
    assert pod_ready(obj) == "0/2"


@pytest.mark.parametrize(
    ("obj", "restarts"),
    [
        (pod("Running", [cs("a", running_(), ready=True)]), "0"),
        (pod("Running", [cs("a", running_(), restarts=3, last=terminated_(1, "Error"))]), "3 (50s ago)"),
        (pod("Running", [cs("a", running_(), restarts=3)]), "3"),
        (pod("Running", [cs("a", running_(), restarts=2, last={"terminated": {"exitCode": 1, "finishedAt": ago(25)}}),
                         cs("b", running_(), restarts=1, last={"terminated": {"exitCode": 1, "finishedAt": ago(3 * HOUR)}})]),
         "3 (25s ago)"),
        (pod("Pending", [cs("a", waiting_("PodInitializing"), restarts=0)],
             [cs("i", waiting_("CrashLoopBackOff"), restarts=4, last={"terminated": {"exitCode": 1, "finishedAt": ago(130)}})]),
         "4 (2m10s ago)"),
        (pod("Running", [cs("a", running_(), restarts=1, last={"terminated": {"exitCode": 1, "finishedAt": ago(10)}})],
             [cs("i", terminated_(0, "Completed"), restarts=5,
                 last={"terminated": {"exitCode": 1, "finishedAt": ago(500)}})]),
         "1 (10s ago)"),
    ],
    ids=["none", "with-last-exit", "without-last-state", "two-containers-sum-and-latest", "initializing-counts-init",
         "initialized-counts-app-only"],
)
def test_pod_restarts(obj: dict[str, Any], restarts: str) -> None:
    assert pod_restarts(obj, NOW) == restarts


# -- event ages ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("event", "text"),
    [
        ({"lastTimestamp": ago(10), "firstTimestamp": ago(10), "count": 1}, "10s"),
        ({"lastTimestamp": ago(10), "firstTimestamp": ago(5 * MINUTE), "count": 3}, "10s (x3 over 5m)"),
        ({"lastTimestamp": ago(10), "firstTimestamp": ago(90), "count": 3}, "10s (x3 over 90s)"),
        ({"lastTimestamp": ago(3 * HOUR), "firstTimestamp": ago(2 * DAY), "count": 40}, "3h (x40 over 2d)"),
        ({"lastTimestamp": ago(10)}, "10s"),
        ({"lastTimestamp": ago(10), "count": 3}, "10s"),
        ({"firstTimestamp": ago(10), "count": 1}, "<unknown>"),
    ],
    ids=["once", "repeated", "repeated-within-two-minutes", "repeated-over-days", "no-count", "no-first",
         "no-last"],
)
def test_event_age(event: dict[str, Any], text: str) -> None:
    assert event_age(event, NOW) == text
