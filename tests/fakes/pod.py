"""A PodWorker on fakes: FakeRuntime, FakeCgroupDriver, FakeClock, and a real EventRecorder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import EventRecorder
from nodeagent.agent.services import NodeServices
from nodeagent.agent.worker import PodWorker
from nodeagent.api.manifest import StaticPod
from nodeagent.plan.settings import NodeInfo, PlanSettings
from tests.conftest import load_pod
from tests.fakes.cgroups import FakeCgroupDriver
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRuntime

NODE = NodeInfo(cpu_millis=4000, memory_bytes=8 * 1024**3)


async def forget_nothing(uid: str) -> None:
    """NodeServices.forget where nothing is written."""


@dataclass
class FakeMetrics:
    started: list[bool] = field(default_factory=list)  # init?
    ooms: int = 0
    pods_started: list[float] = field(default_factory=list)

    def pod_started(self, seconds: float) -> None:
        self.pods_started.append(seconds)

    def container_started(self, *, init: bool) -> None:
        self.started.append(init)

    def oom_kill(self) -> None:
        self.ooms += 1

    def pod_replaced(self) -> None:
        return None


@dataclass
class FakeNode:
    """Everything a worker needs, faked, with what it did."""

    root: Path
    clock: FakeClock = field(default_factory=FakeClock)
    cgroups: FakeCgroupDriver = field(default_factory=FakeCgroupDriver)
    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    saved: list[str] = field(default_factory=list)  # the pods' keys, each time one was saved
    runtime: FakeRuntime = field(init=False)
    events: EventRecorder = field(init=False)
    services: NodeServices = field(init=False)

    def __post_init__(self) -> None:
        self.runtime = FakeRuntime(self.clock)
        self.events = EventRecorder(self.clock.now)
        (self.root / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        self.services = NodeServices(
            runtime=self.runtime, cgroups=self.cgroups, events=self.events, clock=self.clock, node=NODE,
            settings=PlanSettings(), state_dir=str(self.root / "state"), logs_dir=str(self.root / "logs"),
            addresses=PodAddresses(host_ip="192.0.2.10", pod_ip="192.0.2.10"), networks=None, sandboxes=None,
            resolv_conf=str(self.root / "resolv.conf"), on_change=lambda: None,
            persist=lambda worker: self.saved.append(worker.key), forget=forget_nothing, metrics=self.metrics)

    def worker(self, manifest: str) -> PodWorker:
        return PodWorker(self.pod(manifest), self.services)

    @staticmethod
    def pod(manifest: str) -> StaticPod:
        return load_pod(manifest)

    def reasons(self, container: str | None = None) -> list[str]:
        """The events' reasons, oldest first (a repeated one once, where it last happened)."""
        return [e.reason for e in self.events.events()
                if container is None or e.involved.field_path.endswith(f"{{{container}}}")]

    def messages(self, reason: str) -> list[str]:
        return [e.message for e in self.events.events() if e.reason == reason]
