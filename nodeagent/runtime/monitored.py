"""A container under conmon, whatever runtime created it: its end, its exit code, its OOM kills.

conmon's pid is watched through a pidfd; when conmon exits, the container has ended and its exit
code is in conmon's exit file (with the file's time as the finish time). The container's cgroup
counters say whether the kernel OOM-killed it; the kernel log says whom. On cgroup v1, which has no
memory.oom.group, an OOM kill of one process brings the agent to kill the rest of the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable

from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.cgroups.oom import OOMWatch
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.runtime import conmon, conmon_attach
from nodeagent.runtime.base import AdoptionRecord, ContainerExit, ContainerSpec
from nodeagent.runtime.conmon_attach import ConmonAttach

log = logging.getLogger(__name__)

OOM_RECHECKS = 50
REOPEN_SECONDS = 2.0  # how long conmon may take to make the new log file


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MonitoredContainer:
    """A container under conmon: its exit through conmon's pidfd and exit file, its OOM kills."""

    def __init__(self, spec: ContainerSpec, monitored: conmon.Monitored, started_at: dt.datetime, *,
                 cgroups: CgroupDriver, layout: conmon.ConmonLayout, kernel_log: KernelLog | None, prefix: str,
                 on_exit: Callable[[], Awaitable[None]] | None = None, image_stop_signal: int | None = None) -> None:
        self.cgroups = cgroups
        self.layout = layout
        self.kernel_log = kernel_log
        self.on_exit = on_exit  # the runtime's own clean-up once the container has ended
        self.spec = spec
        self.monitored = monitored
        self.container_id = prefix + monitored.container_id
        self.pid = monitored.container.pid
        self.started_at = started_at
        self.image_stop_signal = image_stop_signal
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[dt.datetime] = self._loop.create_future()
        self._oom_watch: OOMWatch | None = None
        self._oom_seen = False  # the watch saw the kill counted: the cgroup may be gone by wait()
        self._since = kernel_log.mark() if kernel_log else -1  # this attempt's OOM kills are logged after it
        self._pidfd: int | None = None

    def saved(self) -> AdoptionRecord:
        """What the agent stores to take this container back after a restart."""
        record = conmon.adoption_record(self.monitored, self.started_at)
        if self.image_stop_signal is None:
            return record
        return dataclasses.replace(record, details={**record.details, "imageStopSignal": self.image_stop_signal})

    async def attach(self, *, stdin: bool) -> ConmonAttach:
        """kubectl attach: through conmon's attach socket (nodeagent.runtime.conmon_attach)."""
        return await conmon_attach.attach(self.layout.bundle(self.monitored.container_id), stdin=stdin)

    async def let_run(self, last_step: Awaitable[object], *, failures: tuple[type[Exception], ...],
                      what: str) -> None:
        """The step that lets the created container run (its FIFO released, `runc start`). When that fails,
        or is cancelled (the agent stopping), the container is killed and its end awaited: a start never
        leaves a container nobody knows. A failure among `failures` is a RunContainerError saying `what`."""
        try:
            await last_step
        except BaseException as exc:
            self.kill()
            await asyncio.shield(self.wait())
            if isinstance(exc, failures):
                raise RuntimeStartError("RunContainerError", f"{what}{exc}") from exc
            raise
        self.started_at = now()
        await self.move_monitor_to_pod()

    async def move_monitor_to_pod(self) -> None:
        """As CRI-O's conmon_cgroup "pod": conmon belongs to the pod, not to the agent's service, so restarting
        or killing the service never touches it. Called after the start: off its critical path."""
        if self.spec.monitor_cgroup is None:
            return
        try:
            await self.cgroups.attach(self.spec.monitor_cgroup, self.monitored.conmon.pid)
        except NodeAgentError as exc:
            log.warning("container=%s: moving its conmon into the pod's cgroup: %s", self.spec.name, exc)

    def watch(self, *, oom: bool = True) -> bool:
        """Watch conmon's exit and (`oom`) the cgroup's OOM kills; False if conmon is gone already (wait() says
        how the container ended)."""
        self._watch_conmon()
        if self._exited.done():
            return False
        if oom:
            self._watch_oom()
        return True

    def watch_oom_again(self) -> None:
        """A container taken back: its OOM kills watched again, and one counted while nobody watched (the agent
        away or starting) acted on now, as the watch would have."""
        if self._exited.done() or self._oom_watch is not None:
            return
        self._watch_oom()
        self._on_oom_event(rechecks=0)

    def _watch_oom(self) -> None:
        try:
            self._oom_watch = self.cgroups.watch_oom(self.spec.cgroup.path, self._on_oom_event)
        except NodeAgentError as exc:
            log.warning("container=%s: cannot watch OOM events: %s", self.spec.name, exc)

    def _watch_conmon(self) -> None:
        self._pidfd = self.monitored.conmon.pidfd()
        if self._pidfd is None:
            self._exited.set_result(now())
        else:
            self._loop.add_reader(self._pidfd, self._conmon_exited)

    def _conmon_exited(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(now())

    def _on_oom_event(self, rechecks: int = OOM_RECHECKS) -> None:
        """v1 signals the OOM before the kill lands in the counter: look again for a few ms."""
        if self._exited.done():
            return
        try:
            killed = self.cgroups.oom_kills(self.spec.cgroup.path) > 0
        except NodeAgentError:
            return  # the cgroup is going away
        if not killed:
            if rechecks > 0:
                self._loop.call_later(0.002, self._on_oom_event, rechecks - 1)
            return
        self._oom_seen = True
        if self.cgroups.version == 1:
            log.info("container=%s pod=%s/%s: OOM kill in its cgroup, killing the rest of it (oom.group)",
                     self.spec.name, self.spec.pod_namespace, self.spec.pod_name)
            self.kill()

    async def wait(self) -> ContainerExit:
        if self._pidfd is None and not self._exited.done():
            # never watched (a start cut short): conmon, if it lives, writes the exit file as it ends
            self._watch_conmon()
        detected = await asyncio.shield(self._exited)
        layout = self.layout
        code = conmon.read_exit_code(layout, self.monitored.container_id)
        finished_at = _mtime(layout.exit_file(self.monitored.container_id)) or detected
        self.kill()  # the container is its main process: what it leaves behind goes with it
        if self._oom_watch is not None:
            self._oom_watch.close()
            self._oom_watch = None
        cgroups = self.cgroups
        try:
            counted = cgroups.exists(self.spec.cgroup.path) and cgroups.oom_kills(self.spec.cgroup.path) > 0
        except NodeAgentError:
            counted = False
        # Three witnesses: the cgroup's counter (gone with a systemd scope), what the OOM watch saw
        # before, and the kernel log, which names the cgroup whatever became of it.
        found = self.kernel_log.victim_in(self.spec.cgroup.path, after=self._since) if self.kernel_log else None
        oom_killed = counted or self._oom_seen or found is not None
        victim = found.describe() if found else None
        if self.on_exit is not None:
            await self.on_exit()
        await asyncio.to_thread(conmon.remove, layout, self.monitored.container_id)
        if code is None:  # conmon itself was killed: nothing knows how the container ended
            return ContainerExit(exit_code=137, finished_at=finished_at, oom_killed=oom_killed, unknown=True,
                                 started_at=self.started_at, container_id=self.container_id)
        return ContainerExit(exit_code=code, finished_at=finished_at, oom_killed=oom_killed, oom_victim=victim,
                             started_at=self.started_at, container_id=self.container_id)

    def signal(self, signum: int) -> None:
        if not self._exited.done() and self.monitored.container.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def reopen_log(self) -> bool:
        """conmon makes a new file at the log's path once it has read the request: True once it has (or while
        conmon lives on, late), False if no conmon listens (the container has ended)."""
        if self._exited.done() or not conmon.request_log_reopen(self.layout, self.monitored.container_id):
            return False
        deadline = time.monotonic() + REOPEN_SECONDS
        while not os.path.exists(self.spec.log_path):
            if time.monotonic() > deadline:
                log.warning("container=%s: conmon did not reopen its log within %gs", self.spec.name, REOPEN_SECONDS)
                return self.monitored.conmon.alive()
            await asyncio.sleep(0.01)
        return True

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.cgroups.kill(self.spec.cgroup.path)
        except NodeAgentError as exc:
            log.debug("container=%s: killing its cgroup: %s", self.spec.name, exc)


def _mtime(path: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.UTC)
    except FileNotFoundError:
        return None


class TakenBack:
    """The containers a runtime takes back after an agent restart, their OOM watches armed from READY on.

    A restart with 1,000 pods would register 1,000 OOM watches (on v1 an eventfd with each cgroup, ~40 us) before
    READY. An OOM kill meanwhile is not lost: arming reads the cgroup's counter (watch_oom_again), and wait() has
    the counter and the kernel log.

    From READY on, too, a conmon found still in the agent's own cgroup is moved into its pod's: the agent was
    killed between conmon's start and that move, and `KillMode=process` spared conmon, which would otherwise stay
    counted against the service, not the pod, as a left-over process of it.
    """

    def __init__(self) -> None:
        self._unwatched: list[MonitoredContainer] | None = []  # None once the agent is ready
        self._moves: set[asyncio.Task[None]] = set()

    def watch(self, container: MonitoredContainer) -> bool:
        """Watch a container taken back; False if its conmon is gone already (wait() says how it ended)."""
        if not container.watch(oom=False):
            return False
        if self._unwatched is None:
            container.watch_oom_again()
            self._monitors_to_their_pods([container])
        else:
            self._unwatched.append(container)
        return True

    def agent_ready(self) -> None:
        unwatched, self._unwatched = self._unwatched or [], None
        for container in unwatched:
            container.watch_oom_again()
        self._monitors_to_their_pods(unwatched)

    def _monitors_to_their_pods(self, containers: list[MonitoredContainer]) -> None:
        if not containers:
            return
        move = asyncio.get_running_loop().create_task(_move_stray_monitors(containers))
        self._moves.add(move)
        move.add_done_callback(self._moves.discard)


async def _move_stray_monitors(containers: list[MonitoredContainer]) -> None:
    """The containers whose conmon shares every cgroup of the agent's: into their pods' monitor cgroups."""
    strays = await asyncio.to_thread(_in_the_agents_cgroups, containers)
    for container in strays:
        log.info("container=%s pod=%s/%s: its conmon was left in the agent's cgroup: moved into the pod's",
                 container.spec.name, container.spec.pod_namespace, container.spec.pod_name)
        await container.move_monitor_to_pod()


def _in_the_agents_cgroups(containers: list[MonitoredContainer]) -> list[MonitoredContainer]:
    own = _cgroups_of("self")
    return [c for c in containers if own is not None and c.spec.monitor_cgroup is not None
            and _cgroups_of(str(c.monitored.conmon.pid)) == own]


def _cgroups_of(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as listing:
            return listing.read()
    except OSError:  # gone: its pidfd says so
        return None
