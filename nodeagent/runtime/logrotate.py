"""Container log rotation in the kubelet's layout (containerLogMaxSize, containerLogMaxFiles), bounded sooner.

    <container dir>/0.log                       the file the runtime writes now
    <container dir>/0.log.20261204-160237.gz    rotated files, compressed, oldest first by name

Once the current file is larger than containerLogMaxSize it is renamed to `<name>.<timestamp>` and the
runtime is asked to reopen its log (conmon's control FIFO, CRI ReopenContainerLog), so that it writes a new
file; the rotated file is then compressed in a thread, keeping only its newest containerLogMaxSize bytes
(from a line's start), and the oldest rotated files beyond containerLogMaxFiles - 1 are deleted. The kubelet
checks every 10 s and keeps the newest rotated file uncompressed and whole, so one burst overshoots its limit
until the next rotation; here a log that is being written is checked every second and every rotated file is
trimmed and compressed, so a few seconds after a burst a container's logs take at most about maxSize x
maxFiles, newest lines kept. A log whose size has not changed for QUIET_CHECKS checks is checked every
QUIET_EVERY seconds, as the kubelet checks every log (1,000 sleeping pods' logs sized every second cost a
quarter of the agent's idle CPU), and watched with inotify for its next write, which makes it checked every
second again. So a container writing as fast as it can takes at most maxSize plus what it writes in about
CHECK_SECONDS before its log is rotated (QUIET_EVERY seconds after a quiet spell where inotify has no
watches left); a new container's log is first checked in the round after it started.

A file no runtime writes any more (its container has exited) is trimmed in place to its newest maxSize bytes
instead, so that `logs --previous` still finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import gzip
import itertools
import logging
import os
import re
import shutil
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from nodeagent.inotify import IN_MODIFY, IN_ONESHOT, IN_Q_OVERFLOW, Inotify

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
QUIET_CHECKS = 10  # checks without a change in size: the log is quiet
QUIET_EVERY = 10  # rounds: a quiet log is checked in one round of these
SETTLE_EVERY = 10  # rounds: the rotated files of a log whose rotation failed, looked at again every 10 s
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"  # the kubelet's "20060102-150405"
COPY_BYTES = 1 << 20
_ROTATED = re.compile(r"\d{8}-\d{6}(\.gz)?")

Reopen = Callable[[], Awaitable[bool]]  # ask the writer to reopen the path; False: there is no writer


@dataclass(frozen=True, slots=True)
class LogLimits:
    max_size: int  # bytes
    max_files: int  # the current file and the rotated ones


@dataclass(frozen=True, slots=True)
class LogFile:
    """A container's log file to keep bounded, with the way to make its writer reopen it (None: no writer)."""

    path: str
    reopen: Reopen | None


