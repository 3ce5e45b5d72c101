"""What the API server and the metrics read of the pods: a read-only view, not the workers themselves.

PodWorker and PodManager satisfy these Protocols; server.py and metrics.py import only this module (an
import-linter contract keeps it so), so the lifecycle can change behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from nodeagent.agent.records import ContainerRecord
from nodeagent.api.manifest import StaticPod
from nodeagent.plan.pod import ResourcePlan
from nodeagent.runtime.base import RunningContainer, Runtime


class PodView(Protocol):
    @property
    def pod(self) -> StaticPod: ...

    @property
    def plan(self) -> ResourcePlan: ...

    @property
    def records(self) -> Mapping[str, ContainerRecord]:
        """Each container's record, init containers first, in spec order."""

    @property
    def runtime(self) -> Runtime:
        """The runtime its containers run in (exec goes through it)."""

    def running_container(self, name: str) -> RunningContainer | None:
        """The container's live instance while its record says RUNNING; None otherwise."""

    def to_json(self) -> dict[str, Any]:
        """The pod as the API shows it (v1 Pod with its status)."""


class PodsView(Protocol):
    def pods(self) -> Sequence[PodView]:
        """Every pod, by namespace, name and age."""

    def find(self, namespace: str, name: str) -> PodView | None:
        """The pod of that name; the running one when a replaced one is still terminating."""
