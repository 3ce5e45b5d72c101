"""ImageStore: the images of this node, as the runtime asks for them (`imagePullPolicy`), listed and pruned.

    ensure(image, policy) --present?--> Image          (IfNotPresent; Never raises ErrImageNeverPull)
                          --Always / absent--> pull --> Image   (an unchanged digest downloads nothing)

    load(archive)  --verify every blob and diff_id--> pull from the archive as from a registry --> [Image]

One store per `<stateDir>/images`, shared by all pods and by the `nodeagent images` command, which reads
it without the agent and pulls and loads into it (`images pull`, `images load`). Concurrent ensures of
one reference pull once (a lock per reference, and one per layer digest below it); pulls and loads take
the store's file lock shared and `prune` exclusive, so a prune in another process never removes what a
pull or a load is adding. A container holds its image with a lease
(`ensure(..., holder=container_id)`, `release(container_id)`): a leased image is never pruned, even
after its tag moved to new content.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import os
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from types import TracebackType

import aiohttp

from nodeagent.images.archive import LayoutSource, open_layout
from nodeagent.images.auth import Authenticator
from nodeagent.images.budget import PullBudget, UnpackLimits
from nodeagent.images.credentials import Credentials, DockerConfigError, parse_docker_config
from nodeagent.images.errors import ImageError, ImageNeverPullError, ImagePullError
from nodeagent.images.layout import ImageRecord, Lease, StoreLayout, remove_tree
from nodeagent.images.manifest import Platform, this_platform
from nodeagent.images.progress import Report, Watched
from nodeagent.images.pull import KeyedLocks, Puller
from nodeagent.images.reference import Reference, parse_reference
from nodeagent.images.registry import RegistryClient
from nodeagent.images.threads import in_thread

log = logging.getLogger(__name__)

DEFAULT_PULL_TIMEOUT_SECONDS = 300.0
CONNECT_TIMEOUT_SECONDS = 10.0
READ_STALL_SECONDS = 60.0


class PullPolicy(enum.Enum):
    """Kubernetes' `imagePullPolicy`; the API's defaulting (`:latest` or no tag: Always) happens before."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


@dataclass(frozen=True, slots=True)
class Image:
    """An image ready to run: its process defaults and its unpacked layers, lowest first."""

    reference: str  # normalised: docker.io/library/busybox:latest
    digest: str  # what the reference resolved to (index or manifest): the repo digest
    image_id: str  # the config's digest, as `crictl images` shows IMAGE ID
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    layers: tuple[str, ...]  # directories for overlayfs lowerdir, lowest first
    stop_signal: str = ""  # the config's StopSignal, as written (nodeagent.agent.stopping reads it)

    @property
    def repo_digest(self) -> str:
        """`name@digest`, what Kubernetes shows as a container's imageID."""
        return f"{parse_reference(self.reference).name}@{self.digest}"


@dataclass(frozen=True, slots=True)
class ImageSummary:
    reference: str
    digest: str
    image_id: str
    size_bytes: int  # blobs and unpacked layers; a layer shared by two images counts in both
    last_used: dt.datetime  # UTC

    @property
    def repository(self) -> str:
        return parse_reference(self.reference).name

    @property
    def tag(self) -> str | None:
        return parse_reference(self.reference).tag


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[str, ...]  # references
    freed_bytes: int


