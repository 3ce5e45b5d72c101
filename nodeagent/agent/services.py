"""What every pod worker shares: the node's runtime, cgroups, events, clock and settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nodeagent.agent.clock import Clock
from nodeagent.agent.env import PodAddresses
from nodeagent.agent.events import EventRecorder
from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.warmth import AttachWarmth
from nodeagent.network.pods import PodNetworks
from nodeagent.plan.settings import NodeInfo, PlanSettings
from nodeagent.runtime.base import PodSandboxes, Runtime

if TYPE_CHECKING:  # the type of persist's argument only: the worker imports this module
    from nodeagent.agent.worker import PodWorker


class PodMetrics(Protocol):
    def pod_started(self, seconds: float) -> None: ...

    def container_started(self, *, init: bool) -> None: ...

    def oom_kill(self) -> None: ...

    def pod_replaced(self) -> None: ...


@dataclass(frozen=True)
class NodeServices:
    """What every pod worker shares."""

    runtime: Runtime
    cgroups: CgroupDriver
    events: EventRecorder
    clock: Clock
    node: NodeInfo
    settings: PlanSettings
    state_dir: str
    logs_dir: str
    addresses: PodAddresses  # the node's; a pod with its own network has its own pod_ip
    networks: PodNetworks | None  # None: every pod shares the node's network (cri: the runtime's CNI)
    sandboxes: PodSandboxes | None  # cri: the runtime makes each pod a sandbox, with its containers' cgroups
    resolv_conf: str  # the node's resolv.conf, the base of pods' own
    on_change: Callable[[], None]
    persist: Callable[[PodWorker], None]  # save a worker's state (nodeagent.agent.snapshot), written in a thread
    forget: Callable[[str], Awaitable[None]]  # before a pod's directory goes: its state no longer written
    metrics: PodMetrics
    # set once the agent said READY: a pod taken back after a restart repairs its cgroups and network only then
    agent_ready: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    # kicked once a container's cgroup is made; off by default (fakes, tests)
    attach_warmth: AttachWarmth = field(default_factory=lambda: AttachWarmth(None))


def _set(event: asyncio.Event) -> asyncio.Event:
    """An agent_ready for workers without an agent that says READY (tests): ready from the start."""
    event.set()
    return event
