"""Fake pod sandboxes (the cri runtime's side): made at once; removing one fails while `down` says so."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.errors import NodeAgentError
from nodeagent.runtime.base import PodSandboxSpec, Sandbox
from tests.fakes.clock import FakeClock


@dataclass
class FakeSandboxes:
    clock: FakeClock
    down: bool = False  # the runtime does not answer: removing a sandbox fails
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)  # by pod uid
    removals: list[float] = field(default_factory=list)  # the fake time of every removal attempt

    async def run_pod_sandbox(self, pod: PodSandboxSpec) -> Sandbox:
        return self.sandboxes.setdefault(pod.uid, Sandbox(id=f"sandbox-{pod.uid}", ip="10.0.0.5"))

    async def remove_pod_sandbox(self, uid: str) -> None:
        self.removals.append(self.clock.elapsed)
        if self.down:
            raise NodeAgentError("connection refused: containerd is down")
        self.sandboxes.pop(uid, None)

    async def clean_up(self, known_uids: set[str]) -> list[str]:
        gone = [uid for uid in self.sandboxes if uid not in known_uids]
        for uid in gone:
            del self.sandboxes[uid]
        return gone
