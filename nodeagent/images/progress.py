"""How far a pull or a load has got: layers and bytes, for `nodeagent images pull|load` on a terminal.

`Watched` wraps a BlobSource (a registry or an archive) and reports after each layer starts and ends,
and while it downloads (the destination file's size, looked at every `interval`). Layers the store
already has are never downloaded, so they do not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from nodeagent.images.manifest import Descriptor
from nodeagent.images.pull import BlobSource
from nodeagent.images.reference import Reference
from nodeagent.images.registry import FetchedManifest

INTERVAL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Transferred:
    layers_done: int
    layers: int  # started so far
    bytes_done: int
    bytes_total: int  # of the layers started so far


Report = Callable[[Transferred], None]


class Watched:
    """A BlobSource that reports its layer downloads to `report`."""

    def __init__(self, source: BlobSource, report: Report, *, interval: float = INTERVAL_SECONDS) -> None:
        self._source = source
        self._report = report
        self._interval = interval
        self._layers = self._layers_done = self._bytes_done = self._bytes_total = 0
        self._in_flight: dict[str, int] = {}

    async def fetch_manifest(self, reference: Reference, target: str | None = None) -> FetchedManifest:
        return await self._source.fetch_manifest(reference, target)

    async def fetch_blob(self, reference: Reference, descriptor: Descriptor, *, limit: int) -> bytes:
        return await self._source.fetch_blob(reference, descriptor, limit=limit)

    async def download_blob(self, reference: Reference, descriptor: Descriptor, destination: str) -> None:
        self._layers += 1
        self._bytes_total += descriptor.size
        self._in_flight[destination] = 0
        self._emit()
        watcher = asyncio.create_task(self._watch(destination))
        try:
            await self._source.download_blob(reference, descriptor, destination)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            del self._in_flight[destination]
        self._layers_done += 1
        self._bytes_done += descriptor.size
        self._emit()

    async def _watch(self, destination: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._in_flight[destination] = await asyncio.to_thread(_size, destination)
            self._emit()

    def _emit(self) -> None:
        self._report(Transferred(self._layers_done, self._layers, self._bytes_done + sum(self._in_flight.values()),
                                 self._bytes_total))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