class ImageStore:
    def __init__(self, root: str, *, registry_auth_file: str | None = None,
                 insecure_registries: Collection[str] = (), timeout_seconds: float = DEFAULT_PULL_TIMEOUT_SECONDS,
                 platform: Platform | None = None, unpack_limits: UnpackLimits | None = None) -> None:
        self.layout = StoreLayout(root)
        self.registry_auth_file = registry_auth_file
        self.insecure_registries = frozenset(insecure_registries)
        self.timeout_seconds = timeout_seconds
        self._puller = Puller(self.layout, platform=platform or this_platform(), layer_locks=KeyedLocks(),
                              limits=unpack_limits or UnpackLimits())
        self._reference_locks = KeyedLocks()
        self._authenticator = Authenticator()  # its tokens outlive a pull

    async def __aenter__(self) -> ImageStore:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release: each pull has its own HTTP session, closed with it, so a store needs no
        closing when its owner (the runc runtime, the agent) goes away."""

    async def ensure(self, image: str, pull_policy: PullPolicy | str, *, holder: str | None = None,
                     progress: Report | None = None) -> Image:
        """The image, pulled as `pull_policy` says; with `holder`, leased to it in the same step; `progress`
        hears of each layer downloaded. Raises InvalidImageNameError, ImageNeverPullError or ImagePullError
        (each with its `reason`)."""
        reference = parse_reference(image)
        policy = PullPolicy(pull_policy)
        async with self._reference_locks.hold(str(reference)), self._shared_lock():
            record = await asyncio.to_thread(self._find, reference, remember=True)
            if policy is PullPolicy.NEVER and record is None:
                raise ImageNeverPullError(image)
            if policy is PullPolicy.ALWAYS or record is None:
                current = record or await asyncio.to_thread(self.layout.read_record, str(reference))
                record = await self._pull(reference, current, progress)
            await asyncio.to_thread(self._used, record, holder)
        return self._image(record)

    async def load(self, source: str, progress: Report | None = None) -> list[Image]:
        """The images of an archive (`docker save`, an OCI layout directory or an `oci-archive`; "-" reads
        standard input) added to the store as pulls add them. Every blob and diff_id of every image is
        verified before the first image is added: a corrupt archive adds no image. Raises ImageError."""
        async with self._shared_lock():
            staging = await in_thread(self.layout.staging, "load-")
            try:
                layout = await in_thread(open_layout, source, staging)
                archive = LayoutSource(layout)
                for reference, _ in layout.images:
                    await self._verify(archive, reference)
                watched = archive if progress is None else Watched(archive, progress)
                loaded = []
                for reference, _ in layout.images:
                    async with self._reference_locks.hold(str(reference)):
                        current = await asyncio.to_thread(self.layout.read_record, str(reference))
                        record = await self._puller.pull(watched, reference, current)
                        await asyncio.to_thread(self.layout.write_record, record)
                    log.info("image=%s digest=%s layers=%d loaded", reference, record.digest, len(record.layers))
                    loaded.append(self._image(record))
                return loaded
            finally:
                await in_thread(remove_tree, staging)

    async def _verify(self, archive: LayoutSource, reference: Reference) -> None:
        resolved = await self._puller.resolve(archive, reference, await archive.fetch_manifest(reference))
        budget = PullBudget(self._puller.limits)
        for descriptor, diff_id in zip(resolved.manifest.layers, resolved.config.diff_ids, strict=True):
            if not await asyncio.to_thread(self.layout.has_layer, descriptor.digest):
                await in_thread(archive.check_layer, descriptor, diff_id, budget.layer(descriptor.digest))

    async def get(self, image: str) -> Image | None:
        """The image if the store has all of it, without contacting any registry."""
        record = await asyncio.to_thread(self._find, parse_reference(image), remember=False)
        return None if record is None else self._image(record)

    def lease_present(self, image: str, holder: str) -> Image | None:
        """The image leased to `holder` if the store has all of it, else None (ensure() pulls it). Blocking: a
        container's start calls it in the thread that makes its directories."""
        fd = self._lock_shared()
        try:
            record = self._find(parse_reference(image), remember=True)
            if record is not None:
                self._used(record, holder)
        finally:
            self.layout.unlock(fd)
        return None if record is None else self._image(record)

    async def size_bytes(self, image: Image) -> int:
        """The image's size in the store (blobs and unpacked layers), as `nodeagent images` shows it."""
        record = await asyncio.to_thread(self.layout.read_record, image.reference)
        return 0 if record is None else await asyncio.to_thread(self._size, record)

    async def release(self, holder: str) -> None:
        """End `holder`'s lease (a container removed); unknown holders are fine."""
        await asyncio.to_thread(self.layout.remove_lease, holder)

    async def list_images(self) -> list[ImageSummary]:
        return await asyncio.to_thread(self._list)

    async def remove_interrupted_pulls(self) -> None:
        """Remove what pulls of an earlier process left half-done (an agent killed mid-pull): the staging
        directories in tmp/. Under the store's lock, exclusive: a prune in another process finishes first."""
        removed = await asyncio.to_thread(self._remove_interrupted_pulls)
        if removed:
            log.info("image store: removed %d staging directories of interrupted pulls", removed)

    async def prune(self, in_use_digests: Collection[str] = ()) -> PruneResult:
        """Remove every image neither leased nor in `in_use_digests` (matched against the repo digest, the
        manifest digest and the image ID), then every blob and layer no kept image or lease uses."""
        return await asyncio.to_thread(self._prune, frozenset(in_use_digests))

    @contextlib.asynccontextmanager
    async def _shared_lock(self) -> AsyncIterator[None]:
        """The store's file lock, shared: waited for in a thread (a prune may hold it), and released even
        when the wait is cancelled after the thread got it."""
        waiting = asyncio.ensure_future(asyncio.to_thread(self._lock_shared))
        try:
            fd = await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(_close_acquired)
            raise
        try:
            yield
        finally:
            await asyncio.to_thread(self.layout.unlock, fd)

    # -- pulling

    async def _pull(self, reference: Reference, current: ImageRecord | None, progress: Report | None) -> ImageRecord:
        try:
            timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=READ_STALL_SECONDS)
            async with asyncio.timeout(self.timeout_seconds), aiohttp.ClientSession(timeout=timeout) as session:
                credentials = await asyncio.to_thread(self._credentials)
                client = RegistryClient(session, self._authenticator, credentials=credentials,
                                        insecure_registries=self.insecure_registries)
                source = client if progress is None else Watched(client, progress)
                record = await self._puller.pull(source, reference, current)
        except TimeoutError:
            raise ImagePullError(f"{reference}: not pulled within {self.timeout_seconds:g}s") from None
        except ImagePullError as exc:
            raise ImagePullError(f"{reference}: {exc.message}") from None
        if record is not current:
            await asyncio.to_thread(self.layout.write_record, record)
            log.info("image=%s digest=%s layers=%d pulled", reference, record.digest, len(record.layers))
        return record

    def _credentials(self) -> dict[str, list[Credentials]]:
        path = self.registry_auth_file
        if not path:
            return {}
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            log.debug("registry auth file %s does not exist: pulling anonymously", path)
            return {}
        except OSError as exc:
            raise ImagePullError(f"registry auth file {path}: {exc.strerror}") from None
        try:
            return parse_docker_config(data, source=f"registry auth file {path}")
        except DockerConfigError as exc:
            raise ImagePullError(str(exc)) from None

    # -- blocking helpers, run through asyncio.to_thread

    def _lock_shared(self) -> int:
        self.layout.create()
        return self.layout.lock(exclusive=False)

    def _find(self, reference: Reference, *, remember: bool) -> ImageRecord | None:
        """The complete record for `reference`; a digest reference also finds content pulled by tag (and with
        `remember`, under the store's lock, records it under the digest reference too)."""
        record = self.layout.read_record(str(reference))
        if record is None and reference.digest is not None:
            for other, _ in self.layout.records():
                if (reference.digest in (other.digest, other.manifest_digest)
                        and parse_reference(other.reference).name == reference.name):
                    record = dataclasses.replace(other, reference=str(reference), digest=reference.digest)
                    if remember and self._puller.complete(record):
                        self.layout.write_record(record)
                    break
        return record if record is not None and self._puller.complete(record) else None

    def _used(self, record: ImageRecord, holder: str | None) -> None:
        self.layout.touch_record(record.reference)
        if holder is not None:
            self.layout.write_lease(Lease(holder, record.digest, record.blobs, record.layers))

    def _image(self, record: ImageRecord) -> Image:
        return Image(
            reference=record.reference, digest=record.digest, image_id=record.config_digest,
            entrypoint=record.entrypoint, cmd=record.cmd, env=record.env, working_dir=record.working_dir,
            user=record.user, layers=tuple(self.layout.layer_fs(digest) for digest in record.layers),
            stop_signal=record.stop_signal,
        )

    def _size(self, record: ImageRecord) -> int:
        blobs = sum(_file_size(self.layout.blob_path(digest)) for digest in record.blobs)
        return blobs + sum(self.layout.layer_size(digest) for digest in record.layers)

    def _list(self) -> list[ImageSummary]:
        return sorted(
            (ImageSummary(record.reference, record.digest, record.config_digest, self._size(record),
                          dt.datetime.fromtimestamp(used, dt.UTC))
             for record, used in self.layout.records()),
            key=lambda summary: summary.reference,
        )

    def _remove_interrupted_pulls(self) -> int:
        if not os.path.isdir(self.layout.tmp):
            return 0
        fd = self.layout.lock(exclusive=True)
        try:
            return self._clear_tmp()
        finally:
            self.layout.unlock(fd)

    def _clear_tmp(self) -> int:
        """Remove everything in tmp/ (the caller holds the lock exclusive); the count removed."""
        names = _listdir(self.layout.tmp)
        for name in names:
            remove_tree(os.path.join(self.layout.tmp, name))
        return len(names)

    def _prune(self, in_use: frozenset[str]) -> PruneResult:
        if not os.path.isdir(self.layout.root):
            return PruneResult((), 0)
        fd = self.layout.lock(exclusive=True)
        try:
            leases = self.layout.read_leases()
            keep = in_use | {lease.digest for lease in leases}
            kept: list[ImageRecord] = []
            removed: list[ImageRecord] = []
            for record, _ in self.layout.records():
                used = keep & {record.digest, record.manifest_digest, record.config_digest}
                (kept if used else removed).append(record)
            for record in removed:
                remove_tree(self.layout.record_path(record.reference))
                log.info("image=%s digest=%s pruned", record.reference, record.digest)
            owners: list[ImageRecord | Lease] = [*kept, *leases]
            blobs = {digest for owner in owners for digest in owner.blobs}
            layers = {digest for owner in owners for digest in owner.layers}
            freed = self._sweep(blobs, layers)
        finally:
            self.layout.unlock(fd)
        return PruneResult(tuple(record.reference for record in removed), freed)

    def _sweep(self, blobs: set[str], layers: set[str]) -> int:
        """Remove unreferenced blobs, layers and leftovers of interrupted pulls; the bytes freed."""
        freed = 0
        for name in _listdir(self.layout.blobs):
            if f"sha256:{name}" not in blobs:
                freed += _file_size(os.path.join(self.layout.blobs, name))
                remove_tree(os.path.join(self.layout.blobs, name))
        for name in _listdir(self.layout.layers):
            if f"sha256:{name}" not in layers:
                path = os.path.join(self.layout.layers, name)
                with contextlib.suppress(ImageError):  # a name that is not a digest: removed all the same
                    freed += self.layout.layer_size(f"sha256:{name}")
                doomed = self.layout.staging("prune-")  # out of sight first, then removed
                os.rename(path, os.path.join(doomed, name))
                remove_tree(doomed)
        self._clear_tmp()
        return freed


def _close_acquired(waited: asyncio.Future[int]) -> None:
    if not waited.cancelled() and waited.exception() is None:
        StoreLayout.unlock(waited.result())


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []

