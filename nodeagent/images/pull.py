"""One pull into the store: reference -> manifest (this platform's, from an index) -> config -> layers.

    fetch_manifest(tag)  --index?-->  select_platform  -->  fetch_manifest(digest)
            |  same digest as the record and all content present: done, nothing downloaded
            v
    config blob -> layers, at most 3 at once, each: download -> verify -> unpack -> diff_id -> rename

The layers a pull unpacks share one PullBudget (UnpackLimits): a layer over either limit fails the
pull, and its staging directory goes with it.

The source is a registry (RegistryClient) or an archive (archive.LayoutSource): a BlobSource either way.
A layer already unpacked is never fetched again; two pulls needing the same layer wait on one lock per
digest, so it is downloaded once. Layer blobs are removed once unpacked: the directory is the content.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from nodeagent.images.budget import LayerBudget, PullBudget, UnpackLimits
from nodeagent.images.errors import ImagePullError
from nodeagent.images.layout import ImageRecord, StoreLayout, remove_tree
from nodeagent.images.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    Descriptor,
    ImageConfig,
    Manifest,
    Platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from nodeagent.images.reference import Reference
from nodeagent.images.registry import FetchedManifest
from nodeagent.images.threads import in_thread
from nodeagent.images.unpack import unpack_layer
from nodeagent.timeformat import rfc3339

log = logging.getLogger(__name__)

PARALLEL_LAYERS = 3


class KeyedLocks:
    """One asyncio.Lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class BlobSource(Protocol):
    """Where a pull's documents and blobs come from: a registry (RegistryClient) or an archive
    (nodeagent.images.archive.LayoutSource); each verifies what it returns against its digest."""

    async def fetch_manifest(self, reference: Reference, target: str | None = None) -> FetchedManifest: ...

    async def fetch_blob(self, reference: Reference, descriptor: Descriptor, *, limit: int) -> bytes: ...

    async def download_blob(self, reference: Reference, descriptor: Descriptor, destination: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """An image's documents, fetched and verified, before any layer: the top (index or manifest), this
    platform's manifest, and the config."""

    top: FetchedManifest
    manifest_blob: FetchedManifest
    manifest: Manifest
    config_body: bytes
    config: ImageConfig


class Puller:
    def __init__(self, layout: StoreLayout, *, platform: Platform, layer_locks: KeyedLocks,
                 limits: UnpackLimits) -> None:
        self.layout = layout
        self.platform = platform
        self.limits = limits
        self._layer_locks = layer_locks

    async def pull(self, client: BlobSource, reference: Reference, current: ImageRecord | None) -> ImageRecord:
        """The record for `reference` after making its content present; `current` is what the store had."""
        top = await client.fetch_manifest(reference)
        if current is not None and current.digest == top.digest and await asyncio.to_thread(self.complete, current):
            log.debug("image %s: %s unchanged, nothing to download", reference, top.digest)
            return current
        image = await self.resolve(client, reference, top)
        manifest, config = image.manifest, image.config
        semaphore = asyncio.Semaphore(PARALLEL_LAYERS)
        budget = PullBudget(self.limits)

        async def one_layer(descriptor: Descriptor, diff_id: str) -> None:
            async with semaphore:
                await self._layer(client, reference, descriptor, diff_id, budget.layer(descriptor.digest))

        try:
            async with asyncio.TaskGroup() as group:
                for descriptor, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
                    group.create_task(one_layer(descriptor, diff_id))
        except BaseExceptionGroup as failed:
            raise _first_cause(failed) from None
        blobs = {top.digest: top.body, image.manifest_blob.digest: image.manifest_blob.body,
                 manifest.config.digest: image.config_body}
        await asyncio.to_thread(self._write_blobs, blobs)
        return ImageRecord(
            reference=str(reference), digest=top.digest, manifest_digest=image.manifest_blob.digest,
            config_digest=manifest.config.digest, layers=tuple(layer.digest for layer in manifest.layers),
            blobs=tuple(blobs), entrypoint=config.entrypoint, cmd=config.cmd, env=config.env,
            working_dir=config.working_dir, user=config.user, stop_signal=config.stop_signal,
            pulled=rfc3339(dt.datetime.now(dt.UTC)),
        )

    async def resolve(self, client: BlobSource, reference: Reference, top: FetchedManifest) -> Resolved:
        """From the top document to this platform's manifest and its config, each verified; nothing stored."""
        if top.media_type in INDEX_TYPES:
            chosen = select_platform(parse_index(top.body, top.media_type), self.platform)
            manifest_blob = await client.fetch_manifest(reference, chosen.digest)
        elif top.media_type in MANIFEST_TYPES:
            manifest_blob = top
        else:
            raise ImagePullError(f"unsupported manifest media type {top.media_type!r}")
        if manifest_blob.media_type not in MANIFEST_TYPES:
            raise ImagePullError(f"manifest {manifest_blob.digest}: media type {manifest_blob.media_type!r} "
                                 "is not an image manifest")
        manifest = parse_manifest(manifest_blob.body, manifest_blob.media_type)
        config_body = await self._config(client, reference, manifest.config)
        return Resolved(top, manifest_blob, manifest, config_body, parse_config(config_body, len(manifest.layers)))

    def complete(self, record: ImageRecord) -> bool:
        """Whether every blob and unpacked layer of `record` is in the store (blocking)."""
        return (all(self.layout.has_blob(digest) for digest in record.blobs)
                and all(self.layout.has_layer(digest) for digest in record.layers))

    def _write_blobs(self, blobs: dict[str, bytes]) -> None:
        for digest, body in blobs.items():
            self.layout.write_blob(digest, body)

    async def _config(self, client: BlobSource, reference: Reference, descriptor: Descriptor) -> bytes:
        if await asyncio.to_thread(self.layout.has_blob, descriptor.digest):
            return await asyncio.to_thread(self.layout.read_blob, descriptor.digest)
        return await client.fetch_blob(reference, descriptor, limit=MAX_CONFIG_BYTES)  # stored with the manifest

    async def _layer(self, client: BlobSource, reference: Reference, descriptor: Descriptor,
                     diff_id: str, budget: LayerBudget) -> None:
        async with self._layer_locks.hold(descriptor.digest):
            if await asyncio.to_thread(self.layout.has_layer, descriptor.digest):
                return
            staged = await in_thread(self.layout.staging, "layer-")
            try:
                blob = os.path.join(staged, "blob")
                await client.download_blob(reference, descriptor, blob)
                await in_thread(self._unpack, staged, blob, descriptor.digest, diff_id, budget)
            except BaseException:
                await in_thread(remove_tree, staged)
                raise
            log.debug("image %s: layer %s unpacked", reference, descriptor.digest)

    def _unpack(self, staged: str, blob: str, digest: str, diff_id: str, budget: LayerBudget) -> None:
        fs = os.path.join(staged, "fs")
        os.mkdir(fs, 0o755)
        unpacked = unpack_layer(blob, fs, label=digest, budget=budget)
        os.unlink(blob)
        if unpacked.diff_id != diff_id:
            raise ImagePullError(f"layer {digest}: uncompressed digest {unpacked.diff_id} does not match the "
                                 f"config's diff_id {diff_id}")
        self.layout.commit_layer(staged, digest, diff_id=diff_id, size_bytes=unpacked.size_bytes)


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to report from a failed layer group: an ImagePullError when there is one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    return next((leaf for leaf in leaves if isinstance(leaf, ImagePullError)), leaves[0])
