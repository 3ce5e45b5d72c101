"""The file source: static pod manifests in staticPodPath (a directory, or a single file).

An inotify watch on the directory, read by the event loop, marks it dirty when a manifest there is closed
after writing, moved or deleted (never while it is being written; a dot file a careful writer renames into
place is no manifest yet);
then the whole directory is read again at once (a burst of events meanwhile is one more scan), and
also every fileCheckFrequency. A file whose content hash has not changed is not parsed again. The
manifest index is saved after the pods are handed on: its fsyncs are not on a new pod's way.
Read: `*.yaml`, `*.yml`, `*.json`, not starting with `.` (editor swap files, `.bak` and `~` copies
never match), regular files only, at most 10 MiB, no recursion, in file name order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from nodeagent.api.decode import MAX_MANIFEST_BYTES
from nodeagent.api.manifest import ManifestResult, Problem, StaticPod, load_manifest, unexpected
from nodeagent.errors import FieldError
from nodeagent.inotify import (
    IN_CLOSE_WRITE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Inotify,
)
from nodeagent.sources import fileindex

log = logging.getLogger(__name__)

EXTENSIONS = (".yaml", ".yml", ".json")
# A file is complete once it is closed after writing or moved into place: modify and create events only say
# that writing has begun. Only those are asked of inotify: else each scan's own reads (open, access, close)
# came back as three events a file, 3,000 wake-ups a scan at 1,000 manifests.
CHANGES = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
GONE = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT  # the directory itself went: watched anew


@dataclass(frozen=True, slots=True)
class ManifestFile:
    path: str
    digest: str
    result: ManifestResult


def is_manifest_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _failed(message: str) -> ManifestResult:
    return ManifestResult(problems=[Problem("", FieldError("", message))])


class FileSource:
    """`index`: the manifest index's path (nodeagent.sources.fileindex), with the pods an agent restart
    `restored`: an unchanged file of theirs is not parsed again at the first scan."""

    def __init__(self, path: str, *, node_name: str, frequency_seconds: float, index: str | None = None,
                 restored: Sequence[StaticPod] = ()) -> None:
        self.path = path
        self.node_name = node_name
        self.frequency_seconds = frequency_seconds
        self._cache: dict[str, ManifestFile] = {}
        self._missing_reported = False
        self._index = index
        self._restored = list(restored)
        self._recorded: dict[str, fileindex.Entry] | None = None  # the index as saved; None: not read yet

    def candidates(self) -> list[str] | None:
        """The manifest files to read; None when staticPodPath exists but cannot be listed (not "no pods")."""
        if os.path.isfile(self.path):
            return [self.path]
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            if not self._missing_reported:
                log.warning("staticPodPath %s does not exist: no file pods until it does", self.path)
                self._missing_reported = True
            return []
        except OSError as exc:
            log.error("reading staticPodPath %s: %s; the file pods stay as they are", self.path, exc.strerror)
            return None
        self._missing_reported = False
        return [os.path.join(self.path, name) for name in names if is_manifest_name(name)]

    def scan(self) -> list[ManifestFile] | None:
        """Every manifest file as it is now, in name order; None if the directory cannot be read (blocking: run
        it in a thread). record() saves what it found in the index."""
        if self._index is not None and self._recorded is None:
            self._recorded = fileindex.load(self._index, self.node_name)
            self._cache = {name: ManifestFile(name, digest, result) for name, (digest, result)
                           in fileindex.restored_results(self._recorded, self._restored).items()}
            self._restored = []
        paths = self.candidates()
        if paths is None:
            return None
        found = []
        for path in paths:
            try:
                manifest = self._read(path)
            except Exception as exc:  # one file, whatever is in it, never stops the others or the agent
                log.exception("%s: reading the manifest failed unexpectedly", path)
                manifest = ManifestFile(path, "", ManifestResult(problems=[Problem("", unexpected(exc))]))
            if manifest is not None:
                found.append(manifest)
        self._cache = {m.path: m for m in found}
        return found

    def record(self, found: list[ManifestFile]) -> None:
        """A scan's files saved in the manifest index, if it changed (blocking: run it in a thread)."""
        if self._index is None:
            return
        recorded = fileindex.entries((m.path, m.digest, m.result) for m in found)
        if recorded != self._recorded:
            fileindex.save(self._index, self.node_name, recorded)
            self._recorded = recorded

    def _read(self, path: str) -> ManifestFile | None:
        try:
            # O_NONBLOCK: a FIFO named like a manifest must not hang the scan; it is skipped below.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # removed while we listed
        except OSError as exc:
            if os.path.isdir(path):
                return None
            return ManifestFile(path, "", _failed(f"cannot read: {exc.strerror}"))
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                # its size, not the limit: a 10 MiB buffer a file cost three syscalls (mmap, mremap, munmap)
                content = handle.read(min(status.st_size, MAX_MANIFEST_BYTES) + 1)
                if len(content) > status.st_size:  # it grew meanwhile: read on, up to the limit
                    content += handle.read(MAX_MANIFEST_BYTES + 1 - len(content))
        except OSError as exc:
            return ManifestFile(path, "", _failed(f"cannot read: {exc.strerror}"))
        finally:
            os.close(fd)
        digest = hashlib.sha256(content).hexdigest()
        cached = self._cache.get(path)
        if cached is not None and cached.digest == digest:
            return cached
        result = load_manifest(content, origin=path, source="file", node_name=self.node_name)
        if result.ok and not result.pods:
            # As the kubelet: a file without a pod is an error, so a file truncated while being
            # written keeps its last valid pods instead of stopping them.
            result = _failed("the file defines no pod (empty, or only comments)")
        return ManifestFile(path, digest, result)

    async def run(self, on_scan: Callable[[list[ManifestFile] | None], Awaitable[None]]) -> None:
        """Scan now, then on every change and every fileCheckFrequency, until cancelled."""
        loop = asyncio.get_running_loop()
        dirty = asyncio.Event()
        watcher = _Watcher(self.path, lambda: loop.call_soon_threadsafe(dirty.set))
        try:
            while True:
                watcher.ensure_started()
                found = await asyncio.to_thread(self.scan)
                await on_scan(found)
                if found is not None:
                    await asyncio.to_thread(self.record, found)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(dirty.wait(), self.frequency_seconds)
                dirty.clear()
        finally:
            watcher.stop()


