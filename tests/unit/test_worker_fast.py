"""A pod's life on fakes (runtime, cgroups, clock): crash loops, OOM kills, pulls, init containers,
termination and restore, with the kubelet's exact timings and events, in no real time and without root."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
from pathlib import Path

import pytest

from nodeagent.agent.lifecycle import ContainerState, PodState
from nodeagent.agent.records import State
from nodeagent.agent.worker import PodWorker
from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import ExecResult
from tests.fakes.pod import FakeNode
from tests.fakes.runtime import Attempt
from tests.fakes.sandboxes import FakeSandboxes

HEADER = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\n"


def manifest(spec: str) -> str:
    return HEADER + "spec:\n" + spec


ONE = manifest("  containers:\n  - {name: app, image: busybox}\n")


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    return FakeNode(tmp_path)


async def run(node: FakeNode, worker: PodWorker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run())
    await node.clock.settle()
    return task


async def stop(node: FakeNode, worker: PodWorker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await node.clock.run_until(task.done)
    task.result()


async def test_a_crash_loop_backs_off_10_20_40_80_160_300_300_seconds(node: FakeNode) -> None:
    node.runtime.plan("app", *[Attempt(exit_code=1, seconds=1)] * 9)
    worker = node.worker(ONE)
    task = await run(node, worker)
    await node.clock.run_until(lambda: len(node.runtime.starts) == 9, limit=3000)
    times = [t for _, t in node.runtime.starts]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    # the first exit restarts at once; each later one waits the back-off, counted from the exit
    assert gaps == [1, 11, 21, 41, 81, 161, 301, 301]
    record = worker.records["app"]
    assert record.restart_count == 8 and record.state is State.RUNNING
    assert record.last_termination is not None and record.last_termination.exit_code == 1
    await node.clock.advance(1)
    assert worker.records["app"].reason == "CrashLoopBackOff"
    assert worker.records["app"].message == ("back-off 5m0s restarting failed container=app "
                                            f"pod={worker.pod_label}")
    assert "BackOff" in node.reasons("app")
    await stop(node, worker, task)


async def test_a_long_run_resets_the_back_off(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(exit_code=1, seconds=1), Attempt(exit_code=1, seconds=1),
                      Attempt(exit_code=1, seconds=700), Attempt(exit_code=1, seconds=1))
    worker = node.worker(ONE)
    task = await run(node, worker)
    await node.clock.run_until(lambda: len(node.runtime.starts) == 5, limit=3000)
    times = [t for _, t in node.runtime.starts]
    # the 700 s run (over 2 x 300 s) is forgiven: restarted at once, the back-off back to 10 s (not 40 s)
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [1, 11, 700, 11]
    await stop(node, worker, task)


async def test_an_oom_kill_is_137_oomkilled_with_its_event(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(exit_code=137, seconds=5, oom_killed=True))
    worker = node.worker(manifest("  restartPolicy: Never\n  containers:\n  - {name: app, image: busybox}\n"))
    task = await run(node, worker)
    await node.clock.run_until(lambda: worker.records["app"].state is State.TERMINATED)
    ended = worker.records["app"].terminated
    assert ended is not None and (ended.exit_code, ended.reason) == (137, "OOMKilled")
    assert node.metrics.ooms == 1
    assert node.messages("OOMKilling") == [
        f"Memory cgroup out of memory: Killed process stress (pid 42) in container app of pod {worker.pod_label}"]
    assert len(node.runtime.starts) == 1  # Never: no restart
    await stop(node, worker, task)


async def test_a_failed_pull_shows_errimagepull_then_backs_off(node: FakeNode) -> None:
    failure = RuntimeStartError("ErrImagePull", "manifest unknown")
    node.runtime.plan("app", Attempt(error=failure), Attempt(error=failure))
    worker = node.worker(ONE)
    task = await run(node, worker)
    assert worker.records["app"].reason == "ErrImagePull"
    await node.clock.advance(1)
    assert worker.records["app"].reason == "ImagePullBackOff"
    assert worker.records["app"].message == 'Back-off pulling image "busybox"'
    await node.clock.run_until(lambda: worker.records["app"].reason == "ErrImagePull"
                               and node.clock.elapsed > 0)
    assert node.clock.elapsed == pytest.approx(10)  # the image back-off: 10 s, then 20 s
    await node.clock.run_until(lambda: worker.records["app"].state is State.RUNNING)
    assert node.clock.elapsed == pytest.approx(30)
    assert node.messages("Failed")[:2] == ['Failed to pull image "busybox": manifest unknown', "Error: ErrImagePull"]
    await stop(node, worker, task)


async def test_another_start_failure_keeps_its_reason_and_retries_after_10s(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(error=RuntimeStartError("CreateContainerError", "no such file")))
    worker = node.worker(ONE)
    task = await run(node, worker)
    assert (worker.records["app"].reason, worker.records["app"].message) == ("CreateContainerError", "no such file")
    await node.clock.run_until(lambda: worker.records["app"].state is State.RUNNING)
    assert node.clock.elapsed == pytest.approx(10)
    await stop(node, worker, task)


INITS = "  initContainers:\n  - {name: init, image: busybox}\n  containers:\n  - {name: app, image: busybox}\n"


@pytest.mark.parametrize(("policy", "init_starts", "app_runs"), [
    ("Always", 2, True),  # an init container restarts on failure (OnFailure) ...
    ("OnFailure", 2, True),
    ("Never", 1, False),  # ... except under Never: the pod failed
])
async def test_a_failed_init_container_by_restart_policy(node: FakeNode, policy: str, init_starts: int,
                                                         app_runs: bool) -> None:
    node.runtime.plan("init", Attempt(exit_code=3, seconds=1), Attempt(exit_code=0, seconds=1))
    worker = node.worker(manifest(f"  restartPolicy: {policy}\n" + INITS))
    task = await run(node, worker)
    assert worker.records["app"].reason == "PodInitializing"
    await node.clock.advance(30)
    assert [n for n, _ in node.runtime.starts].count("init") == init_starts
    assert (worker.records["app"].state is State.RUNNING) is app_runs
    pod = worker.to_json()
    if app_runs:
        assert "Initialized" in worker.transitions and worker.state is PodState.RUNNING
    else:
        assert pod["status"]["phase"] == "Failed" and worker.state is PodState.FAILED
        assert worker.slots["init"].observed.state is ContainerState.DONE
    await stop(node, worker, task)


@pytest.mark.parametrize(("codes", "state", "phase"), [
    ((0, 0), PodState.SUCCEEDED, "Succeeded"),
    ((0, 2), PodState.FAILED, "Failed"),
])
async def test_a_pod_whose_containers_all_ended_under_never_is_finished(
        node: FakeNode, codes: tuple[int, int], state: PodState, phase: str) -> None:
    node.runtime.plan("a", Attempt(exit_code=codes[0], seconds=1))
    node.runtime.plan("b", Attempt(exit_code=codes[1], seconds=2))
    worker = node.worker(manifest("  restartPolicy: Never\n  containers:\n  - {name: a, image: busybox}\n"
                                  "  - {name: b, image: busybox}\n"))
    task = await run(node, worker)
    assert state_of(worker) is PodState.RUNNING
    await node.clock.advance(1)
    assert state_of(worker) is PodState.RUNNING and worker.slots["a"].observed.state is ContainerState.DONE
    await node.clock.advance(1)
    assert state_of(worker) is state and worker.to_json()["status"]["phase"] == phase
    await node.clock.advance(600)
    assert len(node.runtime.starts) == 2  # nothing restarts
    await stop(node, worker, task)
    assert state_of(worker) is PodState.TERMINATED


def state_of(worker: PodWorker) -> PodState:
    """The pod's state now (a call: mypy would keep an earlier assertion's narrowing across the awaits)."""
    return worker.state


async def test_termination_runs_prestop_then_sigterm_then_sigkill_after_the_grace_period(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(ignores_term=True))
    worker = node.worker(manifest(
        "  terminationGracePeriodSeconds: 20\n  containers:\n  - name: app\n    image: busybox\n"
        "    lifecycle: {preStop: {sleep: {seconds: 5}}}\n"))
    task = await run(node, worker)
    running = node.runtime.running["app"]
    worker.stop()
    await node.clock.advance(4.9)
    assert running.signals == []  # preStop still runs
    await node.clock.advance(0.2)
    assert running.signals == [signal.SIGTERM]
    await node.clock.advance(14.7)  # the grace period counts the hook: 20 s in all
    assert running.signals == [signal.SIGTERM]
    await node.clock.run_until(task.done)
    assert running.signals == [signal.SIGTERM, signal.SIGKILL]
    assert node.clock.elapsed == pytest.approx(20, abs=0.1)
    assert node.messages("Killing") == ["Stopping container app"]
    assert worker.records["app"].terminated is not None
    assert worker.records["app"].terminated.exit_code == 137
    assert not node.cgroups.existing  # torn down


async def test_a_container_that_ends_on_sigterm_is_not_killed(node: FakeNode) -> None:
    worker = node.worker(ONE)
    task = await run(node, worker)
    running = node.runtime.running["app"]
    await stop(node, worker, task)
    assert running.signals == [signal.SIGTERM]
    assert node.clock.elapsed < 1


async def test_a_failing_prestop_hook_is_an_event_and_termination_goes_on(node: FakeNode) -> None:
    node.runtime.exec_results.append(ExecResult(2, "boom"))
    worker = node.worker(manifest(
        "  containers:\n  - name: app\n    image: busybox\n    lifecycle: {preStop: {exec: {command: [bye]}}}\n"))
    task = await run(node, worker)
    await stop(node, worker, task)
    assert len(node.messages("FailedPreStopHook")) == 1
    assert "exited with 2: boom" in node.messages("FailedPreStopHook")[0]


async def test_liveness_failures_restart_the_container(node: FakeNode) -> None:
    node.runtime.exec_results.extend([ExecResult(1, "sick")] * 3)
    worker = node.worker(manifest(
        "  containers:\n  - name: app\n    image: busybox\n"
        "    livenessProbe: {exec: {command: [check]}, periodSeconds: 10, failureThreshold: 3}\n"))
    task = await run(node, worker)
    await node.clock.run_until(lambda: len(node.runtime.starts) == 2)
    assert node.clock.elapsed == pytest.approx(20)
    assert node.messages("Killing") == ["Container app failed liveness probe, will be restarted"]
    assert worker.records["app"].restart_count == 1
    await stop(node, worker, task)


async def test_a_pod_whose_cgroup_cannot_be_made_retries_with_a_doubling_delay(node: FakeNode) -> None:
    node.cgroups.fail_apply = 3
    worker = node.worker(ONE)
    task = await run(node, worker)
    await node.clock.run_until(lambda: worker.records["app"].state is State.RUNNING)
    assert node.clock.elapsed == pytest.approx(1 + 2 + 4)
    assert node.reasons().count("FailedCreatePodSandBox") == 1  # one event, counted 3 times
    assert [e.count for e in node.events.events() if e.reason == "FailedCreatePodSandBox"] == [3]
    await stop(node, worker, task)


async def test_a_failed_post_start_hook_kills_the_container(node: FakeNode) -> None:
    node.runtime.exec_results.append(ExecResult(1, "no"))
    worker = node.worker(manifest(
        "  restartPolicy: Never\n  containers:\n  - name: app\n    image: busybox\n"
        "    lifecycle: {postStart: {exec: {command: [setup]}}}\n"))
    task = await run(node, worker)
    await node.clock.run_until(lambda: worker.records["app"].state is State.TERMINATED)
    assert len(node.messages("FailedPostStartHook")) == 1
    assert node.runtime.started and node.runtime.running["app"].signals == [signal.SIGKILL]
    await stop(node, worker, task)


async def test_a_pulled_image_has_its_events(node: FakeNode) -> None:
    node.runtime.pulled = True
    worker = node.worker(ONE)
    task = await run(node, worker)
    assert node.messages("Pulling") == ['Pulling image "busybox"']
    assert node.messages("Pulled") == ['Successfully pulled image "busybox" in 1.5s (1.5s including waiting). '
                                       "Image size: 1024 bytes."]
    assert worker.records["app"].image_id == "fake/busybox@sha256:0"
    await stop(node, worker, task)


async def test_a_sandbox_that_cannot_be_removed_is_retried_with_back_off_until_it_is(node: FakeNode) -> None:
    sandboxes = FakeSandboxes(node.clock)
    node.services = dataclasses.replace(node.services, sandboxes=sandboxes)
    worker = node.worker(ONE)
    task = await run(node, worker)
    await node.clock.run_until(lambda: "app" in node.runtime.running)  # its etc-hosts written in a thread
    assert worker.pod.uid in sandboxes.sandboxes
    sandboxes.down = True  # containerd is down when the pod goes
    worker.stop()
    await node.clock.run_until(lambda: bool(sandboxes.removals))
    await node.clock.advance(100)
    assert not task.done() and worker.pod.uid in sandboxes.sandboxes
    started = sandboxes.removals[0]
    assert [round(t - started) for t in sandboxes.removals] == [0, 1, 3, 7, 15, 31, 61, 91]  # 1, 2, 4 .. 30 s
    sandboxes.down = False  # containerd is back
    await node.clock.run_until(task.done)
    task.result()
    assert worker.pod.uid not in sandboxes.sandboxes
    assert not (node.root / "state" / "pods" / worker.pod.uid).exists()


async def test_past_its_active_deadline_a_pod_fails_its_containers_stop_and_nothing_restarts(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(ignores_term=True))
    worker = node.worker(manifest("  activeDeadlineSeconds: 30\n  terminationGracePeriodSeconds: 5\n"
                                  "  containers:\n  - {name: app, image: busybox}\n"))
    task = await run(node, worker)
    running = node.runtime.running["app"]
    await node.clock.advance(29.9)
    assert running.signals == [] and not worker.deadline_exceeded
    await node.clock.advance(0.2)
    assert running.signals == [signal.SIGTERM] and worker.deadline_exceeded
    await node.clock.advance(5)
    assert running.signals == [signal.SIGTERM, signal.SIGKILL]
    status = worker.to_json()["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert node.messages("DeadlineExceeded") == ["Pod was active on the node longer than the specified deadline"]
    await node.clock.advance(600)
    assert len(node.runtime.starts) == 1  # Always, yet never started again
    await stop(node, worker, task)


async def test_a_container_stops_with_its_stop_signal(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(ignores_term=True))
    worker = node.worker(manifest("  os: {name: linux}\n  terminationGracePeriodSeconds: 3\n  containers:\n"
                                  "  - {name: app, image: busybox, lifecycle: {stopSignal: SIGQUIT}}\n"))
    task = await run(node, worker)
    running = node.runtime.running["app"]
    await stop(node, worker, task)
    assert running.signals == [signal.SIGQUIT, signal.SIGKILL]


async def test_a_liveness_probe_kills_within_its_own_grace_period(node: FakeNode) -> None:
    node.runtime.plan("app", Attempt(ignores_term=True), Attempt())
    node.runtime.exec_results.extend([ExecResult(1, "sick")])
    worker = node.worker(manifest(
        "  terminationGracePeriodSeconds: 60\n  containers:\n  - name: app\n    image: busybox\n"
        "    livenessProbe: {exec: {command: [check]}, periodSeconds: 10, failureThreshold: 1,"
        " terminationGracePeriodSeconds: 3}\n"))
    task = await run(node, worker)
    running = node.runtime.running["app"]
    await node.clock.run_until(lambda: signal.SIGKILL in running.signals)
    assert node.clock.elapsed == pytest.approx(3, abs=0.1)  # the probe's 3 s, not the pod's 60
    await stop(node, worker, task)


async def test_a_liveness_kill_runs_the_prestop_hook_first_within_the_grace_period(node: FakeNode) -> None:
    """As the kubelet's killContainer: preStop, then the stop signal, all within the probe's grace period."""
    node.runtime.plan("app", Attempt(ignores_term=True), Attempt())
    node.runtime.exec_results.extend([ExecResult(1, "sick")])
    worker = node.worker(manifest(
        "  containers:\n  - name: app\n    image: busybox\n    lifecycle: {preStop: {sleep: {seconds: 5}}}\n"
        "    livenessProbe: {exec: {command: [check]}, periodSeconds: 10, failureThreshold: 1,"
        " terminationGracePeriodSeconds: 8}\n"))
    task = await run(node, worker)
    running = node.runtime.running["app"]
    await node.clock.run_until(lambda: bool(running.signals))
    assert running.signals == [signal.SIGTERM]
    assert node.clock.elapsed == pytest.approx(5, abs=0.1)  # the first probe failed at once, the hook slept 5 s
    await node.clock.run_until(lambda: signal.SIGKILL in running.signals)
    assert node.clock.elapsed == pytest.approx(8, abs=0.1)  # the hook's time counts in the probe's 8 s
    await stop(node, worker, task)


async def test_a_sidecar_lets_the_app_start_once_its_startup_probe_passes(node: FakeNode) -> None:
    node.runtime.exec_results.extend([ExecResult(1, "not yet"), ExecResult(1, "not yet"), ExecResult(0, "")])
    worker = node.worker(manifest(
        "  initContainers:\n  - name: proxy\n    image: busybox\n    restartPolicy: Always\n"
        "    startupProbe: {exec: {command: [check]}, periodSeconds: 5, failureThreshold: 10}\n"
        "  containers:\n  - {name: app, image: busybox}\n"))
    task = await run(node, worker)
    assert [name for name, _ in node.runtime.starts] == ["proxy"]
    await node.clock.run_until(lambda: len(node.runtime.starts) == 2)
    name, at = node.runtime.starts[1]
    assert (name, at) == ("app", 10)  # the third probe, 10 s in, passed
    await stop(node, worker, task)


async def test_a_container_counts_as_started_in_its_status_once_its_startup_probe_passes(node: FakeNode) -> None:
    """status.containerStatuses[].started: the kubelet's, true once the startupProbe has passed (at once for a
    container without one), not as soon as it runs."""
    node.runtime.exec_results.extend([ExecResult(1, "not yet"), ExecResult(0, "")])
    worker = node.worker(manifest(
        "  containers:\n  - name: app\n    image: busybox\n"
        "    startupProbe: {exec: {command: [check]}, periodSeconds: 5, failureThreshold: 10}\n"
        "  - {name: plain, image: busybox}\n"))

    def started() -> dict[str, bool]:
        return {c["name"]: c["started"] for c in worker.to_json()["status"]["containerStatuses"]}

    task = await run(node, worker)
    assert worker.records["app"].state is State.RUNNING
    assert started() == {"app": False, "plain": True}
    await node.clock.run_until(lambda: started()["app"])
    assert node.clock.elapsed == pytest.approx(5, abs=0.1)  # the second probe, 5 s in, passed
    node.runtime.exec_results.append(ExecResult(1, "not yet"))
    node.runtime.running["app"].exit(1)
    await node.clock.run_until(lambda: worker.records["app"].restart_count == 1)
    assert started()["app"] is False  # probed again after a restart
    await node.clock.run_until(lambda: started()["app"])
    await stop(node, worker, task)
