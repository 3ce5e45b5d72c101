"""The pod manager on fakes: sync starts and stops workers, admission waits for room, a restarted agent
restores its pods from the state directory and adopts their containers, orphans are removed."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nodeagent.agent.admission import Allocatable
from nodeagent.agent.lifecycle import PodState
from nodeagent.agent.pods import PodManager, _belongs
from nodeagent.agent.records import State
from nodeagent.agent.store import PodStore
from nodeagent.api.manifest import StaticPod
from nodeagent.runtime.base import AdoptionRecord, ContainerExit
from tests.fakes import clock as fake_clock
from tests.fakes.clock import START, FakeClock
from tests.fakes.pod import FakeNode
from tests.fakes.runtime import Attempt, FakeRunning

ROOMY = Allocatable(cpu_millis=4000, memory_bytes=8 * 1024**3, pods=110)


def pod(name: str, *, cpu: str = "", policy: str = "Always") -> StaticPod:
    resources = f"\n    resources: {{requests: {{cpu: {cpu}}}}}" if cpu else ""
    return FakeNode.pod(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n"
                        f"spec:\n  restartPolicy: {policy}\n  containers:\n  - name: app\n    image: busybox"
                        f"{resources}\n")


def manager(node: FakeNode, capacity: Allocatable = ROOMY, store: PodStore | None = None,
            ready: asyncio.Event | None = None) -> PodManager:
    """ready: the agent's READY (nodeagent.agent.services.NodeServices.agent_ready), set from the start unless given."""
    services = dataclasses.replace(node.services, persist=lambda worker: pods.persist(worker),
                                   forget=lambda uid: pods.forget(uid), agent_ready=ready or node.services.agent_ready)
    pods = PodManager(services, store or PodStore(services.state_dir), capacity, node_name="node1")
    return pods


class HeldStore(PodStore):
    """A store whose writes, once held, wait in their (real) thread until let go."""

    def __init__(self, state_dir: str) -> None:
        super().__init__(state_dir)
        self.held = False
        self.writing = threading.Event()
        self.let_go = threading.Event()

    def save(self, uid: str, data: bytes) -> None:
        if self.held:
            self.writing.set()
            self.let_go.wait(10)
        super().save(uid, data)


async def real_time_until(done: Callable[[], bool]) -> None:
    for _ in range(400):
        if done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition does not hold within 2 s")


