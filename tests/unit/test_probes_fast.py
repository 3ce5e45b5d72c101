"""Probes' thresholds and timing (initialDelaySeconds, periodSeconds, failureThreshold, successThreshold), with
exec probes against the fake runtime on the fake clock."""

from __future__ import annotations

import asyncio
from collections import deque

from nodeagent.agent.probes import ProbeCallbacks, ProbeResult, run_probes
from nodeagent.api.model import Container, Probe
from nodeagent.runtime.base import ExecResult
from tests.conftest import load_pod
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRunning, FakeRuntime

OK = ExecResult(0, "")
FAIL = ExecResult(1, "not yet")
AWAY = ExecResult(-1, "runtime away", runtime_away=True)


def container(probes: str) -> Container:
    pod = load_pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\n"
                   "spec:\n  containers:\n  - name: c\n    image: busybox\n" + probes)
    return pod.pod.all_containers()[0]


def probe(kind: str, **fields: int) -> str:
    extra = "".join(f"      {key}: {value}\n" for key, value in fields.items())
    return f"    {kind}:\n      exec: {{command: [check]}}\n{extra}"


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.ready: list[tuple[float, bool]] = []
        self.failed: list[tuple[float, str, str]] = []
        self.killed: list[tuple[float, str]] = []
        self.killing_probes: list[Probe] = []
        self.started: list[float] = []  # when the startupProbe passed (at once without one)  # the probe behind each kill (its own grace period, if any)

    def callbacks(self) -> ProbeCallbacks:
        def ready(value: bool) -> None:
            self.ready.append((self.clock.elapsed, value))

        def failed(kind: str, result: ProbeResult) -> None:
            self.failed.append((self.clock.elapsed, kind, result.output))

        async def kill(message: str, probe: Probe) -> None:
            self.killed.append((self.clock.elapsed, message))
            self.killing_probes.append(probe)

        def started() -> None:
            self.started.append(self.clock.elapsed)

        return ProbeCallbacks(ready=ready, failed=failed, kill=kill, started=started)


async def start(spec: Container, results: list[ExecResult]) -> tuple[FakeClock, Recorder, asyncio.Task[None]]:
    clock = FakeClock()
    runtime = FakeRuntime(clock, exec_results=deque(results))
    recorder = Recorder(clock)
    task = asyncio.create_task(run_probes(spec, runtime=runtime, running=FakeRunning(clock, "fake://c"),
                                          pod_ip="127.0.0.1", callbacks=recorder.callbacks(), clock=clock))
    return clock, recorder, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_liveness_kills_after_failure_threshold_failures_in_a_row() -> None:
    spec = container(probe("livenessProbe", initialDelaySeconds=5, periodSeconds=10, failureThreshold=3))
    clock, recorder, task = await start(spec, [FAIL, FAIL, OK, FAIL, FAIL, FAIL])
    await clock.run_until(task.done)
    assert [t for t, *_ in recorder.failed] == [5, 15, 35, 45, 55]  # the success at 25 s reset the count
    assert recorder.killed == [(55, "Container c failed liveness probe, will be restarted")]
    assert recorder.killing_probes == [spec.liveness_probe]  # its grace period is the one the kill uses
    assert recorder.ready == [(0, True)]  # no readiness probe: ready at once


async def test_readiness_needs_success_threshold_successes_and_failure_threshold_failures() -> None:
    spec = container(probe("readinessProbe", periodSeconds=2, successThreshold=2, failureThreshold=2))
    clock, recorder, task = await start(spec, [OK, FAIL, OK, OK, FAIL, OK, FAIL, FAIL])
    await clock.run_until(lambda: len(recorder.ready) == 2)
    await stop(task)
    assert recorder.ready == [(6, True), (14, False)]
    assert [t for t, *_ in recorder.failed] == [2, 8, 12, 14]


async def test_startup_holds_the_others_back_then_kills_at_its_threshold() -> None:
    spec = container(probe("startupProbe", periodSeconds=1, failureThreshold=3)
                     + probe("readinessProbe", periodSeconds=5))
    clock, recorder, task = await start(spec, [FAIL, FAIL, FAIL])
    await clock.run_until(task.done)
    assert [(t, kind) for t, kind, _ in recorder.failed] == [(0, "Startup"), (1, "Startup"), (2, "Startup")]
    assert recorder.killed == [(2, "Container c failed startup probe, will be restarted")]
    assert recorder.killing_probes == [spec.startup_probe]
    assert recorder.ready == []


async def test_startup_success_lets_readiness_begin() -> None:
    spec = container(probe("startupProbe", periodSeconds=1, failureThreshold=3)
                     + probe("readinessProbe", periodSeconds=5))
    clock, recorder, task = await start(spec, [FAIL, OK, OK])
    await clock.run_until(lambda: bool(recorder.ready))
    await stop(task)
    assert recorder.ready == [(1, True)]
    assert recorder.killed == []


async def test_a_probe_the_runtime_could_not_run_counts_neither_way() -> None:
    spec = container(probe("livenessProbe", periodSeconds=10, failureThreshold=1))
    clock, recorder, task = await start(spec, [AWAY, AWAY, OK, FAIL])
    await clock.run_until(task.done)
    assert [t for t, *_ in recorder.failed] == [30]
    assert recorder.killed == [(30, "Container c failed liveness probe, will be restarted")]


async def test_a_probe_that_does_not_answer_in_time_fails_with_a_timeout() -> None:
    spec = container(probe("livenessProbe", periodSeconds=10, timeoutSeconds=3, failureThreshold=1))
    clock = FakeClock()

    class Slow(FakeRuntime):
        async def exec(self, running: object, command: object, timeout: float) -> ExecResult:
            await self.clock.sleep(60)
            return OK

    recorder = Recorder(clock)
    task = asyncio.create_task(run_probes(spec, runtime=Slow(clock), running=FakeRunning(clock, "fake://c"),
                                          pod_ip="127.0.0.1", callbacks=recorder.callbacks(), clock=clock))
    await clock.run_until(task.done)
    assert recorder.failed == [(3, "Liveness", "timeout: no answer within 3s")]