class _Watcher:
    """inotify on the directory as a dirty signal only: what changed is found by reading the directory again.
    Read by the event loop: no thread between the kernel and the scan (watchdog passed each event through
    three)."""

    def __init__(self, path: str, notify: Callable[[], object]) -> None:
        self.path = path
        self.notify = notify
        self._directory = path
        self._inotify: Inotify | None = None
        self._warned = False

    def ensure_started(self) -> None:
        """Watch the directory, or a single file's directory, if it exists (the periodic re-list notices when
        it appears, and calls this again)."""
        if self._inotify is not None or not os.path.lexists(self.path):
            return
        self._directory = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        try:
            inotify = Inotify()
        except OSError as exc:  # fs.inotify.max_user_instances reached
            if not self._warned:
                log.warning("not watching %s (it is read every fileCheckFrequency): %s", self._directory, exc)
                self._warned = True
            return
        try:
            inotify.add(self._directory, CHANGES | IN_ONLYDIR)
        except OSError as exc:  # not there (yet), or not a directory
            inotify.close()
            log.debug("not watching %s: %s", self._directory, exc)
            return
        asyncio.get_running_loop().add_reader(inotify.fd, self._on_events)
        self._inotify = inotify

    def _on_events(self) -> None:
        assert self._inotify is not None
        events = self._inotify.read_named()
        if any(self._concerns(mask, name) for _, mask, name in events):
            self.notify()
        if any(mask & GONE for _, mask, _ in events):
            self.stop()

    def _concerns(self, mask: int, name: str) -> bool:
        """A manifest's event, or the directory's: not a temporary dot file's close, which a rename follows."""
        if mask & (IN_ISDIR | IN_Q_OVERFLOW | GONE) or not name:
            return True
        return os.path.join(self._directory, name) == self.path or is_manifest_name(name)

    def stop(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