async def test_sync_starts_new_pods_and_stops_those_gone(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    pods = manager(node)
    await pods.start()
    a, b = pod("a"), pod("b")
    await pods.sync([a, b])
    await node.clock.settle()
    assert [w.key for w in pods.pods()] == ["default/a-node1", "default/b-node1"]
    assert pods.find("default", "a-node1") is pods.workers[a.uid]
    assert all(w.records["app"].state is State.RUNNING for w in pods.pods())
    await pods.sync([b])
    await node.clock.run_until(lambda: a.uid not in pods.workers)
    assert list(pods.workers) == [b.uid]
    assert node.runtime.running["app"].exited is False  # b's container, the latest started
    await pods.close()


async def test_a_state_write_in_flight_at_the_tear_down_does_not_recreate_the_pod_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is written in a thread: the tear-down waits for the write in flight before it removes the pod's
    directory, else the write would make it again once the pod is gone (and a restart find a ghost)."""
    monkeypatch.setattr(fake_clock, "run_threads_inline", lambda: None)  # real threads, as in the agent
    node = FakeNode(tmp_path)
    store = HeldStore(str(tmp_path / "state"))
    pods = manager(node, store=store)
    web = pod("web")
    await pods.sync([web])
    worker = pods.workers[web.uid]
    await node.clock.run_until(lambda: worker.records["app"].state is State.RUNNING)
    await real_time_until(lambda: Path(store.path(web.uid)).exists())
    directory = Path(store.path(web.uid)).parent
    store.held = True
    await pods.sync([])  # stopping: its state changes, a write starts and is held in its thread
    await real_time_until(store.writing.is_set)
    await node.clock.run_until(lambda: worker.state is PodState.TERMINATED)
    for _ in range(40):  # time, fake and real, for the rest of the tear-down (its own work in threads too)
        await node.clock.advance(1)
        await asyncio.sleep(0.005)
    assert directory.exists() and web.uid in pods.workers  # the tear-down waits for the write
    store.let_go.set()
    await real_time_until(lambda: web.uid not in pods.workers)
    await asyncio.sleep(0.05)
    assert not directory.exists()
    await pods.close()


async def test_a_pod_that_does_not_fit_waits_until_another_leaves(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    pods = manager(node, Allocatable(cpu_millis=1000, memory_bytes=8 * 1024**3, pods=110))
    big, other = pod("big", cpu="800m"), pod("other", cpu="500m")
    await pods.sync([big, other])
    await node.clock.settle()
    waiting = pods.workers[other.uid]
    assert not waiting.admitted and waiting.rejection is not None
    assert waiting.rejection.reason == "OutOfcpu"
    assert node.messages("OutOfcpu")
    await pods.sync([other])
    await node.clock.run_until(lambda: waiting.admitted and waiting.records["app"].state is State.RUNNING)
    await pods.close()


async def test_a_restarted_agent_restores_its_pods_and_adopts_their_containers(tmp_path: Path) -> None:
    first = FakeNode(tmp_path)
    first.runtime.plan("app", Attempt(exit_code=1, seconds=2))
    pods = manager(first)
    web = pod("web")
    await pods.sync([web])
    await first.clock.run_until(lambda: pods.workers[web.uid].records["app"].restart_count == 1)
    await first.clock.settle()
    running = first.runtime.running["app"]
    await pods.close()  # the agent goes; its containers stay
    assert not running.exited
    saved = json.loads(Path(PodStore(str(tmp_path / "state")).path(web.uid)).read_text())
    assert saved["containers"]["app"]["running"] == {"criId": running.container_id}

    second = FakeNode(tmp_path, clock=FakeClock(START + dt.timedelta(seconds=60)))
    second.runtime.adoptable[running.container_id] = running
    again = manager(second)
    assert await again.restore() == 1
    await second.clock.settle()
    worker = again.workers[web.uid]
    record = worker.records["app"]
    assert (record.state, record.restart_count, record.container_id) == (State.RUNNING, 1, running.container_id)
    assert record.last_termination is not None and record.last_termination.exit_code == 1
    assert (entry := worker.slots["app"].backoff) is not None and entry.seconds == 10  # the back-off survives the restart
    assert second.runtime.starts == []  # adopted, not started again
    running.exit(0)
    await second.clock.run_until(lambda: len(second.runtime.starts) == 1)
    await again.close()


async def restored_while_running(tmp_path: Path, web: StaticPod, ready: asyncio.Event | None = None,
                                 ) -> tuple[FakeNode, PodManager, FakeRunning]:
    """An agent ran `web` and went away, its container running; a new agent restored it (its worker launched)."""
    first = FakeNode(tmp_path)
    pods = manager(first)
    await pods.sync([web])
    await first.clock.settle()
    running = first.runtime.running["app"]
    await pods.close()
    second = FakeNode(tmp_path, clock=FakeClock(START + dt.timedelta(seconds=60)))
    second.runtime.adoptable[running.container_id] = running
    again = manager(second, ready=ready)
    await again.restore()
    return second, again, running


async def test_a_pod_taken_back_repairs_its_cgroups_after_ready_and_before_its_next_start(tmp_path: Path) -> None:
    """READY promises the containers taken back, not their pod's cgroups re-applied (a repair of drift, ~10 % of a
    1,000-pod restart): that follows READY, and comes before the pod's next container start."""
    web = pod("web")
    second, again, running = await restored_while_running(tmp_path, web, ready=asyncio.Event())
    worker = again.workers[web.uid]
    assert (pod_cgroup := worker.plan.pod) is not None
    await second.clock.run_until(lambda: worker.running_container("app") is running)
    running.exit(1)  # its restart waits for the repair
    await second.clock.run_until(lambda: worker.records["app"].state is State.TERMINATED)
    await second.clock.settle()
    assert pod_cgroup.path not in second.cgroups.existing and second.runtime.starts == []
    again.services.agent_ready.set()
    await second.clock.run_until(lambda: len(second.runtime.starts) == 1)
    assert pod_cgroup.path in second.cgroups.existing
    await again.close()


