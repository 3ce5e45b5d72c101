"""A fake Runtime and its containers: each start follows a script the test writes, nothing runs.

A FakeRunning container ends when the test calls `exit()`, on SIGKILL (137), or on SIGTERM (143) unless it
was made to ignore it. `FakeRuntime.plan(name, ...)` queues what the next starts of a container do:
an exit code after some seconds, an OOM kill, a start error.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import AdoptionRecord, ContainerExit, ContainerSpec, ExecResult, FoundContainer, ImageReady
from tests.fakes.clock import FakeClock

_pids = itertools.count(1000)


class FakeRunning:
    def __init__(self, clock: FakeClock, container_id: str, *, ignores_term: bool = False) -> None:
        self.clock = clock
        self.container_id = container_id
        self.pid = next(_pids)
        self.started_at = clock.now()
        self.ignores_term = ignores_term
        self.image_stop_signal: int | None = None  # as an image without STOPSIGNAL
        self.signals: list[int] = []  # every signal sent, SIGKILL as kill()
        self._exit: asyncio.Future[ContainerExit] = asyncio.get_running_loop().create_future()

    @property
    def exited(self) -> bool:
        return self._exit.done()

    def exit(self, code: int, *, oom_killed: bool = False, oom_victim: str | None = None) -> None:
        if not self._exit.done():
            self._exit.set_result(ContainerExit(code, self.clock.now(), oom_killed, oom_victim))

    async def wait(self) -> ContainerExit:
        return await asyncio.shield(self._exit)

    def signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGTERM and not self.ignores_term:
            self.exit(143)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.exit(137)

    def saved(self) -> AdoptionRecord:
        return AdoptionRecord(self.container_id, False, {})

    async def reopen_log(self) -> bool:
        return not self.exited


@dataclass(frozen=True)
class Attempt:
    """What one start of a container does: run `seconds` then exit with `exit_code` (None: run until
    stopped), or fail to start with `error` (a RuntimeStartError)."""

    exit_code: int | None = None
    seconds: float = 0.0
    oom_killed: bool = False
    error: RuntimeStartError | None = None
    ignores_term: bool = False


@dataclass
class FakeRuntime:
    clock: FakeClock
    name: str = "fake"
    host_mount_points: bool = False
    pulled: bool = False
    exec_results: deque[ExecResult] = field(default_factory=deque)  # probes' and hooks' results, in order
    execs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    started: list[ContainerSpec] = field(default_factory=list)
    starts: list[tuple[str, float]] = field(default_factory=list)  # (container, fake seconds) of each start
    running: dict[str, FakeRunning] = field(default_factory=dict)  # by container name: the latest attempt
    adoptable: dict[str, FakeRunning | ContainerExit] = field(default_factory=dict)  # by saved container_id
    ended: dict[tuple[str, str, int], AdoptionRecord] = field(default_factory=dict)  # (pod uid, name, attempt)
    _plans: dict[str, deque[Attempt]] = field(default_factory=lambda: defaultdict(deque))
    _ids: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    def plan(self, container: str, *attempts: Attempt) -> None:
        self._plans[container].extend(attempts)

    async def ensure_image(self, spec: ContainerSpec, on_pull: Callable[[], None]) -> ImageReady | None:
        plan = self._plans[spec.name]
        if plan and plan[0].error is not None and plan[0].error.reason == "ErrImagePull":
            on_pull()
            error = plan.popleft().error
            assert error is not None
            raise error
        if self.pulled:
            on_pull()
        return ImageReady(image_ref=f"fake/{spec.image}@sha256:0", pulled=self.pulled, seconds=1.5,
                          size_bytes=1024)

    async def start(self, spec: ContainerSpec) -> FakeRunning:
        plan = self._plans[spec.name]
        attempt = plan.popleft() if plan else Attempt()
        if attempt.error is not None:
            raise attempt.error
        self.started.append(spec)
        self.starts.append((spec.name, self.clock.elapsed))
        running = FakeRunning(self.clock, f"fake://{spec.name}-{self._ids()}", ignores_term=attempt.ignores_term)
        self.running[spec.name] = running
        if attempt.exit_code is not None:
            asyncio.get_running_loop().create_task(self._exit_later(running, attempt))
        return running

    async def _exit_later(self, running: FakeRunning, attempt: Attempt) -> None:
        await self.clock.sleep(attempt.seconds)
        assert attempt.exit_code is not None
        running.exit(attempt.exit_code, oom_killed=attempt.oom_killed,
                     oom_victim="stress (pid 42)" if attempt.oom_killed else None)

    async def adopt(self, spec: ContainerSpec, saved: AdoptionRecord) -> FakeRunning | ContainerExit:
        found = self.adoptable.pop(saved.container_id)
        if isinstance(found, FakeRunning):
            self.running[spec.name] = found
        return found

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        return []

    async def find_ended(self, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        return self.ended.get((pod_uid, name, attempt))

    async def exec(self, running: Any, command: Sequence[str], timeout: float) -> ExecResult:
        self.execs.append((running.container_id, tuple(command)))
        return self.exec_results.popleft() if self.exec_results else ExecResult(0, "")
