"""The agent's memory across restarts: one JSON file per pod in the state directory, written atomically.

    <stateDir>/pods/<uid>/pod.json   {"version": 1, "pod": {...}, "containers": {...}, ...}

Written as write, fsync, rename, fsync of the directory: a crash leaves the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from nodeagent.durable import write_atomically

log = logging.getLogger(__name__)

VERSION = 1
FILE = "pod.json"


class PodStore:
    def __init__(self, state_dir: str) -> None:
        self.root = os.path.join(state_dir, "pods")

    def path(self, uid: str) -> str:
        return os.path.join(self.root, uid, FILE)

    def save(self, uid: str, state: dict[str, Any]) -> None:
        write_atomically(self.path(uid), json.dumps({"version": VERSION, **state}).encode())

    def load_all(self) -> list[dict[str, Any]]:
        """Every saved pod; unreadable or foreign-version files are reported and skipped."""
        found = []
        try:
            uids = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for uid in uids:
            path = self.path(uid)
            try:
                with open(path, "rb") as handle:
                    state = json.load(handle)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.error("saved state %s cannot be read (%s): that pod is treated as unknown", path, exc)
                continue
            if not isinstance(state, dict) or state.get("version") != VERSION:
                log.error("saved state %s has an unknown version: that pod is treated as unknown", path)
                continue
            found.append(state)
        return found

    def known_uids(self) -> set[str]:
        try:
            return set(os.listdir(self.root))
        except FileNotFoundError:
            return set()