async def test_a_pod_taken_back_and_removed_before_ready_stops_without_waiting_for_it(tmp_path: Path) -> None:
    """Its repair waits for READY, its stop does not (READY itself follows the first sync, which may stop it)."""
    web = pod("web")
    second, again, running = await restored_while_running(tmp_path, web, ready=asyncio.Event())
    await second.clock.run_until(lambda: again.workers[web.uid].running_container("app") is running)
    await again.sync([])
    await second.clock.run_until(lambda: running.exited and web.uid not in again.workers)
    assert not again.services.agent_ready.is_set()
    await again.close()


async def test_a_container_that_ended_while_the_agent_was_away_is_recorded(tmp_path: Path) -> None:
    first = FakeNode(tmp_path)
    pods = manager(first)
    web = pod("web", policy="Never")
    await pods.sync([web])
    await first.clock.settle()
    running = first.runtime.running["app"]
    await pods.close()
    second = FakeNode(tmp_path, clock=FakeClock(START + dt.timedelta(seconds=60)))
    second.runtime.adoptable[running.container_id] = ContainerExit(3, START + dt.timedelta(seconds=30), False)
    again = manager(second)
    await again.restore()
    await second.clock.settle()
    ended = again.workers[web.uid].records["app"].terminated
    assert ended is not None and (ended.exit_code, ended.reason) == (3, "Error")
    assert again.workers[web.uid].to_json()["status"]["phase"] == "Failed"
    await again.close()


async def test_attempts_begun_after_the_last_save_count_when_the_newest_is_not_running(tmp_path: Path) -> None:
    """The saved state knows attempt 0 running; attempt 1's log file, written after that save, proves it began
    after it (the saves that followed could not be written) and nothing runs it now: the count is 1, both ends
    unknown, and the next start is attempt 2 (catchup.py). A log file older than the save proves nothing."""
    first = FakeNode(tmp_path)
    pods = manager(first)
    web = pod("web")
    await pods.sync([web])
    await first.clock.settle()
    lost = first.runtime.running["app"].container_id
    await pods.close()
    logs = Path(first.services.logs_dir) / f"default_web-node1_{web.uid}" / "app"
    logs.mkdir(parents=True)
    saved_at = Path(PodStore(str(tmp_path / "state")).path(web.uid)).stat().st_mtime
    for name, written in (("0.log", saved_at + 1), ("1.log.20261204-101010.gz", saved_at + 1),  # rotated: it counts
                          ("2.log", saved_at - 1)):  # a start that failed before the last save: it does not
        (logs / name).touch()
        os.utime(logs / name, (written, written))
    second = FakeNode(tmp_path, clock=FakeClock(START + dt.timedelta(seconds=60)))
    again = manager(second)
    await again.restore()
    record = again.workers[web.uid].records["app"]
    assert (record.restart_count, record.state) == (1, State.TERMINATED)
    assert record.last_termination is not None and record.terminated is not None
    assert (record.last_termination.container_id, record.last_termination.reason) == (lost, "ContainerStatusUnknown")
    assert (record.terminated.exit_code, record.terminated.container_id) == (137, None)
    await second.clock.run_until(lambda: len(second.runtime.started) == 1)
    assert second.runtime.started[0].attempt == 2
    await again.close()


