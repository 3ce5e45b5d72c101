"""A pod's state saved while a container is being taken back after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest

from nodeagent.agent.clock import SystemClock
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import EventRecorder
from nodeagent.agent.records import State
from nodeagent.agent.services import NodeServices
from nodeagent.agent.snapshot import snapshot
from nodeagent.agent.worker import PodWorker
from nodeagent.plan.settings import NodeInfo, PlanSettings
from nodeagent.runtime.base import AdoptionRecord, ContainerExit
from tests.conftest import load_pod
from tests.fakes.pod import forget_nothing

SAVED = {"ociId": "abc", "conmon": {"pid": 1, "startTime": 1}, "container": {"pid": 2, "startTime": 2},
         "startedAt": "2026-12-04T16:00:00+00:00"}


class SlowAdoption:
    """A runtime whose adopt() takes until the test lets it finish (cri asks containerd, over gRPC)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def adopt(self, spec: object, saved: AdoptionRecord) -> ContainerExit:
        self.asked.set()
        await self.answer.wait()  # never set: the test saves meanwhile, then ends the adoption
        return ContainerExit(exit_code=0, finished_at=dt.datetime.now(dt.UTC), oom_killed=False)


class NoMetrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_a_save_while_a_container_is_being_adopted_keeps_what_adopts_it(tmp_path: Path) -> None:
    """Found by chaos (cri, the agent killed twice in a row): a pod's state saved while one of its containers
    was being adopted (another container's change saves the pod) lacked that container's saved identity;
    killed then, the next agent could not take it back, started another and lost the first one's end."""
    clock = SystemClock()
    runtime = SlowAdoption()
    services = NodeServices(
        runtime=cast(Any, runtime), cgroups=cast(Any, None), events=EventRecorder(clock.now), clock=clock,
        node=NodeInfo(cpu_millis=2000, memory_bytes=4 << 30), settings=PlanSettings(), state_dir=str(tmp_path),
        logs_dir=str(tmp_path), addresses=PodAddresses(host_ip="192.0.2.1", pod_ip="192.0.2.1"), networks=None,
        sandboxes=None, resolv_conf="", on_change=lambda: None, persist=lambda worker: None,
        forget=forget_nothing, metrics=cast(Any, NoMetrics()))
    pod = load_pod("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '1']}]\n")
    worker = PodWorker(pod, services)
    worker.records["c"] = worker.records["c"].__class__(name="c", image="x", init=False, state=State.RUNNING,
                                                         reason=None, container_id="process://abc")
    worker.slots["c"].adoptable = AdoptionRecord.from_json(SAVED)
    assert pod.pod.spec.containers is not None
    container = pod.pod.spec.containers[0]
    resuming = asyncio.create_task(worker._resume(container))
    await runtime.asked.wait()
    assert snapshot(worker)["containers"]["c"]["running"] == SAVED  # still what the next agent needs
    resuming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await resuming


@pytest.mark.parametrize("saved", [
    SAVED,  # process and runc (conmon), as earlier agents saved it
    {"criId": "0123abcd", "startedAt": "2026-12-04T16:00:00+00:00", "process": {"pid": 7, "startTime": 3}},
])
def test_an_adoption_record_reads_and_writes_the_saved_format(saved: dict[str, Any]) -> None:
    record = AdoptionRecord.from_json(saved)
    assert record.bundle is ("ociId" in saved)
    assert record.container_id == saved.get("ociId", saved.get("criId"))
    assert record.to_json() == saved


@pytest.mark.parametrize("saved", [{}, {"ociId": 3}, {"startedAt": "x"}])
def test_what_is_not_an_adoption_record_is_refused(saved: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a saved container"):
        AdoptionRecord.from_json(saved)
