"""The state directory's pod files: what cannot be used is moved aside, never taken for "no such pod"."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from nodeagent.agent import store
from nodeagent.agent.store import PodStore

NOW = dt.datetime(2026, 12, 4, 16, 0, 0, 123456, tzinfo=dt.UTC)


def saved(root: Path, uid: str, content: bytes) -> Path:
    path = root / "pods" / uid / "pod.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_a_good_file_is_loaded(tmp_path: Path) -> None:
    saved(tmp_path, "u1", json.dumps({"version": 1, "uid": "u1"}).encode())
    states, moved = PodStore(str(tmp_path)).load_all(NOW)
    assert (states, moved) == ([{"version": 1, "uid": "u1"}], [])


@pytest.mark.parametrize(("content", "why"), [
    (b'{"version": 1, "ui', "it cannot be read (Unterminated string"),
    (b"\xff\xfe", "it cannot be read ("),
    (b'{"version": 2, "uid": "u1"}', "its version 2 is not 1"),
    (b'{"version": 1, "uid": "someone-else"}', "it does not hold this pod's state"),
    (b"[1, 2]", "it does not hold this pod's state"),
])
def test_an_unusable_file_is_moved_aside_and_its_uid_stays_known(tmp_path: Path, content: bytes, why: str) -> None:
    path = saved(tmp_path, "u1", content)
    pods = PodStore(str(tmp_path))
    states, moved = pods.load_all(NOW)
    assert states == []
    [quarantine] = moved
    target = path.parent / "pod.json.quarantined-20261204T160000.123456Z"
    assert (quarantine.uid, quarantine.path) == ("u1", str(target))
    assert quarantine.reason.startswith(why)
    assert target.read_bytes() == content and not path.exists()
    assert pods.quarantined() == {"u1": [str(target)]}
    assert pods.load_all(NOW) == ([], [])  # moved once; the quarantine file is what keeps the UID known


def test_an_oversized_file_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_BYTES", 64)
    saved(tmp_path, "u1", json.dumps({"version": 1, "uid": "u1", "pad": "x" * 100}).encode())
    _, [quarantine] = PodStore(str(tmp_path)).load_all(NOW)
    assert quarantine.reason == "it cannot be read (larger than 64 bytes)"
