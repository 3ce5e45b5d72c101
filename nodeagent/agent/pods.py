"""The pods on this node: one worker per desired pod, started, replaced and stopped as the sources say.

    sync(desired) -> workers for new UIDs start, workers whose UID is gone stop;
                     the node's QoS cgroups follow the set of pods.

Like the kubelet, two pods of one name never run at once: a changed manifest's new pod waits until
the old one has terminated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from nodeagent.agent.worker import NodeServices, PodWorker
from nodeagent.api.manifest import StaticPod
from nodeagent.errors import NodeAgentError
from nodeagent.plan.qos import plan_node_cgroups

log = logging.getLogger(__name__)


class PodManager:
    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self.workers: dict[str, PodWorker] = {}  # by UID, terminating ones included
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def pods(self) -> list[PodWorker]:
        return sorted(self.workers.values(), key=lambda w: (w.pod.namespace, w.pod.name, w.created_at))

    def find(self, namespace: str, name: str) -> PodWorker | None:
        """The pod of that name; the running one when a replaced one is still terminating."""
        matches = [w for w in self.pods() if w.pod.namespace == namespace and w.pod.name == name]
        return matches[-1] if matches else None

    async def start(self) -> None:
        await self._apply_node_cgroups([])

    async def sync(self, desired: Iterable[StaticPod]) -> None:
        wanted = {pod.uid: pod for pod in desired}
        for uid, worker in list(self.workers.items()):
            if uid not in wanted and worker.terminating_since is None:
                log.info("pod=%s uid=%s: manifest removed or changed, stopping", worker.key, uid)
                worker.stop()
        await self._apply_node_cgroups(wanted.values())
        for uid, pod in wanted.items():
            if uid not in self.workers:
                worker = PodWorker(pod, self.services)
                self.workers[uid] = worker
                self._tasks[uid] = asyncio.create_task(self._run(worker), name=f"worker {pod.key}")
                log.info("pod=%s uid=%s: new (source %s %s)", pod.key, uid, pod.source, pod.origin)
        self.services.on_change()

    async def _run(self, worker: PodWorker) -> None:
        try:
            earlier = [w for w in self.workers.values() if w.key == worker.key and w is not worker]
            for other in earlier:
                await other.done.wait()
            await worker.run()
        finally:
            if worker.done.is_set():
                self.workers.pop(worker.pod.uid, None)
                self._tasks.pop(worker.pod.uid, None)
                self.services.on_change()

    async def _apply_node_cgroups(self, pods: Iterable[StaticPod]) -> None:
        cgroups = plan_node_cgroups(pods, self.services.node, self.services.settings)
        try:
            await self.services.cgroups.apply(cgroups)
        except NodeAgentError as exc:
            log.error("updating the QoS cgroups: %s", exc)

    async def close(self) -> None:
        """Stop watching pods without stopping them: the agent is going away, its pods are not."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
