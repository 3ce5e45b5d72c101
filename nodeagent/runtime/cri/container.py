"""A container the CRI runtime runs, as nodeagent watches it: its end seen through a pidfd on its main process
(ContainerStatus verbose gives its pid) or by polling ContainerStatus; its exit as the runtime reports it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from typing import Protocol

from nodeagent.runtime.base import AdoptionRecord, ContainerExit
from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.errors import CRIError
from nodeagent.runtime.cri.mapping import container_exit
from nodeagent.runtime.procinfo import ProcessIdentity

log = logging.getLogger(__name__)

STATUS_POLL_SECONDS = 1.0  # the kubelet's PLEG relist period: the fallback when no pidfd can be had


class CriStatuses(Protocol):
    """What a container asks of its runtime (nodeagent.runtime.cri.runtime.CriRuntime)."""

    runtime_name: str

    @property
    def client(self) -> CRIClient: ...

    async def exited(self, container_id: str) -> cri.ContainerStatus | None: ...


class CriContainer:
    """A container the CRI runtime runs: its end seen through a pidfd on its main process (or by polling)."""

    def __init__(self, runtime: CriStatuses, cri_id: str, process: ProcessIdentity | None,
                 started_at: dt.datetime, image_stop_signal: int | None = None) -> None:
        self.runtime = runtime
        self.cri_id = cri_id
        self.container_id = f"{runtime.runtime_name}://{cri_id}"
        self.process = process
        self.pid = process.pid if process else 0
        self.started_at = started_at
        self.image_stop_signal = image_stop_signal
        self._loop = asyncio.get_running_loop()
        self._ended = self._loop.create_future()
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()  # StopContainer calls under way
        self._exit: ContainerExit | None = None

    def saved(self) -> AdoptionRecord:
        return AdoptionRecord(self.cri_id, False, {
            "startedAt": self.started_at.isoformat(), **({"process": self.process.to_json()} if self.process else {}),
            **({"imageStopSignal": self.image_stop_signal} if self.image_stop_signal is not None else {})})

    def watch(self) -> None:
        self._pidfd = self.process.pidfd() if self.process else None
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._process_ended)
        else:
            self._poller = asyncio.create_task(self._poll(), name=f"cri status {self.cri_id[:12]}")

    def _process_ended(self) -> None:
        self._close_pidfd()
        if not self._ended.done():
            self._ended.set_result(None)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def _poll(self) -> None:
        while not self._ended.done():
            try:
                status = (await self.runtime.client.container_status(self.cri_id)).status
                if status.state != cri.CONTAINER_RUNNING:
                    self._ended.set_result(None)
                    return
            except CRIError as exc:
                if exc.not_found:
                    self._ended.set_result(None)
                    return
            await asyncio.sleep(STATUS_POLL_SECONDS)

    async def wait(self) -> ContainerExit:
        if self._exit is None:
            await asyncio.shield(self._ended)
            status = await self.runtime.exited(self.cri_id)
            if status is None or status.state != cri.CONTAINER_EXITED:
                self._exit = ContainerExit(137, dt.datetime.now(dt.UTC), oom_killed=False, unknown=True)
            else:
                self._exit = container_exit(status, self.runtime.runtime_name)
        return self._exit

    def signal(self, signum: int) -> None:
        if self.process is not None and not self._ended.done() and self.process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def reopen_log(self) -> bool:
        """ReopenContainerLog: the runtime has made the new file when it answers; it refuses a stopped container."""
        if self._ended.done():
            return False
        try:
            await self.runtime.client.reopen_container_log(self.cri_id)
        except CRIError as exc:
            log.debug("container %s: ReopenContainerLog: %s", self.cri_id[:12], exc)
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the main process now, and every process of the container through the runtime."""
        if self._ended.done():
            return
        self.signal(9)
        task = self._loop.create_task(self._stop_now(), name=f"cri stop {self.cri_id[:12]}")
        self._stopping.add(task)  # held until done: a task nobody holds may be collected mid-call
        task.add_done_callback(self._stopping.discard)

    async def _stop_now(self) -> None:
        try:
            await self.runtime.client.stop_container(self.cri_id, timeout_s=0)
        except CRIError as exc:
            log.warning("container %s: StopContainer: %s", self.cri_id[:12], exc)
