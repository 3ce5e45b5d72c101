"""A pod worker's state as JSON for the store, and a worker rebuilt from it after an agent restart.

Monotonic times (back-off) do not survive a restart; they are saved as wall-clock times and turned
back into monotonic ones relative to the new process's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from pydantic import ValidationError

from nodeagent.agent.backoff import Backoff
from nodeagent.agent.records import ContainerRecord, State, Termination
from nodeagent.agent.services import NodeServices
from nodeagent.agent.worker import PodWorker
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Pod
from nodeagent.api.resources import qos_class
from nodeagent.errors import NodeAgentError
from nodeagent.runtime.base import AdoptionRecord


class UnusableState(NodeAgentError):
    """A saved state that parses but does not describe a pod this agent can rebuild."""


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _termination_json(value: Termination | None) -> dict[str, Any] | None:
    if value is None:
        return None
    data = dataclasses.asdict(value)
    data["started_at"] = _time(value.started_at)
    data["finished_at"] = _time(value.finished_at)
    return data


def _termination(data: dict[str, Any] | None) -> Termination | None:
    if data is None:
        return None
    finished = _parse(data["finished_at"])
    assert finished is not None
    return Termination(**{**data, "started_at": _parse(data["started_at"]), "finished_at": finished})


def _record_json(record: ContainerRecord) -> dict[str, Any]:
    return {
        "name": record.name, "image": record.image, "init": record.init, "state": record.state.value,
        "reason": record.reason, "message": record.message, "started_at": _time(record.started_at),
        "container_id": record.container_id, "pid": record.pid, "restart_count": record.restart_count,
        "terminated": _termination_json(record.terminated),
        "last_termination": _termination_json(record.last_termination), "ready": record.ready,
        "image_id": record.image_id,
    }


def _record(data: dict[str, Any]) -> ContainerRecord:
    return ContainerRecord(**{
        **data, "state": State(data["state"]), "started_at": _parse(data["started_at"]),
        "terminated": _termination(data["terminated"]), "last_termination": _termination(data["last_termination"]),
    })


def snapshot(worker: PodWorker) -> dict[str, Any]:
    clock = worker.services.clock
    wall, mono = clock.now(), clock.monotonic()

    def as_wall(monotonic: float) -> str:
        return (wall - dt.timedelta(seconds=mono - monotonic)).isoformat()

    containers: dict[str, Any] = {}
    for name, record in worker.records.items():
        slot = worker.slots[name]
        entry = slot.backoff
        saved = slot.running.saved() if slot.running is not None else slot.adoptable
        containers[name] = {
            "record": _record_json(record),
            "backoff": None if entry is None else {"seconds": entry.seconds, "lastUpdate": as_wall(entry.last_update)},
            "finishedAt": as_wall(slot.finished_at) if slot.finished_at is not None else None,
            "running": saved.to_json() if saved is not None else None,
        }
    pod = worker.pod
    return {
        "uid": pod.uid, "source": pod.source, "origin": pod.origin, "configHash": pod.config_hash,
        "pod": pod.pod.model_dump(by_alias=True, exclude_none=True),
        "createdAt": _time(worker.created_at), "startTime": _time(worker.start_time),
        "terminatingSince": _time(worker.terminating_since), "deadlineExceeded": worker.deadline_exceeded,
        "transitions": {kind: _time(when) for kind, when in worker.transitions.items()},
        "containers": containers,
    }


def restore(state: dict[str, Any], services: NodeServices) -> PodWorker:
    """The worker as it was, its running containers marked to be adopted; UnusableState if it cannot be."""
    try:
        model = Pod.model_validate(state["pod"])
        pod = StaticPod(pod=model, source=state["source"], origin=state["origin"], config_hash=state["configHash"],
                        qos=qos_class(model))
        worker = PodWorker(pod, services)
        clock = services.clock
        wall, mono = clock.now(), clock.monotonic()

        def as_monotonic(value: str) -> float:
            return mono - (wall - dt.datetime.fromisoformat(value)).total_seconds()

        worker.created_at = _parse(state["createdAt"]) or worker.created_at
        worker.start_time = _parse(state["startTime"])
        worker.terminating_since = _parse(state["terminatingSince"])
        worker.deadline_exceeded = bool(state.get("deadlineExceeded", False))  # absent: saved by an older agent
        worker.transitions = {kind: when for kind, value in state["transitions"].items()
                              if (when := _parse(value)) is not None}
        for name, saved in state["containers"].items():
            if name not in worker.records:
                continue
            worker.records[name] = dataclasses.replace(_record(saved["record"]), sidecar=worker.records[name].sidecar)
            if saved["backoff"] is not None:
                entry = saved["backoff"]
                worker.slots[name].backoff = Backoff(entry["seconds"], as_monotonic(entry["lastUpdate"]))
            if saved["finishedAt"] is not None:
                worker.slots[name].finished_at = as_monotonic(saved["finishedAt"])
            if saved["running"] is not None:
                worker.slots[name].adoptable = AdoptionRecord.from_json(saved["running"])
    except (KeyError, TypeError, ValueError, ValidationError, AssertionError) as exc:
        raise UnusableState(f"it does not describe a pod this agent can rebuild ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from exc
    return worker
