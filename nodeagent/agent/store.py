"""The agent's memory across restarts: one JSON file per pod in the state directory, written atomically.

    <stateDir>/pods/<uid>/pod.json   {"version": 1, "pod": {...}, "containers": {...}, ...}

Written as write, fsync, rename, fsync of the directory: a crash leaves the old file or the new one,
never half of one. The writes run in a thread, one pod's in order (StateWriter): the event loop never waits
for an fsync. A file that cannot be read (damaged, or written by a newer agent) is never taken to mean
"no such pod": it is moved aside as pod.json.quarantined-<time>, and that UID's cgroups, processes and
directories are kept (the quarantine file is what says so, across restarts) until an operator looks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from nodeagent.agent.clock import Clock, sleep_or_set
from nodeagent.durable import write_atomically

log = logging.getLogger(__name__)

VERSION = 1
FILE = "pod.json"
QUARANTINED = f"{FILE}.quarantined-"
MAX_BYTES = 16 * 2**20  # a pod's state is a few KiB; a bigger file is not one the agent wrote
SAVE_RETRY_SECONDS = 1.0  # a write that failed (a full disk) is tried again this often


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A state file moved aside just now: whose, where it went, why."""

    uid: str
    path: str
    reason: str


def digest(data: bytes) -> bytes:
    """What a state file holds, in 16 bytes: a save of the same bytes is known to be done already."""
    return hashlib.blake2b(data, digest_size=16).digest()


class PodStore:
    def __init__(self, state_dir: str) -> None:
        self.root = os.path.join(state_dir, "pods")
        self._loaded: dict[str, bytes] = {}  # by UID: the digest of each file load_all() returned

    def loaded(self, uid: str) -> bytes | None:
        """The digest of the pod's file as load_all() read it, once (its StateWriter starts from it)."""
        return self._loaded.pop(uid, None)

    def path(self, uid: str) -> str:
        return os.path.join(self.root, uid, FILE)

    @staticmethod
    def encode(state: dict[str, Any]) -> bytes:
        return json.dumps({"version": VERSION, **state}).encode()

    def save(self, uid: str, data: bytes) -> None:
        """Blocking (fsync): from a thread (StateWriter)."""
        write_atomically(self.path(uid), data)

    def load_all(self, now: dt.datetime) -> tuple[list[dict[str, Any]], list[Quarantine]]:
        """Every saved pod, and the files that could not be used, moved aside (named with `now`)."""
        found = []
        moved = []
        for uid in self._uids():
            path = self.path(uid)
            try:
                data = _read(path)
                state = json.loads(data)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                moved.append(self.quarantine(uid, f"it cannot be read ({exc})", now))
                continue
            if not isinstance(state, dict) or state.get("uid") != uid:
                moved.append(self.quarantine(uid, "it does not hold this pod's state", now))
            elif state.get("version") != VERSION:
                moved.append(self.quarantine(uid, f"its version {state.get('version')!r} is not {VERSION}, the one "
                                               "this agent writes (a newer agent's?)", now))
            else:
                found.append(state)
                self._loaded[uid] = digest(data)
        return found, moved

    def quarantine(self, uid: str, reason: str, now: dt.datetime) -> Quarantine:
        self._loaded.pop(uid, None)  # what was read is no longer there
        target = os.path.join(self.root, uid, QUARANTINED + now.strftime("%Y%m%dT%H%M%S.%fZ"))
        try:
            os.rename(self.path(uid), target)
        except OSError as exc:
            log.error("state file of pod %s: %s, and moving it aside failed (%s): kept as it is", uid, reason, exc)
            target = self.path(uid)
        return Quarantine(uid, target, reason)

    def quarantined(self) -> dict[str, list[str]]:
        """The UIDs with state files moved aside, and those files: what no clean-up may touch."""
        found: dict[str, list[str]] = {}
        for uid in self._uids():
            try:
                names = os.listdir(os.path.join(self.root, uid))
            except OSError:
                continue
            files = sorted(os.path.join(self.root, uid, n) for n in names if n.startswith(QUARANTINED))
            if files:
                found[uid] = files
        return found

    def known_uids(self) -> set[str]:
        return set(self._uids())

    def _uids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []


class StateWriter:
    """One pod's state file, written in a thread and in order: one write in flight at a time, the newest state
    waiting behind it (a newer one replaces it: the latest wins). A write that fails (a full disk) is tried again
    every SAVE_RETRY_SECONDS until it works or a newer state comes, else the file would stay stale until the pod's
    next change, and a restart take back the past.

    close() ends it: nothing is written afterwards. Before the pod's directory is removed (drop=True) the waiting
    state is dropped and the write in flight awaited, so that no late write recreates the directory; when the agent
    goes away (drop=False) the waiting state is written, once.

    A save of what the file is known to hold (as load_all() read it at a restart, or as last written) is done
    already: no thread, no read (a restart re-adopting 1,000 unchanged pods saves each once)."""

    def __init__(self, store: PodStore, uid: str, clock: Clock, label: str, *, on_disk: bytes | None = None) -> None:
        self._store = store
        self._uid = uid
        self._clock = clock
        self._label = label
        self._on_disk = on_disk  # the digest of what the file holds, when known: a save of it again is done
        self._next: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._failing = False

    def save(self, data: bytes) -> None:
        if self._closed.is_set():
            return
        if self._task is None and self._on_disk is not None and digest(data) == self._on_disk:
            return  # the file holds it already (e.g. a pod just restored and re-adopted): no thread, no read
        self._next = data
        if self._task is None:
            self._task = asyncio.create_task(self._write(), name=f"save {self._label}")

    async def close(self, *, drop: bool) -> None:
        self._closed.set()
        if drop:
            self._next = None
        if self._task is not None:
            await asyncio.shield(self._task)  # a thread cannot be stopped: its write ends before this does

    async def _write(self) -> None:
        try:
            while (data := self._next) is not None:
                self._next = None
                try:
                    await asyncio.to_thread(self._store.save, self._uid, data)
                    self._on_disk = digest(data)
                except OSError as exc:
                    if self._closed.is_set():
                        log.error("pod=%s: saving its state: %s; not tried again", self._label, exc)
                        return
                    if not self._failing:
                        log.error("pod=%s: saving its state: %s; trying again every %.0fs", self._label, exc,
                                  SAVE_RETRY_SECONDS)
                    self._failing = True
                    if self._next is None:
                        self._next = data
                    await sleep_or_set(self._clock, SAVE_RETRY_SECONDS, self._closed)
                    continue
                if self._failing:
                    self._failing = False
                    log.info("pod=%s: its state is saved again", self._label)
        finally:
            self._task = None


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return data