def rotated_files(path: str) -> list[str]:
    """The rotated files of a log, oldest first (the timestamps sort as their names)."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    prefix = base + "."
    return sorted(os.path.join(directory, name) for name in names
                  if name.startswith(prefix) and _ROTATED.fullmatch(name[len(prefix):]))


def newest_lines_offset(path: str, limit: int) -> int:
    """Where the newest `limit` bytes of a file begin, moved forward to the start of a line."""
    size = os.path.getsize(path)
    if size <= limit:
        return 0
    start = size - limit
    with open(path, "rb") as handle:
        handle.seek(start - 1)
        while block := handle.read(64 * 1024):
            newline = block.find(b"\n")
            if newline >= 0:
                return handle.tell() - len(block) + newline + 1
    return size  # no line starts within the limit: nothing of it is kept


def compress(path: str, limit: int) -> None:
    """`path` -> `path.gz` holding its newest `limit` bytes, atomically; the original is removed."""
    target = path + ".gz"
    offset = newest_lines_offset(path, limit)
    with open(path, "rb") as source, gzip.open(target + ".tmp", "wb") as out:
        source.seek(offset)
        shutil.copyfileobj(source, out, COPY_BYTES)
    os.replace(target + ".tmp", target)
    os.unlink(path)


def trim(path: str, limit: int) -> None:
    """Keep only the newest `limit` bytes of a file no one writes any more, atomically."""
    offset = newest_lines_offset(path, limit)
    if offset == 0:
        return
    with open(path, "rb") as source, open(path + ".tmp", "wb") as out:
        source.seek(offset)
        shutil.copyfileobj(source, out, COPY_BYTES)
    os.replace(path + ".tmp", path)


def prune(path: str, keep: int) -> None:
    """Delete the oldest rotated files beyond `keep` (at least 1)."""
    for old in rotated_files(path)[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)


async def bound(file: LogFile, limits: LogLimits, now: dt.datetime) -> None:
    """One check of one log: rotate (or trim) it when it is over the size, compress and prune rotated files.

    Every file operation runs in a thread: the check runs every second for a log being written."""
    path = file.path
    size = await asyncio.to_thread(_size, path)
    if size is None:
        return
    if size > limits.max_size:
        rotated = f"{path}.{now.strftime(TIMESTAMP_FORMAT)}"
        if file.reopen is None:
            await asyncio.to_thread(trim, path, limits.max_size)
        elif await asyncio.to_thread(_rename_aside, path, rotated) and not await file.reopen():
            await asyncio.to_thread(os.rename, rotated, path)  # the container is ending: put the file back,
            return  # trimmed once it has
    await asyncio.to_thread(_settle, path, limits)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _rename_aside(path: str, rotated: str) -> bool:
    """The current file renamed to `rotated`, unless a file of this second has that name (then: next second)."""
    if os.path.lexists(rotated) or os.path.lexists(rotated + ".gz"):
        return False
    os.rename(path, rotated)
    return True


def _settle(path: str, limits: LogLimits) -> None:
    """Compress the rotated files not compressed yet, then delete the oldest beyond maxFiles - 1."""
    for waiting in rotated_files(path):
        if not waiting.endswith(".gz"):
            compress(waiting, limits.max_size)
    prune(path, limits.max_files - 1)


async def keep_bounded(files: Callable[[], Iterable[LogFile]], limits: LogLimits, *,
                       version: Callable[[], int] = lambda: 0,
                       clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
    """Every CHECK_SECONDS, bound the logs `files()` names; a failure is logged and retried next time.
    One thread sizes them all (two thread hops per log per second kept an agent with 1,000 pods at 20 % of a
    core); only a log over its size is rotated. `files()` is called again when `version()` changed (a
    container started or ended) and every QUIET_EVERY rounds, and only the logs not quiet (or written since
    they turned quiet: inotify) are sized in the rounds between: listing and sizing 1,000 sleeping pods'
    logs every second was most of such an agent's idle CPU. Every log's rotated files are settled in the
    first round (what a crash left uncompressed or beyond maxFiles); afterwards only those of logs whose
    rotation or settling failed, every SETTLE_EVERY rounds (listing every container's directory every 10 s
    cost 0.2 % of a core at 1,000 pods, to find nothing)."""
    try:
        inotify: Inotify | None = Inotify()
    except OSError as exc:
        log.warning("quiet logs are checked every %d s only: %s", QUIET_EVERY, exc)
        inotify = None
    logs = Watched(inotify)
    try:
        await _keep_bounded(logs, files, limits, version, clock)
    finally:
        if inotify is not None:
            inotify.close()


async def _keep_bounded(logs: Watched, files: Callable[[], Iterable[LogFile]], limits: LogLimits,
                        version: Callable[[], int], clock: Callable[[], dt.datetime]) -> None:
    failed: set[str] = set()
    listed: int | None = None
    for round_ in itertools.count():
        every = round_ % QUIET_EVERY == 0
        if every or version() != listed:
            listed = version()
            logs.relist(files())
        logs.woken()
        settle = set(logs.files) if round_ == 0 else failed if round_ % SETTLE_EVERY == 0 else set()
        paths = logs.to_check(every=every, settle=settle)
        over: set[str] = set()
        unsettled: set[str] = set()
        if paths:  # else no thread hop: an idle agent's usual round
            over, unsettled, sized = await asyncio.to_thread(_sweep, paths, limits, settle, logs.sizes)
            logs.seen(sized)
        failed = (failed - settle) | unsettled
        for path in over:
            file = logs.files[path]
            try:
                await bound(file, limits, clock())
            except Exception as exc:  # a pod's log, whatever is wrong with it, never ends the rotation
                log.warning("rotating the log %s: %s", file.path, exc)
                failed.add(file.path)
        await asyncio.sleep(CHECK_SECONDS)


@dataclass(frozen=True, slots=True)
class Sized:
    size: int | None  # at the last check (None: no such file)
    unchanged: int  # checks since it changed


class Watched:
    """The logs as last listed, each one's size as last seen, and the active ones: those sized every round
    (new, or changed within QUIET_CHECKS checks). With `inotify`, a log that turns quiet is watched for its
    next write (one event, polled each round), which makes it active again: a burst after a quiet spell is
    sized within a round, not at the next check of every log."""

    def __init__(self, inotify: Inotify | None = None) -> None:
        self.files: dict[str, LogFile] = {}
        self.sizes: dict[str, Sized] = {}
        self.active: set[str] = set()
        self._inotify = inotify
        self._quiet: dict[int, str] = {}  # the watches of quiet logs: watch descriptor -> path
        self._out_of_watches = False  # said once

    def relist(self, files: Iterable[LogFile]) -> None:
        self.files = {file.path: file for file in files}
        self.sizes = {path: sized for path, sized in self.sizes.items() if path in self.files}
        self.active = {path for path in self.files if path not in self.sizes or _changing(self.sizes[path])}

    def to_check(self, *, every: bool, settle: set[str]) -> list[str]:
        """Every log in a round that checks every log, else the active ones and those to settle."""
        if every:
            return list(self.files)
        return sorted(path for path in self.active | settle if path in self.files)

    def seen(self, sized: dict[str, Sized]) -> None:
        self.sizes.update(sized)
        for path, now in sized.items():
            if _changing(now):
                self.active.add(path)
            elif path in self.active:  # it turns quiet now
                self.active.discard(path)
                self._watch_quiet(path)

    def woken(self) -> None:
        """The quiet logs written since they turned quiet: active again."""
        if self._inotify is None:
            return
        for wd, mask in self._inotify.read():
            if mask & IN_Q_OVERFLOW:  # events lost: any quiet log may have grown
                woken, self._quiet = set(self._quiet.values()), {}
            else:  # the write, or the watch gone (IN_IGNORED: the file deleted, or after its one event)
                path = self._quiet.pop(wd, None)
                woken = {path} if path is not None and mask & IN_MODIFY else set()
            self.active |= woken & self.files.keys()

    def _watch_quiet(self, path: str) -> None:
        if self._inotify is None:
            return
        try:
            self._quiet[self._inotify.add(path, IN_MODIFY | IN_ONESHOT)] = path
        except OSError as exc:  # gone, or out of watches: the check every QUIET_EVERY rounds stands
            if exc.errno == errno.ENOSPC and not self._out_of_watches:
                self._out_of_watches = True
                log.warning("quiet logs beyond fs.inotify.max_user_watches are checked every %d s only: %s",
                            QUIET_EVERY, exc)
            log.debug("watching the quiet log %s: %s", path, exc)


def _changing(sized: Sized) -> bool:
    return sized.unchanged < QUIET_CHECKS


def _sweep(paths: list[str], limits: LogLimits, settle: set[str],
           sizes: dict[str, Sized]) -> tuple[set[str], set[str], dict[str, Sized]]:
    """The logs over their size, those whose check or settling failed, and each log's size now (beside what
    `sizes` saw before); the rest of `settle` settled."""
    over, failed, seen = set(), set(), {}
    for path in paths:
        last = sizes.get(path)
        try:
            size = _size(path)
            seen[path] = Sized(size, last.unchanged + 1 if last is not None and last.size == size else 0)
            if size is not None and size > limits.max_size:
                over.add(path)
            elif size is not None and path in settle:
                _settle(path, limits)
        except Exception as exc:  # one log's trouble is not the others'
            log.warning("rotating the log %s: %s", path, exc)
            failed.add(path)
    return over, failed, seen
