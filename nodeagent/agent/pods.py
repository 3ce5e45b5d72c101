"""The pods on this node: one worker per desired pod, started, replaced and stopped as the sources say.

    restore()       -> workers rebuilt from the state directory, their containers adopted; an unusable
                       state file is quarantined and its pod's running containers found from the runtime
    sync(desired)   -> workers for new UIDs start, workers whose UID is gone stop;
                       the node's QoS cgroups follow the set of pods
    clean_orphans() -> pod cgroups, networks, container bundles (and conmon exit files) and pod directories
                       nobody owns are removed; exit files are swept again after each pod's teardown

Like the kubelet, two pods of one name never run at once: a changed manifest's new pod waits until
the old one has terminated.

A quarantined UID (nodeagent.agent.store) is never an orphan: nothing of it is removed or killed. When a
source names that pod again (same manifest, same UID), its new worker adopts the containers found running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable

from nodeagent.agent import volumes
from nodeagent.agent.admission import Allocatable, Rejection, admit
from nodeagent.agent.catchup import catch_up, unsaved_attempts
from nodeagent.agent.events import WARNING, ObjectRef
from nodeagent.agent.records import State, Termination
from nodeagent.agent.services import NodeServices
from nodeagent.agent.snapshot import UnusableState, restore, snapshot
from nodeagent.agent.store import PodStore, Quarantine, StateWriter
from nodeagent.agent.worker import PodWorker
from nodeagent.api.manifest import StaticPod
from nodeagent.api.resources import QOSClass
from nodeagent.errors import NodeAgentError
from nodeagent.plan import paths
from nodeagent.plan.qos import plan_node_cgroups
from nodeagent.runtime.base import AdoptionRecord, ContainerBundles, FoundContainer

log = logging.getLogger(__name__)


class PodManager:
    def __init__(self, services: NodeServices, store: PodStore, capacity: Allocatable, *, node_name: str) -> None:
        self.services = services
        self.store = store
        self.capacity = capacity
        self.node_name = node_name
        self.workers: dict[str, PodWorker] = {}  # by UID, terminating ones included
        self.found: dict[str, list[FoundContainer]] = {}  # quarantined UIDs without a worker: what runs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._writers: dict[str, StateWriter] = {}  # by UID: each pod's state file, written in order

    def persist(self, worker: PodWorker) -> None:
        """Save the pod's state: taken now, written in a thread after the writes before it (StateWriter)."""
        uid = worker.pod.uid
        writer = self._writers.get(uid)
        if writer is None:
            writer = self._writers[uid] = StateWriter(self.store, uid, self.services.clock, worker.key)
        writer.save(self.store.encode(snapshot(worker)))

    async def forget(self, uid: str) -> None:
        """The pod's directory is about to go: its state no longer written, the write in flight awaited."""
        writer = self._writers.pop(uid, None)
        if writer is not None:
            await writer.close(drop=True)

    def pods(self) -> list[PodWorker]:
        return sorted(self.workers.values(), key=lambda w: (w.pod.namespace, w.pod.name, w.created_at))

    def find(self, namespace: str, name: str) -> PodWorker | None:
        """The pod of that name; the running one when a replaced one is still terminating."""
        matches = [w for w in self.pods() if w.pod.namespace == namespace and w.pod.name == name]
        return matches[-1] if matches else None

    async def start(self) -> None:
        await self._apply_node_cgroups([])

    async def restore(self) -> int:
        """Workers for the pods the state directory knows; their containers are adopted as they run. What
        cannot be used is quarantined and reported; what its pods run is looked for in the runtime."""
        now = self.services.clock.now()
        states, moved = self.store.load_all(now)
        restored: dict[str, PodWorker] = {}
        for state in states:
            try:
                worker = restore(state, self.services)
            except UnusableState as exc:
                moved.append(self.store.quarantine(str(state["uid"]), str(exc), now))
                continue
            if worker.pod.uid not in self.workers:
                restored[worker.pod.uid] = worker
        await self._catch_up(list(restored.values()), now)
        for worker in restored.values():
            if worker.start_time is None:  # it had not been admitted: it is judged again
                worker.reject(Rejection("Pending", "waiting for admission"))
            self._launch(worker)
            log.info("pod=%s uid=%s: restored from the state directory", worker.key, worker.pod.uid)
        for quarantine in moved:
            self._report_quarantine(quarantine)
        for uid, files in self.store.quarantined().items():
            if uid not in self.workers:
                self.found[uid] = await self._find_running(uid)
                log.warning("pod uid=%s: its state is quarantined (%s): kept as it is, %d container(s) running",
                            uid, ", ".join(files), len(self.found[uid]))
        self._admit_waiting()
        return len(self.workers)

    async def _catch_up(self, workers: list[PodWorker], now: dt.datetime) -> None:
        """Attempts begun after a pod's last save that reached the disk (nodeagent.agent.catchup), before any
        worker runs: the newest is taken back if it runs, not killed as an orphan."""
        unsaved = await asyncio.to_thread(lambda: {w.pod.uid: u for w in workers
                                                   if (u := unsaved_attempts(w, self.store.path(w.pod.uid)))})
        for worker in workers:
            if (attempts := unsaved.get(worker.pod.uid)) is None:
                continue
            ended = {}
            for name, attempt in attempts.items():
                if (saved := await self._find_ended(worker.pod.uid, name, attempt)) is not None:
                    ended[name] = saved
            catch_up(worker, attempts, await self._find_running(worker.pod.uid), ended, now)

    def _report_quarantine(self, quarantine: Quarantine) -> None:
        message = (f"state file of pod {quarantine.uid}: {quarantine.reason}; moved aside to {quarantine.path}. "
                   "Nothing of the pod is removed or killed; its running containers are taken back if a source "
                   "names it again")
        log.error("%s", message)
        self.services.events.record(ObjectRef("Node", self.node_name), WARNING, "StateQuarantined", message)

    async def _find_running(self, uid: str) -> list[FoundContainer]:
        try:
            return await self.services.runtime.find_running(uid)
        except NodeAgentError as exc:
            log.error("pod uid=%s: looking for its running containers: %s", uid, exc)
            return []

    async def _find_ended(self, uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        try:
            return await self.services.runtime.find_ended(uid, name, attempt)
        except NodeAgentError as exc:
            log.error("pod uid=%s container=%s: looking for how its attempt %d ended: %s", uid, name, attempt, exc)
            return None

    def _take_back(self, worker: PodWorker) -> None:
        """A quarantined pod a source names again: its worker adopts what runs, with the restart counts. An app
        container running means the init containers had completed (they are not run again)."""
        found = [f for f in self.found.pop(worker.pod.uid, []) if f.name in worker.records]
        for container in found:
            worker.records[container.name] = dataclasses.replace(worker.records[container.name],
                                                                 restart_count=container.attempt)
            worker.slots[container.name].adoptable = container.saved
            log.info("pod=%s container=%s: found running, taken back (restart count %d)", worker.key,
                     container.name, container.attempt)
        if any(not worker.records[f.name].init for f in found):
            now = self.services.clock.now()
            for name, record in worker.records.items():
                if record.init and not record.sidecar and worker.slots[name].adoptable is None:
                    worker.records[name] = dataclasses.replace(record, state=State.TERMINATED, reason=None,
                                                               terminated=Termination(0, "Completed", None, now, None))

    async def sync(self, desired: Iterable[StaticPod]) -> None:
        wanted = {pod.uid: pod for pod in desired}
        for uid, worker in list(self.workers.items()):
            if uid not in wanted and worker.terminating_since is None:
                log.info("pod=%s uid=%s: manifest removed or changed, stopping", worker.key, uid)
                worker.stop()
            elif uid not in wanted:
                worker.stop()  # restored while terminating: finish the job
        await self._apply_node_cgroups(wanted.values())
        for uid, pod in wanted.items():
            if uid not in self.workers:
                if any(w.key == pod.key for w in self.workers.values()):
                    self.services.metrics.pod_replaced()
                worker = PodWorker(pod, self.services)
                self._take_back(worker)
                rejection = admit(pod, self._admitted_pods(), self.capacity)
                if rejection is not None:
                    worker.reject(rejection)
                self._launch(worker)
                log.info("pod=%s uid=%s: new (source %s %s)", pod.key, uid, pod.source, pod.origin)
        self._admit_waiting()
        self.services.on_change()

    def _admitted_pods(self) -> list[StaticPod]:
        return [w.pod for w in self.workers.values() if w.admitted and w.terminating_since is None]

    def _admit_waiting(self) -> None:
        """Pods waiting for room, oldest first: admitted once they fit, else told what is used now."""
        for worker in sorted(self.workers.values(), key=lambda w: w.created_at):
            if worker.admitted or worker.terminating_since is not None:
                continue
            rejection = admit(worker.pod, self._admitted_pods(), self.capacity)
            if rejection is None:
                worker.admit()
            else:
                worker.reject(rejection)

    def _launch(self, worker: PodWorker) -> None:
        self.workers[worker.pod.uid] = worker
        self._tasks[worker.pod.uid] = asyncio.create_task(self._run(worker), name=f"worker {worker.key}")

    async def _run(self, worker: PodWorker) -> None:
        try:
            # older versions only: versions restored while terminating must not wait for each other
            earlier = [w for w in self.workers.values() if w.terminating_since is not None and w is not worker
                       and w.key == worker.key and w.created_at < worker.created_at]
            for other in earlier:
                await other.done.wait()
            await worker.run()
            await self._remove_leftovers(worker)  # not when cancelled: the agent going away keeps its pods
        finally:
            if worker.done.is_set():
                self.workers.pop(worker.pod.uid, None)
                self._tasks.pop(worker.pod.uid, None)
                self._admit_waiting()  # its room may let a waiting pod in
                self.services.on_change()

    async def _remove_leftovers(self, worker: PodWorker) -> None:
        """After a pod's teardown: the containers it never took back (it was restored while terminating, or
        stopped before its set-up was done), and conmon's files no container owns."""
        runtime = self.services.runtime
        if not isinstance(runtime, ContainerBundles):
            return
        for name, slot in worker.slots.items():
            if slot.adoptable is None:
                continue
            log.info("pod=%s container=%s: stopped before it was taken back: removing it", worker.key, name)
            try:
                await runtime.discard(slot.adoptable)
            except (NodeAgentError, OSError) as exc:
                log.error("pod=%s container=%s: removing it: %s", worker.key, name, exc)
        await self.sweep_exit_files()

    async def _apply_node_cgroups(self, pods: Iterable[StaticPod]) -> None:
        cgroups = plan_node_cgroups(pods, self.services.node, self.services.settings)
        try:
            await self.services.cgroups.apply(cgroups)
        except NodeAgentError as exc:
            log.error("updating the QoS cgroups: %s", exc)

    def bundles(self) -> set[str]:
        """The container bundles on disk now (taken before any worker starts, to tell old from new)."""
        runtime = self.services.runtime
        return runtime.bundles() if isinstance(runtime, ContainerBundles) else set()

    async def clean_orphans(self, old_bundles: set[str]) -> None:
        """Remove what nobody owns any more: the sandboxes of unknown UIDs (first: a sandbox's containers live
        in its pod cgroup), pod cgroups of unknown UIDs under our cgroupRoot, pod directories without a pod,
        and old container bundles no pod refers to (with their exit files). Quarantined UIDs are known."""
        known = set(self.workers) | set(self.store.quarantined())
        if self.services.sandboxes is not None:
            try:
                await self.services.sandboxes.clean_up(known)
            except NodeAgentError as exc:
                log.error("removing the sandboxes of pods that are gone: %s", exc)
        settings = self.services.settings
        parents = [paths.node_name(settings)]
        if settings.cgroups_per_qos:
            parents += [paths.qos_name(QOSClass.BURSTABLE, settings), paths.qos_name(QOSClass.BESTEFFORT, settings)]
        cgroups = self.services.cgroups
        spelled_known = {uid.replace("-", "_") for uid in known}  # as systemd slices spell them
        for parent in parents:
            spelled = paths.spell(parent, settings.cgroup_driver)
            for child in cgroups.children(spelled):
                if _names_a_pod(child) and not _belongs(child, known, spelled_known):
                    log.warning("removing the cgroup %s/%s: it belongs to no known pod", spelled, child)
                    try:
                        await cgroups.remove([f"{spelled.rstrip('/')}/{child}"])
                    except NodeAgentError as exc:
                        log.error("removing an orphaned cgroup: %s", exc)
        for uid in self.store.known_uids() - known:
            directory = volumes.pod_dir(self.services.state_dir, uid)
            log.warning("removing %s: it belongs to no known pod", directory)
            await asyncio.to_thread(volumes.remove_mount_points, directory)
            try:
                await volumes.tear_down(self.services.state_dir, uid)
            except NodeAgentError as exc:
                log.error("removing an orphaned pod directory: %s", exc)
        runtime = self.services.runtime
        for entry in sorted(old_bundles - self.referenced_bundles()):
            # e.g. a start the agent was killed in: its first process may still wait to be released
            log.info("removing the container bundle %s: no pod refers to it", entry)
            if isinstance(runtime, ContainerBundles):
                runtime.abandon(entry)  # at once, before a worker's start can race it (as it always was)
        await self.sweep_exit_files()

    async def sweep_exit_files(self) -> None:
        """conmon's exit files and sockets whose container is gone (at start, and after each pod's teardown)."""
        runtime = self.services.runtime
        if isinstance(runtime, ContainerBundles):
            for entry in await asyncio.to_thread(runtime.sweep):
                log.warning("removing %s: no container owns it", entry)

    async def clean_orphan_networks(self) -> None:
        """The pod networks of unknown UIDs and what no lease accounts for. After READY: it loads pyroute2
        (~0.3 s), which a restart should not wait for, and no container runs in those networks any more."""
        if self.services.networks is None:
            return
        try:
            await self.services.networks.clean_up(set(self.workers) | set(self.store.quarantined()))
        except NodeAgentError as exc:
            log.error("removing the networks of pods that are gone: %s", exc)

    def referenced_bundles(self) -> set[str]:
        saved = [slot.running.saved() if slot.running is not None else slot.adoptable
                 for worker in self.workers.values() for slot in worker.slots.values()]
        saved += [c.saved for containers in self.found.values() for c in containers]
        return {record.container_id for record in saved if record is not None and record.bundle}

    async def close(self) -> None:
        """Stop watching pods without stopping them: the agent is going away, its pods are not."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writers = list(self._writers.values())  # the last states written before the agent goes
        await asyncio.gather(*(writer.close(drop=False) for writer in writers))


def _names_a_pod(child: str) -> bool:
    """pod<uid> (cgroupfs), <parent>-pod<uid>.slice (systemd), pod<uid>-<container> (no QoS cgroups)."""
    return child.startswith("pod") or (child.endswith(".slice") and "-pod" in child)


def _belongs(child: str, known: set[str], spelled_known: set[str]) -> bool:
    """pod<uid>, pod<uid>-<container>, <parent>-pod<uid, - spelled _>.slice, of a known UID: a look-up per
    possible UID in the name, not a comparison per known UID (at 1,000 pods that was 10^6 before READY)."""
    if child.startswith("pod") and (child[3:] in known or any(
            child[3:index] in known for index in range(3, len(child)) if child[index] == "-")):
        return True
    where = child.rfind("-pod")  # a spelled UID has no -: its own -pod is the last
    return child.endswith(".slice") and where >= 0 and child[where + 4:-len(".slice")] in spelled_known
