"""The agent's memory across restarts: one JSON file per pod in the state directory, written atomically.

    <stateDir>/pods/<uid>/pod.json   {"version": 1, "pod": {...}, "containers": {...}, ...}

Written as write, fsync, rename, fsync of the directory: a crash leaves the old file or the new one,
never half of one. A file that cannot be read (damaged, or written by a newer agent) is never taken to mean
"no such pod": it is moved aside as pod.json.quarantined-<time>, and that UID's cgroups, processes and
directories are kept (the quarantine file is what says so, across restarts) until an operator looks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from nodeagent.durable import write_atomically

log = logging.getLogger(__name__)

VERSION = 1
FILE = "pod.json"
QUARANTINED = f"{FILE}.quarantined-"
MAX_BYTES = 16 * 2**20  # a pod's state is a few KiB; a bigger file is not one the agent wrote


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A state file moved aside just now: whose, where it went, why."""

    uid: str
    path: str
    reason: str


class PodStore:
    def __init__(self, state_dir: str) -> None:
        self.root = os.path.join(state_dir, "pods")

    def path(self, uid: str) -> str:
        return os.path.join(self.root, uid, FILE)

    def save(self, uid: str, state: dict[str, Any]) -> None:
        write_atomically(self.path(uid), json.dumps({"version": VERSION, **state}).encode())

    def load_all(self, now: dt.datetime) -> tuple[list[dict[str, Any]], list[Quarantine]]:
        """Every saved pod, and the files that could not be used, moved aside (named with `now`)."""
        found = []
        moved = []
        for uid in self._uids():
            path = self.path(uid)
            try:
                state = _read(path)
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
        return found, moved

    def quarantine(self, uid: str, reason: str, now: dt.datetime) -> Quarantine:
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


def _read(path: str) -> object:
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return json.loads(data)
