"""spec.activeDeadlineSeconds as the kubelet's activeDeadlineHandler: counted from the pod's start
(status.startTime); once past, the pod is Failed with reason DeadlineExceeded, its containers are stopped
(with the usual grace period) and nothing starts again. Pure: the worker asks when, and what to say.

The start time is saved with the pod (nodeagent.agent.snapshot), so the deadline holds across an agent
restart: a pod past it when the agent comes back is failed again at once (a pod that had already
succeeded or failed keeps its phase: the kubelet applies no deadline to a finished pod).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from nodeagent.agent.records import ContainerRecord
from nodeagent.agent.status import pod_phase
from nodeagent.api.model import PodSpec

REASON = "DeadlineExceeded"
MESSAGE = "Pod was active on the node longer than the specified deadline"


def seconds_left(spec: PodSpec, start_time: dt.datetime | None, now: dt.datetime) -> float | None:
    """Seconds until the pod's deadline (0 or less: it has passed); None without one or before the start."""
    if spec.active_deadline_seconds is None or start_time is None:
        return None
    return (start_time + dt.timedelta(seconds=spec.active_deadline_seconds) - now).total_seconds()


def applies(spec: PodSpec, records: Iterable[ContainerRecord], *, failed_already: bool) -> bool:
    """A deadline fails the pod unless it has finished (Succeeded, or Failed by its containers) first."""
    records = list(records)
    phase = pod_phase(spec.restart_policy, [r for r in records if r.init], [r for r in records if not r.init])
    return failed_already or phase not in ("Succeeded", "Failed")
