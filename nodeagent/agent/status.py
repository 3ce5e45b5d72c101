"""A pod's status, derived from its container records as the kubelet derives it; and the v1 Pod JSON.

Pure: the records, the pod and a few facts in, a `v1 Pod` dict out.

    pod_phase(spec, init_records, app_records) -> "Pending" | "Running" | "Succeeded" | "Failed"
    pod_json(static_pod, records, facts)       -> {"apiVersion": "v1", "kind": "Pod", ...}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from nodeagent.agent.records import ContainerRecord, State, Termination
from nodeagent.agent.termination_message import MAX_POD_MESSAGE_BYTES, pod_budget, truncate
from nodeagent.api.manifest import StaticPod
from nodeagent.timeformat import rfc3339


@dataclass(frozen=True, slots=True)
class PodFacts:
    created_at: dt.datetime
    host_ip: str
    pod_ip: str
    start_time: dt.datetime | None = None
    terminating_since: dt.datetime | None = None
    reason: str | None = None  # pod-level, e.g. OutOfmemory while not admitted
    message: str | None = None
    failed: bool = False  # failed by the node whatever its containers say (reason says why: DeadlineExceeded)
    transitions: dict[str, dt.datetime] = field(default_factory=dict)  # condition type -> last change
    started: frozenset[str] = frozenset()  # running containers whose startupProbe has passed (or that have none)


def pod_phase(restart_policy: str, init: list[ContainerRecord], app: list[ContainerRecord]) -> str:
    """kubelet getPhase. A sidecar holds the pod Pending until it first runs; once an app container has started,
    its restarts no longer move the phase, nor does its end (the pod's end stops it)."""
    pending_init = failed_init = 0
    apps_started = any(_has_run(r) for r in app)
    for record in init:
        if record.sidecar:
            pending_init += not apps_started and record.state is not State.RUNNING
        elif record.state is State.RUNNING:
            pending_init += 1
        elif record.state is State.TERMINATED:
            assert record.terminated is not None
            failed_init += record.terminated.exit_code != 0
        elif record.last_termination is not None:
            failed_init += record.last_termination.exit_code != 0
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for record in app:
        if record.state is State.RUNNING:
            running += 1
        elif record.state is State.TERMINATED:
            assert record.terminated is not None
            stopped += 1
            succeeded += record.terminated.exit_code == 0
        elif record.last_termination is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


Condition = tuple[str, bool, str | None, str | None]


def conditions(init: list[ContainerRecord], app: list[ContainerRecord], phase: str,
               started: frozenset[str]) -> list[Condition]:
    """(type, status, reason, message) for Initialized, Ready, ContainersReady and PodScheduled. A sidecar counts
    as initialized once started (`started`: its startupProbe passed), as the kubelet's isInitContainerInitialized."""
    apps_started = any(_has_run(r) for r in app)
    incomplete = [r.name for r in init
                  if not (_started(r, started) or apps_started if r.sidecar else _completed(r))]
    unready = [r.name for r in [*init, *app] if (r.sidecar or not r.init) and not r.ready]
    found: list[Condition] = []
    if phase == "Succeeded":
        found.append(("Initialized", True, "PodCompleted", None))
    elif incomplete:
        found.append(("Initialized", False, "ContainersNotInitialized",
                      f"containers with incomplete status: [{' '.join(incomplete)}]"))
    else:
        found.append(("Initialized", True, None, None))
    ready: tuple[bool, str | None, str | None]
    if phase in ("Succeeded", "Failed"):
        ready = (False, "PodCompleted" if phase == "Succeeded" else "PodFailed", None)
    elif unready:
        ready = (False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready = (True, None, None)
    found.append(("Ready", *ready))
    found.append(("ContainersReady", *ready))
    found.append(("PodScheduled", True, None, None))
    return found


def _has_run(record: ContainerRecord) -> bool:
    return record.state is not State.WAITING or record.last_termination is not None


def _started(record: ContainerRecord, started: frozenset[str]) -> bool:
    return record.state is State.RUNNING and record.name in started


def _completed(record: ContainerRecord) -> bool:
    return record.state is State.TERMINATED and record.terminated is not None and record.terminated.exit_code == 0


def container_status(record: ContainerRecord, started: frozenset[str],
                     message_budget: int = MAX_POD_MESSAGE_BYTES) -> dict[str, Any]:
    """A container's status; its termination messages cut to `message_budget` bytes (the pod's share). `started`
    only once its startupProbe has passed (at once without one), as the kubelet's."""
    status: dict[str, Any] = {"name": record.name, "state": _state(record, message_budget), "lastState": {}}
    if record.last_termination is not None:
        status["lastState"] = {"terminated": _terminated(record.last_termination, message_budget)}
    status.update(ready=record.ready, restartCount=record.restart_count, image=record.image, imageID=record.image_id)
    if record.container_id:
        status["containerID"] = record.container_id
    status["started"] = _started(record, started)
    return status


def _state(record: ContainerRecord, message_budget: int) -> dict[str, Any]:
    if record.state is State.RUNNING:
        return {"running": {"startedAt": rfc3339(record.started_at)}}
    if record.state is State.TERMINATED and record.terminated is not None:
        return {"terminated": _terminated(record.terminated, message_budget)}
    waiting: dict[str, Any] = {}
    if record.reason:
        waiting["reason"] = record.reason
    if record.message:
        waiting["message"] = record.message
    return {"waiting": waiting}


def _terminated(termination: Termination, message_budget: int) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": termination.exit_code, "reason": termination.reason}
    if termination.signal:
        out["signal"] = termination.signal
    if termination.message:
        out["message"] = truncate(termination.message, message_budget)
    out["startedAt"] = rfc3339(termination.started_at)
    out["finishedAt"] = rfc3339(termination.finished_at)
    if termination.container_id:
        out["containerID"] = termination.container_id
    return out


def pod_json(pod: StaticPod, records: list[ContainerRecord], facts: PodFacts,
             dumped: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The pod as a `v1 Pod`, status included; `dumped`: its metadata and spec as JSON already (not changed)."""
    metadata_json, spec_json = dumped or (pod.pod.metadata.model_dump(by_alias=True, exclude_none=True),
                                          pod.pod.spec.model_dump(by_alias=True, exclude_none=True))
    init = [r for r in records if r.init]
    app = [r for r in records if not r.init]
    phase = "Failed" if facts.failed else pod_phase(pod.pod.spec.restart_policy, init, app)
    metadata = dict(metadata_json)
    metadata["creationTimestamp"] = rfc3339(facts.created_at)
    if facts.terminating_since is not None:
        metadata["deletionTimestamp"] = rfc3339(facts.terminating_since)
        metadata["deletionGracePeriodSeconds"] = pod.pod.spec.termination_grace_period_seconds
    status: dict[str, Any] = {"phase": phase}
    if facts.reason:
        status["reason"] = facts.reason
    if facts.message:
        status["message"] = facts.message
    status["conditions"] = [
        {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
         "lastTransitionTime": rfc3339(facts.transitions.get(kind, facts.created_at)),
         **({"reason": reason} if reason else {}), **({"message": message} if message else {})}
        for kind, ok, reason, message in conditions(init, app, phase, facts.started)
    ]
    status.update(hostIP=facts.host_ip, hostIPs=[{"ip": facts.host_ip}])
    if facts.start_time is not None:
        status.update(podIP=facts.pod_ip, podIPs=[{"ip": facts.pod_ip}], startTime=rfc3339(facts.start_time))
    budget = pod_budget(len(records))
    if init:
        status["initContainerStatuses"] = [container_status(r, facts.started, budget) for r in init]
    status["containerStatuses"] = [container_status(r, facts.started, budget) for r in app]
    status["qosClass"] = pod.qos.value
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec_json,
        "status": status,
    }