async def test_the_end_of_an_attempt_begun_after_the_last_save_is_read_from_the_runtime(tmp_path: Path) -> None:
    """The same lost save, but the runtime still knows how attempt 1 ended (conmon's exit file, containerd's
    exited container): its exit code, start and ID are recorded, not ContainerStatusUnknown."""
    first = FakeNode(tmp_path)
    pods = manager(first)
    web = pod("web")
    await pods.sync([web])
    await first.clock.settle()
    await pods.close()
    logs = Path(first.services.logs_dir) / f"default_web-node1_{web.uid}" / "app"
    logs.mkdir(parents=True)
    (logs / "1.log").touch()
    saved_at = Path(PodStore(str(tmp_path / "state")).path(web.uid)).stat().st_mtime
    os.utime(logs / "1.log", (saved_at + 1, saved_at + 1))
    second = FakeNode(tmp_path, clock=FakeClock(START + dt.timedelta(seconds=60)))
    began, ended = START + dt.timedelta(seconds=20), START + dt.timedelta(seconds=30)
    second.runtime.ended[(web.uid, "app", 1)] = AdoptionRecord("attempt-1", False, {})
    second.runtime.adoptable["attempt-1"] = ContainerExit(3, ended, False, started_at=began,
                                                          container_id="fake://attempt-1")
    again = manager(second)
    await again.restore()
    await second.clock.run_until(lambda: len(second.runtime.started) == 1)  # after the crash-loop back-off
    assert second.runtime.started[0].attempt == 2
    record = again.workers[web.uid].records["app"]
    assert (last := record.last_termination) is not None and record.restart_count == 2
    assert (last.exit_code, last.reason, last.container_id, last.started_at, last.finished_at) == (
        3, "Error", "fake://attempt-1", began, ended)
    await again.close()


async def test_a_pod_stopped_before_it_took_its_container_back_stops_it_gracefully(tmp_path: Path) -> None:
    """Its manifest gone while the agent was away: the container it never took back gets its preStop hook, SIGTERM
    and the grace period, as the kubelet's killContainer, not a SIGKILL through its cgroup's removal."""
    web = FakeNode.pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  containers:\n"
                       "  - {name: app, image: busybox, lifecycle: {preStop: {exec: {command: [bye]}}}}\n")
    second, again, running = await restored_while_running(tmp_path, web)
    await again.sync([])  # before the worker's set-up
    await second.clock.run_until(lambda: web.uid not in again.workers)
    assert running.signals == [signal.SIGTERM]
    assert [command for _, command in second.runtime.execs] == [("bye",)]
    await again.close()


async def test_orphaned_pod_cgroups_are_removed_and_known_ones_kept(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    pods = manager(node)
    web = pod("web")
    await pods.sync([web])
    await node.clock.settle()
    plan = pods.workers[web.uid].plan
    assert plan.pod is not None
    parent = plan.pod.path.rsplit("/", 1)[0]
    orphan = f"{parent}/pod0123456789abcdef"
    node.cgroups.existing[orphan] = plan.pod
    await pods.clean_orphans(set())
    assert orphan in node.cgroups.removed
    assert plan.pod.path in node.cgroups.existing
    await pods.close()


def test_a_cgroup_belongs_to_a_known_uid_in_each_spelling() -> None:
    """One set look-up per possible UID in the name gives what comparing with every known UID gave."""
    known = {"0123abcd", "a-b-c", "dashed-uid", "pod"}
    spelled = {uid.replace("-", "_") for uid in known}

    def reference(child: str) -> bool:
        return any(child == f"pod{uid}" or child.startswith(f"pod{uid}-")
                   or child.endswith(f"-pod{uid.replace('-', '_')}.slice") for uid in known)

    children = ["pod0123abcd", "pod0123abcd-app", "poda-b-c", "poda-b-c-app", "poda-b", "poda-b-x",
                "poddashed-uid-c-d", "pod0123abc", "pod0123abcde", "kubepods-besteffort-pod0123abcd.slice",
                "kubepods-pod0123abcd.slice", "kubepods-besteffort-poda_b_c.slice", "kubepods-poda-b-c.slice",
                "kubepods-besteffort-poddashed_uid.slice", "kubepods-besteffort-pod0123.slice", "podpod",
                "podpod-x", "x-podpod.slice", "pod", "-pod.slice", "burstable", "pod-"]
    for child in children:
        assert _belongs(child, known, spelled) == reference(child), child
    assert _belongs("poda-b-c-app", known, spelled) and not _belongs("poda-b-x", known, spelled)
