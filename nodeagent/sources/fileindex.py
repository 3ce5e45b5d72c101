"""What the file source last read, kept in the state directory: a restarted agent does not parse again the
manifests whose pods it has just restored. A file whose content hash is the one recorded stands for the
restored pods of the UIDs recorded with it.

    <stateDir>/manifests.json   {"version": 1, "node": "n1", "parser": "<sha256>",
                                 "files": {"/etc/kubernetes/manifests/web.yaml": {"digest": "<sha256>", "uids": [...]}}}

Only files that gave pods with neither problems nor warnings are recorded, so a restart reports nothing
less. An entry is used only when each of its UIDs was restored from that very file, on the same node name;
anything else (no index, a damaged or foreign one, a changed file) means the file is parsed, as without an
index. A pod is the same whether restored or parsed again: the pod manager keys pods by UID, and a restored
worker keeps its pod. The index also records which parser wrote it (a fingerprint of nodeagent.api's files):
an upgraded agent parses every manifest once, so what it newly refuses or warns about is reported at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nodeagent import api
from nodeagent.api.manifest import ManifestResult, StaticPod
from nodeagent.durable import write_atomically

log = logging.getLogger(__name__)

FILE = "manifests.json"
VERSION = 1
MAX_BYTES = 16 * 2**20  # ~150 bytes a file: 100,000 manifests; a bigger file is not one the agent wrote


@dataclass(frozen=True, slots=True)
class Entry:
    digest: str
    uids: tuple[str, ...]


@functools.cache
def parser_fingerprint() -> str:
    """The parser's identity: name, size and modification time of each file of nodeagent.api (where decoding
    and validation live), so any upgrade or edit of it invalidates the index (a few stat calls, once)."""
    digest = hashlib.sha256()
    for directory in api.__path__:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.endswith(".py") and entry.is_file():
                stat = entry.stat()
                digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def index_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE)


def entries(files: Iterable[tuple[str, str, ManifestResult]]) -> dict[str, Entry]:
    """(path, digest, result) of a scan -> the entries worth recording: pods, no problem, no warning."""
    return {path: Entry(digest, tuple(pod.uid for pod in result.pods)) for path, digest, result in files
            if digest and result.pods and not result.problems and not result.warnings}


def save(path: str, node_name: str, recorded: dict[str, Entry]) -> None:
    """Write the index (blocking: from the scan's thread); a failure only costs the next restart a parse."""
    data = {"version": VERSION, "node": node_name, "parser": parser_fingerprint(),
            "files": {name: {"digest": entry.digest, "uids": list(entry.uids)} for name, entry in recorded.items()}}
    try:
        write_atomically(path, json.dumps(data, sort_keys=True).encode())
    except OSError as exc:
        log.warning("saving the manifest index %s: %s; a restart parses every manifest", path, exc)


def load(path: str, node_name: str) -> dict[str, Entry]:
    """The recorded entries; none when the file is missing, damaged, too big, or of another node name."""
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("reading the manifest index %s: %s; parsing every manifest", path, exc)
        return {}
    try:
        return _entries(json.loads(content), node_name) if len(content) <= MAX_BYTES else {}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("the manifest index %s is not usable (%s); parsing every manifest", path, type(exc).__name__)
        return {}


def _entries(data: Any, node_name: str) -> dict[str, Entry]:
    if data["version"] != VERSION or data["node"] != node_name or data.get("parser") != parser_fingerprint():
        return {}
    found = {}
    for name, entry in data["files"].items():
        digest, uids = entry["digest"], entry["uids"]
        if not isinstance(name, str) or not isinstance(digest, str) or not isinstance(uids, list) \
                or not all(isinstance(uid, str) for uid in uids):
            raise TypeError(name)
        found[name] = Entry(digest, tuple(uids))
    return found


def restored_results(recorded: dict[str, Entry],
                     restored: Sequence[StaticPod]) -> dict[str, tuple[str, ManifestResult]]:
    """path -> (digest, the result a parse of that content gave) for each entry whose every UID was restored
    from that file."""
    by_uid = {pod.uid: pod for pod in restored if pod.source == "file"}
    results = {}
    for name, entry in recorded.items():
        pods = [by_uid.get(uid) for uid in entry.uids]
        if entry.uids and all(pod is not None and pod.origin == name for pod in pods):
            results[name] = (entry.digest, ManifestResult(pods=[pod for pod in pods if pod is not None]))
    return results
