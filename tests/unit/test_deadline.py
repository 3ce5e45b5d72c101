"""activeDeadlineSeconds: counted from the pod's start; a pod past it is Failed (DeadlineExceeded) in its status."""

from __future__ import annotations

import datetime as dt

from nodeagent.agent import deadline
from nodeagent.agent.status import PodFacts, pod_json
from nodeagent.api.model import PodSpec
from tests.conftest import load_pod
from tests.unit.test_status import T0, stopped

SPEC = PodSpec.model_validate({"containers": [{"name": "c", "image": "x"}], "activeDeadlineSeconds": 30})


def test_the_deadline_counts_from_the_start() -> None:
    assert deadline.seconds_left(SPEC, T0, T0 + dt.timedelta(seconds=10)) == 20
    assert deadline.seconds_left(SPEC, T0, T0 + dt.timedelta(seconds=31)) == -1


def test_no_deadline_without_the_field_or_before_the_start() -> None:
    assert deadline.seconds_left(SPEC, None, T0) is None
    assert deadline.seconds_left(SPEC.model_copy(update={"active_deadline_seconds": None}), T0, T0) is None


def test_a_pod_past_its_deadline_is_failed_whatever_its_containers_say() -> None:
    pod = load_pod("kind: Pod\nmetadata: {name: web}\nspec:\n  activeDeadlineSeconds: 30\n"
                   "  containers: [{name: c, image: x}]\n")
    facts = PodFacts(created_at=T0, host_ip="10.0.0.1", pod_ip="10.0.0.1", start_time=T0,
                     reason=deadline.REASON, message=deadline.MESSAGE, failed=True)
    status = pod_json(pod, [stopped(143)], facts)["status"]  # restartPolicy Always alone would say Running
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", "DeadlineExceeded", deadline.MESSAGE)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodFailed")


def test_a_finished_pod_keeps_its_phase() -> None:
    never = SPEC.model_copy(update={"restart_policy": "Never"})
    assert not deadline.applies(never, [stopped(0)], failed_already=False)  # Succeeded
    assert not deadline.applies(never, [stopped(1)], failed_already=False)  # Failed by its container
    assert deadline.applies(never, [stopped(143)], failed_already=True)  # failed by the deadline before
    assert deadline.applies(SPEC, [stopped(1)], failed_already=False)  # Always: Running, not finished
